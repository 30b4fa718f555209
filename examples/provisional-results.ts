/**
 * Provisional results (dispy's `dispy_provisional_result`), as in dispy's documentation: each
 * job draws random numbers and reports every draw below `--threshold` while it goes on; the
 * client's `jobStatus` callback sees each report at once, and when one is below `--accept` it
 * takes it and cancels every job still going (running ones are killed and end Terminated).
 *
 *   npm run build:js && node --import tsx examples/provisional-results.ts
 *
 * Options: --jobs N (default 4), --rounds N (draws per job; default 100), --step-sec S (time
 * per draw; default 0.05), --threshold X (default 0.2), --accept X (default 0.005), --seed N
 * (jobs draw from seed, seed + 1, ...; default: random), and those of examples/local-nodes.ts.
 */
import { parseArgs } from 'node:util';
import { DispyJob, JobCluster, statusName } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

/** Set by the job runner: sends `value` to the client as the job's provisional result. */
declare function dispyProvisionalResult(value: unknown): void;

async function compute(seed: number, rounds: number, stepSec: number, threshold: number): Promise<number> {
  // mulberry32: a small seeded generator, so a seed gives the same draws on any node.
  let s = seed >>> 0;
  const random = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let best = 1;
  for (let i = 0; i < rounds; i++) {
    const r = random();
    if (r < best) best = r;
    if (r <= threshold) dispyProvisionalResult([i, r]);
    await new Promise((resolve) => setTimeout(resolve, stepSec * 1000));
  }
  return best;
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    jobs: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '100' },
    'step-sec': { type: 'string', default: '0.05' },
    threshold: { type: 'string', default: '0.2' },
    accept: { type: 'string', default: '0.005' },
    seed: { type: 'string' },
  },
});
const accept = Number(values.accept);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);

const where = await exampleNodes(values);
try {
  const jobs: DispyJob<number>[] = [];
  let accepted = false;
  // Called in order, never re-entrantly, for every provisional and final status of a job.
  const jobStatus = (job: DispyJob): void => {
    if (job.status !== DispyJob.ProvisionalResult) return;
    const [round, r] = job.result as [number, number];
    console.log(`job ${String(job.id)} on ${job.ipAddr}: round ${round} drew ${r.toFixed(5)}`);
    if (r < accept && !accepted) {
      accepted = true;
      console.log(`accepted ${r.toFixed(5)} from job ${String(job.id)}; cancelling the jobs still going`);
      for (const j of jobs) if (!j.settled) void cluster.cancel(j);
    }
  };
  const cluster = new JobCluster(compute, { nodes: where.nodes, secret: where.secret, jobStatus });
  for (let i = 0; i < Number(values.jobs); i++) {
    const job = cluster.submit(seed + i, Number(values.rounds), Number(values['step-sec']), Number(values.threshold));
    job.id = i;
    jobs.push(job);
  }
  await cluster.wait();
  for (const job of jobs) {
    const outcome = job.status === DispyJob.Finished ? `best ${(job.result as number).toFixed(5)}` : (job.exception ?? '').split('\n')[0];
    console.log(`job ${String(job.id)}: ${statusName(job.status)}: ${outcome}`);
  }
  if (!accepted) console.log(`no draw below ${accept}: every job ran all its rounds`);
  await cluster.close();
} finally {
  await where.stop();
}
