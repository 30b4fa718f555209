/**
 * dispy's sample.py, ported: ten jobs that each sleep a few seconds and say where they ran, the
 * results collected in submission order, then the cluster's status table.
 *
 *   npm run build:js && node --import tsx examples/sample.ts
 *
 * Options: --jobs N (default 10), --min-sec S / --max-sec S (each job sleeps a random time in
 * between; default 1 and 4), and those of examples/local-nodes.ts (--hosts, --cpus, --nodes,
 * --secret). In your own program, import from 'dispyts' instead of '../src/index.js'.
 */
import { parseArgs } from 'node:util';
import { JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

/** Set by the job runner on each node: the node's name (its `--name`, by default the host name). */
declare const dispyNodeName: string;

// Runs on a node: the function's source travels, not the function, so it may use only its
// arguments, globals and what `depends` ships.
async function compute(n: number): Promise<[string, number]> {
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return [dispyNodeName, n];
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    jobs: { type: 'string', default: '10' },
    'min-sec': { type: 'string', default: '1' },
    'max-sec': { type: 'string', default: '4' },
  },
});
const minSec = Number(values['min-sec']);
const maxSec = Math.max(minSec, Number(values['max-sec']));

const where = await exampleNodes(values);
try {
  const cluster = new JobCluster(compute, { nodes: where.nodes, secret: where.secret });
  const t0 = Date.now();
  const jobs = [];
  for (let i = 0; i < Number(values.jobs); i++) {
    const job = cluster.submit(Math.round((minSec + Math.random() * (maxSec - minSec)) * 100) / 100);
    job.id = i; // the id is the user's to set; by default it counts from 1
    jobs.push(job);
  }
  for (const job of jobs) {
    const [host, n] = await job.wait(); // the result, or a rejection if the job failed
    console.log(`${host} executed job ${String(job.id)} at ${new Date(job.startTime!).toISOString()} with ${n}`);
  }
  await cluster.close();
  cluster.printStatus((Date.now() - t0) / 1000);
} finally {
  await where.stop();
}
