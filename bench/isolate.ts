/**
 * `isolate: 'job'` throughput: trivial jobs `(x) => x * 2` with every job in a fresh runner
 * process (spawned by the node, retired after its job), submitted at once on the bench node.
 * Beside the throughput section's figure (runners shared by the program's jobs) it shows what
 * a process per job costs.
 */
import { JobCluster, JobStatus } from '../src/index.js';
import { double } from './double.js';
import { BENCH_SECRET, clusterReady, closeCluster, log, round, type BenchNode } from './lib.js';

export interface IsolateThroughputResult {
  jobs: number;
  warmup: number;
  wallMs: number;
  jobsPerSec: number;
  /** ms per job and CPU (wall time x CPUs / jobs): roughly one runner's start, setup and exit. */
  msPerJobPerCpu: number;
}

export async function runIsolateThroughput(
  node: BenchNode,
  opts: { jobs: number; warmup: number; cpus: number },
): Promise<IsolateThroughputResult> {
  let cluster: JobCluster<typeof double> | null = null;
  try {
    cluster = new JobCluster<typeof double>(double, {
      nodes: [{ host: node.host, port: node.port }],
      secret: BENCH_SECRET,
      isolate: 'job',
    });
    cluster.on('error', (err) => log(`cluster error: ${err.message}`));
    await clusterReady(cluster);
    for (let i = 0; i < opts.warmup; i++) cluster.submit(i);
    if (!(await cluster.wait(120))) throw new Error('isolate warm-up did not finish');
    const t0 = performance.now();
    const list = Array.from({ length: opts.jobs }, (_, i) => cluster!.submit(i));
    if (!(await cluster.wait(600))) throw new Error(`${opts.jobs} isolated jobs not done in 600 s`);
    const wallMs = performance.now() - t0;
    const bad = list.find((j, i) => j.status !== JobStatus.Finished || j.result !== i * 2);
    if (bad)
      throw new Error(`isolated job ${String(bad.id)}: status ${bad.status}, result ${String(bad.result)}, ${String(bad.exception)}`);
    const jobsPerSec = opts.jobs / (wallMs / 1000);
    log(`isolateThroughput: ${round(jobsPerSec, 1)} jobs/s (${round(wallMs, 0)} ms for ${opts.jobs} jobs)`);
    return {
      jobs: opts.jobs,
      warmup: opts.warmup,
      wallMs: round(wallMs, 1),
      jobsPerSec: round(jobsPerSec, 1),
      msPerJobPerCpu: round((wallMs * opts.cpus) / opts.jobs, 1),
    };
  } finally {
    await closeCluster(cluster);
  }
}
