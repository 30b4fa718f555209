/**
 * (b) Latency: sequential submit-and-wait of trivial jobs (submit one, await it, submit the next)
 * on one node, after an untimed warm-up on the same cluster.
 */
import { JobCluster } from '../src/index.js';
import { BENCH_SECRET, checkDeadline, clusterReady, closeCluster, log, round, summarize, type BenchNode, type Summary } from './lib.js';
import { double } from './throughput.js';

export interface LatencyResult extends Summary {
  jobs: number;
  warmup: number;
}

export async function runLatency(node: BenchNode, opts: { jobs: number; warmup: number }): Promise<LatencyResult> {
  let cluster: JobCluster<typeof double> | null = null;
  try {
    cluster = new JobCluster(double, { nodes: [{ host: node.host, port: node.port }], secret: BENCH_SECRET });
    cluster.on('error', (err) => log(`cluster error: ${err.message}`));
    await clusterReady(cluster);
    const start = performance.now();
    for (let i = 0; i < opts.warmup; i++) {
      if ((await cluster.submit(i).wait()) !== i * 2) throw new Error(`warm-up job ${i}: wrong result`);
      checkDeadline(start, 30_000, 'latency warm-up');
    }
    const samples: number[] = new Array(opts.jobs);
    const t0 = performance.now();
    for (let i = 0; i < opts.jobs; i++) {
      const s = performance.now();
      const r = await cluster.submit(i).wait();
      samples[i] = performance.now() - s;
      if (r !== i * 2) throw new Error(`job ${i}: wrong result ${String(r)}`);
      checkDeadline(t0, 60_000, 'latency jobs');
    }
    const sum = summarize(samples);
    log(`latency: p50 ${sum.p50Ms} ms, p95 ${sum.p95Ms} ms (${round(performance.now() - t0, 0)} ms for ${opts.jobs})`);
    return { jobs: opts.jobs, warmup: opts.warmup, ...sum };
  } finally {
    await closeCluster(cluster);
  }
}
