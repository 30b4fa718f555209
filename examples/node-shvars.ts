/**
 * dispy's node_shvars.py, ported: the jobs of a node update a variable they share, under a lock,
 * so no two jobs update it at once. dispy shares a `multiprocessing.Value` between the node's
 * job processes; dispyts runners are separate processes, so the variable lives in the node's
 * shared store for the computation (`dispyNodeShared`, served by the daemon; its value is set
 * once per node by `nodeSetup`). Each job adds a random number to it and returns the new value;
 * the client checks that each node's values form one chain from 1.
 *
 *   npm run build:js && node --import tsx examples/node-shvars.ts
 *
 * Options: --jobs N (default 10), and those of examples/local-nodes.ts (--hosts, --cpus,
 * --nodes, --secret).
 */
import { parseArgs } from 'node:util';
import { DispyJob, JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

/** The node's shared store of this computation (see docs/jobs.md). */
declare const dispyNodeShared: {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
  lock<T>(name: string, fn: () => Promise<T>): Promise<T>;
};

// Once per node, before the runners set up: the shared variable starts at 1.
async function nodeSetup(): Promise<number> {
  await dispyNodeShared.set('shvar', 1);
  return 0;
}

async function compute(): Promise<[number, number]> {
  const r = 1 + Math.floor(Math.random() * 10);
  // Under the node-wide lock, as dispy's Value(lock=...): read, add, write.
  const value = await dispyNodeShared.lock('shvar', async () => {
    const v = ((await dispyNodeShared.get('shvar')) as number) + r;
    await dispyNodeShared.set('shvar', v);
    return v;
  });
  return [r, value];
}

const { values } = parseArgs({ options: { ...NODE_OPTIONS, jobs: { type: 'string', default: '10' } } });
const where = await exampleNodes(values);
try {
  const cluster = new JobCluster(compute, { nodes: where.nodes, secret: where.secret, nodeSetup });
  const jobs = Array.from({ length: Number(values.jobs) }, () => cluster.submit());
  const byNode = new Map<string, [number, number][]>();
  for (const job of jobs) {
    await job.wait().catch(() => undefined);
    if (job.status !== DispyJob.Finished) {
      console.log(`job ${String(job.id)} failed: ${job.exception}`);
    } else {
      console.log(`${String(job.id)}: ${job.result![1]}`);
      byNode.set(job.ipAddr!, [...(byNode.get(job.ipAddr!) ?? []), job.result!]);
    }
  }
  cluster.printStatus();
  await cluster.close();
  // Each node's values, in order, step from 1 by the increments its jobs drew: no update lost.
  for (const [ip, results] of [...byNode].sort()) {
    const steps = results.sort((a, b) => a[1] - b[1]);
    const chained = steps.every(([r, v], k) => v === (k === 0 ? 1 : steps[k - 1]![1]) + r);
    console.log(
      `node ${ip}: ${steps.length} jobs, shvar ended at ${steps.at(-1)![1]}: ${chained ? 'one chain from 1, no update lost' : 'UPDATES LOST'}`,
    );
  }
} finally {
  await where.stop();
}
