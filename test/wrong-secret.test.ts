/** A cluster with the wrong secret: an error naming the node, jobs kept queued, a clean close. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { JobCluster, JobStatus, type DispyError } from '../src/index.js';
import { TEST_SECRET, alive, startNode, type TestNode, within } from './helpers/daemon.js';

const WRONG = 'this-is-not-the-secret-0123456789';
let node: TestNode;

before(async () => {
  node = await startNode({ host: '127.0.0.12', cpus: 2 });
});

after(async () => {
  await node?.stop();
});

function cluster(secret: string): JobCluster<(x: number) => number> {
  return new JobCluster((x: number) => x + 1, { nodes: [{ host: node.host, port: node.port }], secret });
}

/** Rejects instead of hanging when `p` does not settle in time. */
async function expectAuthError(c: JobCluster): Promise<DispyError> {
  const [err] = (await within(once(c, 'error'), 5000, 'the error event')) as [DispyError];
  assert.equal(err.code, 'DISPY_ERR_AUTH');
  assert.ok(err.message.includes(`${node.host}:${node.port}`), `names the node: ${err.message}`);
  return err;
}

test('wrong secret: DISPY_ERR_AUTH naming the node, jobs stay queued, close({ timeout: 0, terminate }) cancels them', async () => {
  const c = cluster(WRONG);
  const errP = expectAuthError(c);
  const jobs = [1, 2, 3].map((x) => c.submit(x));
  await errP;
  // Give a (wrong) retry or dispatch a chance to happen before looking.
  await new Promise((r) => setImmediate(r));
  for (const j of jobs) assert.equal(j.status, JobStatus.Created);
  assert.equal(c.status().jobsPending, 3);
  assert.equal(c.status().nodes.length, 0);
  const settled = Promise.allSettled(jobs.map((j) => j.wait()));
  assert.equal(await within(c.close({ timeout: 0, terminate: true }), 5000, 'close({ timeout: 0, terminate: true })'), true);
  for (const r of await settled) {
    assert.equal(r.status, 'rejected');
    assert.equal((r.reason as DispyError).code, 'DISPY_ERR_JOB_CANCELLED');
  }
  assert.equal(c.status().jobsPending, 0);
  assert.ok(alive(node.pid));
});

test('a wrong-secret cluster does not disturb a working one in the same process', async () => {
  const good = cluster(TEST_SECRET);
  try {
    assert.deepEqual(await Promise.all([1, 2].map((x) => good.submit(x).wait())), [2, 3]);
    const bad = cluster(WRONG);
    const errP = expectAuthError(bad);
    const badJob = bad.submit(100);
    const goodJobs = [10, 20, 30].map((x) => good.submit(x));
    await errP;
    assert.deepEqual(await Promise.all(goodJobs.map((j) => j.wait())), [11, 21, 31]);
    assert.equal(badJob.status, JobStatus.Created);
    const badWait = badJob.wait();
    await within(bad.close({ timeout: 0, terminate: true }), 5000, 'close of the wrong-secret cluster');
    await assert.rejects(badWait, { code: 'DISPY_ERR_JOB_CANCELLED' });
    // The first cluster still works after the other one went away.
    assert.equal(await good.submit(41).wait(), 42);
  } finally {
    await within(good.close(), 5000, 'close of the good cluster');
  }
  // And the daemon keeps serving new clusters.
  const again = cluster(TEST_SECRET);
  try {
    assert.equal(await again.submit(1).wait(), 2);
  } finally {
    await again.close();
  }
  assert.ok(alive(node.pid));
});

test('close({ terminate: true }) without a timeout settles jobs that can never run', async () => {
  const c = cluster(WRONG);
  const errP = expectAuthError(c);
  const job = c.submit(1);
  await errP;
  const waited = job.wait();
  await within(c.close({ terminate: true }), 1000, 'close({ terminate: true })');
  await assert.rejects(waited, { code: 'DISPY_ERR_JOB_CANCELLED' });
});
