/**
 * (d) Time to the first result: from `new JobCluster(...)` (its first job submitted at once) on a
 * daemon already running, and from spawning `dispyts node` on a fresh address to the first result
 * of a new cluster there.
 */
import { JobCluster } from '../src/index.js';
import { BENCH_SECRET, closeCluster, log, median, round, startNode, type BenchNode } from './lib.js';
import { double } from './throughput.js';

/** ms from `new JobCluster` to the first result, and the performance.now() of that result. */
async function firstResult(node: { host: string; port: number }): Promise<{ ms: number; at: number }> {
  let cluster: JobCluster<typeof double> | null = null;
  try {
    const t0 = performance.now();
    cluster = new JobCluster(double, { nodes: [{ host: node.host, port: node.port }], secret: BENCH_SECRET });
    cluster.on('error', (err) => log(`cluster error: ${err.message}`));
    const job = cluster.submit(21);
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      job.wait(),
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('first result not in 30 s')), 30_000))),
    ]).finally(() => clearTimeout(timer));
    const at = performance.now();
    if (r !== 42) throw new Error(`first job: wrong result ${String(r)}`);
    return { ms: at - t0, at };
  } finally {
    await closeCluster(cluster);
  }
}

export interface StartupResult {
  warm: { repetitions: number; runsMs: number[]; medianMs: number };
  cold: {
    repetitions: number;
    host: string;
    runs: { spawnToReadyMs: number; readyToFirstResultMs: number; totalMs: number }[];
    medianMs: number;
  };
}

export async function runStartup(
  warmNode: BenchNode,
  opts: { warmReps: number; coldReps: number; coldHost: string; cpus: number },
): Promise<StartupResult> {
  const warmRuns: number[] = [];
  for (let i = 0; i < opts.warmReps; i++) warmRuns.push(round((await firstResult(warmNode)).ms, 2));
  log(`startup warm: ${warmRuns.join(', ')} ms`);
  const coldRuns: StartupResult['cold']['runs'] = [];
  for (let i = 0; i < opts.coldReps; i++) {
    let node: BenchNode | null = null;
    try {
      node = await startNode({ host: opts.coldHost, cpus: opts.cpus });
      const { ms, at } = await firstResult(node);
      const total = at - node.spawnedAt;
      coldRuns.push({
        spawnToReadyMs: round(node.readyAt - node.spawnedAt, 1),
        readyToFirstResultMs: round(ms, 1),
        totalMs: round(total, 1),
      });
    } finally {
      await node?.stop();
    }
  }
  log(`startup cold: ${coldRuns.map((r) => r.totalMs).join(', ')} ms`);
  return {
    warm: { repetitions: opts.warmReps, runsMs: warmRuns, medianMs: round(median(warmRuns), 2) },
    cold: { repetitions: opts.coldReps, host: opts.coldHost, runs: coldRuns, medianMs: round(median(coldRuns.map((r) => r.totalMs)), 1) },
  };
}
