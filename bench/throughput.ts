/**
 * (a) Throughput: N trivial jobs `(x) => x * 2` (a function computation, or the same export of
 * bench/double.ts as a module computation) submitted at once to one `--cpus 2` node, timed
 * from the first submit to the last result. Each run uses a fresh cluster that first runs an
 * untimed warm-up batch (so connection setup and the cluster's window sizing are not counted).
 */
import { fileURLToPath } from 'node:url';
import { JobCluster, JobStatus, type ModuleComputation } from '../src/index.js';
import { double } from './double.js';
import { BENCH_SECRET, clusterReady, closeCluster, cpuDelta, cpuSnapshot, log, round, type BenchNode } from './lib.js';

export { double };

/** The same job as a module computation: bench/double.ts bundled by the client with esbuild. */
export const DOUBLE_MODULE: ModuleComputation = { module: fileURLToPath(new URL('./double.ts', import.meta.url)), export: 'double' };

export interface ThroughputRun {
  wallMs: number;
  jobsPerSec: number;
  ratioToBareRoundTrips: number;
  cpu: Record<string, unknown>;
}

/** Submits `count` jobs at once and waits for all; throws on a wrong result or a time-out. */
export async function runBatch(cluster: JobCluster<typeof double>, count: number, timeoutSec: number, base = 0): Promise<void> {
  const jobs = new Array(count);
  for (let i = 0; i < count; i++) jobs[i] = cluster.submit(base + i);
  const idle = await cluster.wait(timeoutSec);
  if (!idle) throw new Error(`${count} jobs not done in ${timeoutSec} s (pending ${cluster.status().jobsPending})`);
  for (let i = 0; i < count; i++) {
    const j = jobs[i];
    if (j.status !== JobStatus.Finished || j.result !== (base + i) * 2) {
      throw new Error(`job ${i}: status ${j.status}, result ${String(j.result)}, exception ${String(j.exception)}`);
    }
  }
}

export async function runThroughputOnce(
  node: BenchNode,
  opts: { jobs: number; warmup: number; bareRoundTripsPerSec: number; computation?: typeof double | ModuleComputation },
): Promise<ThroughputRun> {
  let cluster: JobCluster<typeof double> | null = null;
  try {
    cluster = new JobCluster<typeof double>(opts.computation ?? double, {
      nodes: [{ host: node.host, port: node.port }],
      secret: BENCH_SECRET,
    });
    cluster.on('error', (err) => log(`cluster error: ${err.message}`));
    await clusterReady(cluster);
    await runBatch(cluster, opts.warmup, 60, 1_000_000);
    const before = cpuSnapshot(node.pid);
    const t0 = performance.now();
    await runBatch(cluster, opts.jobs, 120);
    const wallMs = performance.now() - t0;
    const after = cpuSnapshot(node.pid);
    const jobsPerSec = opts.jobs / (wallMs / 1000);
    return {
      wallMs: round(wallMs, 1),
      jobsPerSec: round(jobsPerSec, 0),
      ratioToBareRoundTrips: round(jobsPerSec / opts.bareRoundTripsPerSec, 3),
      cpu: cpuDelta(before, after, wallMs),
    };
  } finally {
    await closeCluster(cluster);
  }
}
