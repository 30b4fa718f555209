/**
 * dispy's bounded_submit.py, ported: submit a long stream of jobs without queueing them all at
 * once. The loop waits whenever `--upper` jobs are pending and goes on once the `jobStatus`
 * callback has seen them drop to `--lower`, so the client holds at most `--upper` jobs (and
 * their arguments) however many it submits in all.
 *
 *   npm run build:js && node --import tsx examples/bounded-submit.ts
 *
 * Options: --jobs N (default 100), --upper N (default 16), --lower N (default 8), --job-sec S
 * (each job sleeps up to S; default 0.5), and those of examples/local-nodes.ts.
 */
import { parseArgs } from 'node:util';
import { DispyJob, JobCluster, isFinal } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

async function compute(i: number, sec: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, sec * 1000));
  return i * i;
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    jobs: { type: 'string', default: '100' },
    upper: { type: 'string', default: '16' },
    lower: { type: 'string', default: '8' },
    'job-sec': { type: 'string', default: '0.5' },
  },
});
const total = Number(values.jobs);
const upper = Number(values.upper);
const lower = Math.min(Number(values.lower), upper - 1);

const where = await exampleNodes(values);
try {
  let pending = 0;
  let wake: (() => void) | null = null;
  let sum = 0;
  let failed = 0;
  // Called in order for each job's final status (and provisional results, which this
  // computation has none of).
  const jobStatus = (job: DispyJob): void => {
    if (!isFinal(job.status)) return;
    pending--;
    if (job.status === DispyJob.Finished) sum += job.result as number;
    else failed++;
    if (pending <= lower && wake) {
      wake();
      wake = null;
    }
  };
  const cluster = new JobCluster(compute, { nodes: where.nodes, secret: where.secret, jobStatus });
  let most = 0;
  for (let i = 0; i < total; i++) {
    if (pending >= upper) await new Promise<void>((resolve) => (wake = resolve));
    cluster.submit(i, Math.random() * Number(values['job-sec']));
    pending++;
    // The cluster's own count agrees: jobs submitted and not yet ended.
    most = Math.max(most, cluster.status().jobsPending);
  }
  // close() waits for the jobs and resolves once every callback has run.
  await cluster.close();
  const expected = ((total - 1) * total * (2 * total - 1)) / 6;
  console.log(`${total} jobs, at most ${most} pending at once (upper bound ${upper}, lower ${lower}); ${failed} failed`);
  console.log(`sum of squares: ${sum} (${sum === expected ? 'correct' : `expected ${expected}`})`);
} finally {
  await where.stop();
}
