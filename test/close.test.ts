/** close(): waiting, timing out, terminating; every job settles. Also wait(timeout). */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob, DispyNode, type DispyStatus } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.23', cpus: 2 });
});
after(async () => {
  await node.stop();
});

const sleep = async (ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return ms;
};

test('close without terminate waits for every job', async () => {
  const cluster = new JobCluster(sleep, clusterOn(node));
  const jobs = [50, 100, 150, 200, 250].map((ms) => cluster.submit(ms));
  assert.equal(await cluster.close(), true);
  for (const j of jobs) assert.equal(j.status, DispyJob.Finished);
  assert.equal(cluster.closed, true);
  assert.throws(() => cluster.submit(1), { code: 'DISPY_ERR_CLUSTER_CLOSED' });
});

test('wait(timeout) and close({ timeout }) give up without terminating', async () => {
  const cluster = new JobCluster(sleep, clusterOn(node));
  const job = cluster.submit(1500);
  assert.equal(await cluster.wait(0.1), false);
  assert.equal(await cluster.close({ timeout: 0.1 }), false);
  assert.equal(cluster.closed, false, 'a timed-out close leaves the cluster open');
  assert.equal(await job.wait(), 1500);
  assert.equal(await cluster.wait(0.1), true);
  assert.equal(await cluster.close(), true);
});

test('close({ terminate }) cancels queued jobs and terminates running ones; all settle', async () => {
  const events: DispyStatus[] = [];
  const cluster = new JobCluster(sleep, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    clusterStatus: (s) => events.push(s),
  });
  const jobs = Array.from({ length: 8 }, () => cluster.submit(20_000));
  await until(() => jobs.filter((j) => j.status === DispyJob.Running).length >= 2, 30_000, 'two jobs running');
  const t0 = Date.now();
  assert.equal(await cluster.close({ terminate: true }), true);
  assert.ok(Date.now() - t0 < 5000, 'terminating close is quick');
  const outcomes = await Promise.allSettled(jobs.map((j) => j.wait()));
  assert.ok(outcomes.every((o) => o.status === 'rejected'));
  assert.equal(jobs.filter((j) => j.status === DispyJob.Terminated).length, 2);
  assert.equal(jobs.filter((j) => j.status === DispyJob.Cancelled).length, 6);
  assert.equal(events.at(-1), DispyNode.Closed);
  assert.equal(cluster.status().jobsPending, 0);
});

test('await using closes the cluster', async () => {
  let job: DispyJob | undefined;
  {
    await using cluster = new JobCluster(sleep, clusterOn(node));
    job = cluster.submit(10_000);
    await until(() => job!.status === DispyJob.Running, 30_000, 'the job running');
  }
  assert.equal(job!.status, DispyJob.Terminated);
});
