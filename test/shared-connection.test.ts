/**
 * Several clusters in one process reach a node over one connection with one CPU ledger: their
 * running jobs together never exceed the node's CPUs, each keeps its own DispyNode view.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster } from '../src/index.js';
import { startNode, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.34', cpus: 2 });
});
after(async () => {
  await node.stop();
});

test('two clusters share one node: at most 2 jobs run at once, each counts its own', async () => {
  const work = async (ms: number) => {
    await new Promise((r) => setTimeout(r, ms));
    return ms;
  };
  const a = new JobCluster(work, { ...clusterOn(node), name: 'a' });
  const b = new JobCluster(work, { ...clusterOn(node), name: 'b' });
  const jobs = [...Array.from({ length: 6 }, () => a.submit(120)), ...Array.from({ length: 6 }, () => b.submit(120))];
  await Promise.all(jobs.map((j) => j.wait()));
  // Concurrency as the node measured it (start and end times taken by the runners). Status
  // events of two clusters are two queues, so their relative order says nothing about the node.
  const edges = jobs.flatMap((j) => [
    { t: j.startTime!, d: 1 },
    { t: j.endTime!, d: -1 },
  ]);
  edges.sort((x, y) => x.t - y.t || x.d - y.d); // an end and a start in the same ms: the end first
  let running = 0;
  let peak = 0;
  for (const e of edges) {
    running += e.d;
    peak = Math.max(peak, running);
  }
  assert.ok(peak <= 2, `peak ${peak} running jobs on a 2-cpu node`);
  assert.equal(peak, 2);
  const [na] = a.status().nodes;
  const [nb] = b.status().nodes;
  assert.notEqual(na, nb, 'each cluster has its own DispyNode');
  assert.equal(na!.jobsDone, 6);
  assert.equal(nb!.jobsDone, 6);
  await Promise.all([a.close(), b.close()]);
  assert.equal((node.log().match(/"msg":"client authenticated"/g) ?? []).length, 1, 'one connection for both clusters');
});
