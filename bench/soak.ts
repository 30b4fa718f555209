/**
 * (soak) Many trivial jobs through one cluster with at most `window` pending: before submitting
 * job i (i >= window) the bench awaits job i - window. The client's heap and rss are sampled
 * (after global.gc() when node runs with --expose-gc) every `every` retired jobs; a cluster that
 * does not retain settled jobs keeps the heap flat.
 */
import { JobCluster, JobStatus, type DispyJob } from '../src/index.js';
import { BENCH_SECRET, clusterReady, closeCluster, log, round, type BenchNode } from './lib.js';
import { double } from './throughput.js';

export interface SoakSample {
  jobs: number;
  elapsedS: number;
  heapUsedMB: number;
  rssMB: number;
}

export interface SoakResult {
  jobs: number;
  completed: number;
  window: number;
  gcExposed: boolean;
  wallS: number;
  jobsPerSec: number;
  failures: number;
  samples: SoakSample[];
  /** heapUsed at the last sample minus at the 200k sample (or the second sample). */
  heapGrowthMB: number | null;
  heapGrowthFrom: number | null;
  rssGrowthMB: number | null;
  timedOut: boolean;
}

const MB = 1024 * 1024;

function sample(jobs: number, t0: number): SoakSample {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const m = process.memoryUsage();
  return { jobs, elapsedS: round((performance.now() - t0) / 1000, 1), heapUsedMB: round(m.heapUsed / MB, 2), rssMB: round(m.rss / MB, 1) };
}

export async function runSoak(
  node: BenchNode,
  opts: { jobs: number; window: number; every: number; maxSeconds: number },
): Promise<SoakResult> {
  let cluster: JobCluster<typeof double> | null = null;
  try {
    cluster = new JobCluster(double, { nodes: [{ host: node.host, port: node.port }], secret: BENCH_SECRET });
    cluster.on('error', (err) => log(`cluster error: ${err.message}`));
    await clusterReady(cluster);
    const ring: (DispyJob<number> | undefined)[] = new Array(opts.window);
    const t0 = performance.now();
    const deadline = t0 + opts.maxSeconds * 1000;
    const samples: SoakSample[] = [sample(0, t0)];
    let failures = 0;
    let completed = 0;
    let timedOut = false;
    const retire = async (job: DispyJob<number>, i: number): Promise<void> => {
      if (!job.settled) await job.wait().catch(() => undefined);
      if (job.status !== JobStatus.Finished || job.result !== i * 2) {
        if (failures++ < 5) log(`soak job ${i}: status ${job.status}, result ${String(job.result)}, ${String(job.exception)}`);
      }
      completed++;
      if (completed % opts.every === 0) {
        const s = sample(completed, t0);
        samples.push(s);
        log(`soak: ${completed} jobs, ${s.elapsedS} s, heap ${s.heapUsedMB} MB, rss ${s.rssMB} MB`);
      }
    };
    let submitted = 0;
    for (let i = 0; i < opts.jobs; i++) {
      const slot = i % opts.window;
      const old = ring[slot];
      if (old) await retire(old, i - opts.window);
      if (performance.now() > deadline) {
        timedOut = true;
        log(`soak: time bound of ${opts.maxSeconds} s reached after ${i} submits`);
        break;
      }
      ring[slot] = cluster.submit(i);
      submitted++;
    }
    // Retire what is still pending, oldest first.
    for (let i = Math.max(0, submitted - opts.window); i < submitted; i++) {
      const job = ring[i % opts.window]!;
      if (!job.settled) {
        const left = deadline + 60_000 - performance.now();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([job.wait().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, Math.max(0, left))))]);
        clearTimeout(timer);
      }
      await retire(job, i);
    }
    const wallS = (performance.now() - t0) / 1000;
    if (samples[samples.length - 1]!.jobs !== completed) samples.push(sample(completed, t0));
    const from = samples.find((s) => s.jobs >= 200_000) ?? samples[2] ?? null;
    const last = samples[samples.length - 1]!;
    return {
      jobs: opts.jobs,
      completed,
      window: opts.window,
      gcExposed: typeof (globalThis as { gc?: unknown }).gc === 'function',
      wallS: round(wallS, 1),
      jobsPerSec: round(completed / wallS, 0),
      failures,
      samples,
      heapGrowthMB: from && from !== last ? round(last.heapUsedMB - from.heapUsedMB, 2) : null,
      heapGrowthFrom: from && from !== last ? from.jobs : null,
      rssGrowthMB: from && from !== last ? round(last.rssMB - from.rssMB, 1) : null,
      timedOut,
    };
  } finally {
    await closeCluster(cluster);
  }
}
