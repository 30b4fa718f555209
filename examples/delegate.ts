/**
 * dispy's delegate.py, ported: the computation `delegate` is sent once; each job brings the
 * function it runs (`submitWith({ depends: [func] })`, dispy's `dispy_job_depends`), which is in
 * the computation's scope for that job only and gone for the next.
 *
 *   npm run build:js && node --import tsx examples/delegate.ts
 *
 * Options: --jobs N (default 4), --min-sec S / --max-sec S (each job sleeps a random time in
 * between; default 5 and 10, as in dispy), and those of examples/local-nodes.ts (--hosts, --cpus,
 * --nodes, --secret).
 */
import { parseArgs } from 'node:util';
import { JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

declare const dispyNodeName: string;

// Sent with the cluster: it calls the function its job brought (only that one is defined).
function delegate(funcName: string, n: number): Promise<[string, number]> {
  const func = funcName === 'func1' ? func1 : func2;
  return func(n);
}

// Sent with jobs, alternately; they differ only in what they return.
async function func1(n: number): Promise<[string, number]> {
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return [`${dispyNodeName}: func1`, n];
}

async function func2(n: number): Promise<[string, number]> {
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return [`${dispyNodeName}: func2`, n];
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    jobs: { type: 'string', default: '4' },
    'min-sec': { type: 'string', default: '5' },
    'max-sec': { type: 'string', default: '10' },
  },
});
const minSec = Number(values['min-sec']);
const maxSec = Math.max(minSec, Number(values['max-sec']));

const where = await exampleNodes(values);
try {
  const cluster = new JobCluster(delegate, { nodes: where.nodes, secret: where.secret });
  const jobs = [];
  for (let i = 0; i < Number(values.jobs); i++) {
    const func = i % 2 === 0 ? func1 : func2;
    const n = Math.round((minSec + Math.random() * (maxSec - minSec)) * 100) / 100;
    // The function goes with this job only, and is discarded when it is over.
    const job = cluster.submitWith({ depends: [func], id: i }, func.name, n);
    jobs.push(job);
  }
  for (const job of jobs) {
    const [host, n] = await job.wait();
    console.log(`${host} executed job ${String(job.id)} at ${new Date(job.startTime!).toISOString()} with ${n}`);
  }
  await cluster.close();
  cluster.printStatus();
} finally {
  await where.stop();
}
