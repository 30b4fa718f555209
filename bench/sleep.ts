/**
 * (c) Sleeping jobs: `jobs` jobs that each sleep `ms` on a node with `cpus` CPUs, timed from the
 * first submit (the cluster's node already set up) to the last result. Ideal: jobs * ms / cpus.
 */
import { JobCluster, JobStatus } from '../src/index.js';
import { BENCH_SECRET, clusterReady, closeCluster, log, round, type BenchNode } from './lib.js';

export const nap = async (ms: number): Promise<number> => {
  await new Promise((r) => setTimeout(r, ms));
  return ms;
};

export interface SleepResult {
  jobs: number;
  sleepMs: number;
  cpus: number;
  wallMs: number;
  idealMs: number;
  efficiency: number;
  /** (wall - ideal) / (jobs / cpus): the time lost per job on each CPU. */
  overheadPerJobMs: number;
  /** Where it goes, from the jobs' own start/end times (Date.now() on the node, ms resolution). */
  breakdown: {
    /** Mean endTime - startTime minus the sleep: timer lateness and runner work per job. */
    inJobMs: number;
    /** Mean per-CPU idle time between jobs on the node (the rest of the overhead per job). */
    betweenJobsMs: number;
    /** First submit to the first job's start. */
    firstStartMs: number;
    /** Last job's end to the bench seeing all results. */
    lastResultMs: number;
  };
}

export async function runSleep(node: BenchNode, opts: { jobs: number; ms: number; cpus: number }): Promise<SleepResult> {
  let cluster: JobCluster<typeof nap> | null = null;
  try {
    cluster = new JobCluster(nap, { nodes: [{ host: node.host, port: node.port }], secret: BENCH_SECRET });
    cluster.on('error', (err) => log(`cluster error: ${err.message}`));
    await clusterReady(cluster);
    const t0 = performance.now();
    const epoch0 = Date.now();
    const jobs = [];
    for (let i = 0; i < opts.jobs; i++) jobs.push(cluster.submit(opts.ms));
    const idealMs = (opts.jobs * opts.ms) / opts.cpus;
    const idle = await cluster.wait(Math.ceil((idealMs * 3) / 1000) + 10);
    const wallMs = performance.now() - t0;
    const epoch1 = Date.now();
    if (!idle) throw new Error(`sleeping jobs not done in time (pending ${cluster.status().jobsPending})`);
    for (const j of jobs)
      if (j.status !== JobStatus.Finished || j.result !== opts.ms)
        throw new Error(`sleep job ${String(j.id)}: status ${j.status}, ${String(j.exception)}`);
    const perCpu = opts.jobs / opts.cpus;
    const overheadPerJobMs = (wallMs - idealMs) / perCpu;
    const inJobMs = jobs.reduce((a, j) => a + (j.endTime! - j.startTime!), 0) / jobs.length - opts.ms;
    const firstStart = Math.min(...jobs.map((j) => j.startTime!));
    const lastEnd = Math.max(...jobs.map((j) => j.endTime!));
    const result = {
      jobs: opts.jobs,
      sleepMs: opts.ms,
      cpus: opts.cpus,
      wallMs: round(wallMs, 1),
      idealMs,
      efficiency: round(idealMs / wallMs, 4),
      overheadPerJobMs: round(overheadPerJobMs, 3),
      breakdown: {
        inJobMs: round(inJobMs, 3),
        betweenJobsMs: round(
          ((lastEnd - firstStart) * opts.cpus - jobs.reduce((a, j) => a + (j.endTime! - j.startTime!), 0)) / jobs.length,
          3,
        ),
        firstStartMs: firstStart - epoch0,
        lastResultMs: epoch1 - lastEnd,
      },
    };
    log(`sleep: ${result.wallMs} ms for ideal ${idealMs} ms, efficiency ${result.efficiency}`);
    return result;
  } finally {
    await closeCluster(cluster);
  }
}
