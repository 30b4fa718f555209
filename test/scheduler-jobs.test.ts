/**
 * `dispyts scheduler` with a raw protocol client: compute, schedule, jobs whose arguments the
 * client encoded and whose results come back as the node encoded them, events relayed in
 * order, and a wrong cluster secret refused while the scheduler keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobStatus, NodeStatus } from '../src/client/status.js';
import { startNode, type TestNode } from './helpers/daemon.js';
import { RawClient, fn, startScheduler, type TestScheduler } from './helpers/scheduler.js';

let node: TestNode;
let sched: TestScheduler;

before(async () => {
  node = await startNode({ host: '127.0.0.210', cpus: 2 });
  sched = await startScheduler({ host: '127.0.0.211', nodes: [`${node.host}:${node.port}`] });
});

after(async () => {
  await sched?.stop();
  await node?.stop();
});

test('compute, schedule, jobs: results come back encoded as the node sent them', async () => {
  const c = await RawClient.connect(sched);
  assert.equal(c.info.policy, 'fsfs');
  assert.equal(c.info.cooperative, false);
  const { computeId, name } = await c.start(
    fn(
      'async function compute(a, b) { if (b === 0) throw new Error("no zero"); console.log("out", a); return { sum: a + b, when: new Date(5), big: 2n ** 70n, m: new Map([[a, "x"]]) }; }',
    ),
  );
  assert.equal(name, 'compute @ 127.0.0.1');
  const init = await c.waitFor((m) => m.t === 'node-status' && m.status === NodeStatus.Initialized);
  assert.equal(init.t === 'node-status' && init.node.ipAddr, node.host);
  const uids = [1, 2, 3].map((i) => c.job(computeId, [i, 10], { tag: `job-${i}` }));
  const bad = c.job(computeId, [1, 0]);
  for (const [i, uid] of uids.entries()) {
    const end = await c.jobEnd(uid);
    assert.equal(end.status, JobStatus.Finished, end.exception ?? '');
    assert.equal(end.ip, node.host);
    assert.match(end.stdout, new RegExp(`out ${i + 1}`));
    assert.deepEqual(c.result(end), { sum: i + 11, when: new Date(5), big: 2n ** 70n, m: new Map([[i + 1, 'x']]) });
    assert.ok(end.startTime !== null && end.endTime !== null && end.endTime >= end.startTime);
  }
  const failed = await c.jobEnd(bad);
  assert.equal(failed.status, JobStatus.Terminated);
  assert.match(failed.exception ?? '', /no zero/);
  // Each job was reported Running before it ended.
  for (const uid of [...uids, bad]) {
    const running = c.received.findIndex((m) => m.t === 'job-status' && m.uid === uid && m.status === JobStatus.Running);
    const ended = c.received.findIndex((m) => m.t === 'job-end' && m.uid === uid);
    assert.ok(running >= 0 && running < ended, `job ${uid}: Running before its end`);
  }
  const closed = await c.request({ t: 'close', computeId, terminate: false });
  assert.equal(closed.ok, true);
  // A closed computation is forgotten.
  const late = c.job(computeId, [1, 1]);
  const refused = await c.jobEnd(late);
  assert.equal(refused.status, JobStatus.Cancelled);
  assert.equal(refused.code, 'DISPY_ERR_UNKNOWN_COMPUTATION');
  c.close();
});

test('a job pinned to a node, cancel of a running job, and close with terminate', async () => {
  const c = await RawClient.connect(sched);
  const { computeId } = await c.start(fn('async function compute(ms) { await new Promise((r) => setTimeout(r, ms)); return ms; }'));
  const pinned = c.job(computeId, [10], { node: node.host });
  assert.equal((await c.jobEnd(pinned)).status, JobStatus.Finished);
  const nowhere = c.job(computeId, [10], { node: '127.0.0.99' });
  const r = await c.jobEnd(nowhere);
  assert.equal(r.status, JobStatus.Cancelled);
  assert.equal(r.code, 'DISPY_ERR_NODE_UNKNOWN');
  const long = c.job(computeId, [20_000]);
  await c.waitFor((m) => m.t === 'job-status' && m.uid === long && m.status === JobStatus.Running);
  c.send({ t: 'cancel', uid: long });
  assert.equal((await c.jobEnd(long)).status, JobStatus.Terminated);
  const a = c.job(computeId, [20_000]);
  const b = c.job(computeId, [20_000]);
  const q = c.job(computeId, [20_000]);
  await c.waitFor((m) => m.t === 'job-status' && m.uid === b && m.status === JobStatus.Running);
  const closed = await c.request({ t: 'close', computeId, terminate: true });
  assert.equal(closed.ok, true);
  const ends = await Promise.all([a, b, q].map((u) => c.jobEnd(u, 1)));
  assert.deepEqual(
    ends.map((e) => e.status),
    [JobStatus.Terminated, JobStatus.Terminated, JobStatus.Cancelled],
  );
  c.close();
});

test('provisional results and setup arguments travel encoded, untouched by the scheduler', async () => {
  const c = await RawClient.connect(sched);
  const { computeId } = await c.start(
    fn(
      'async function compute(n) { for (let i = 1; i <= n; i++) { dispyProvisionalResult({ step: BigInt(i) * globalThis.factor }); await new Promise((r) => setTimeout(r, 20)); } return globalThis.factor; }',
    ),
    { setup: 'function setup(f) { globalThis.factor = f; }', setupArgs: c.codec.encode([7n]) },
  );
  const uid = c.job(computeId, [3]);
  const end = await c.jobEnd(uid);
  assert.equal(end.status, JobStatus.Finished, end.exception ?? '');
  assert.equal(c.result(end), 7n);
  const steps = c.received
    .filter((m) => m.t === 'provisional' && m.uid === uid)
    .map((m) => (m.t === 'provisional' ? c.codec.decode(m.result) : null));
  assert.deepEqual(steps, [{ step: 7n }, { step: 14n }, { step: 21n }]);
  await c.request({ t: 'close', computeId, terminate: false });
  c.close();
});

test('a wrong cluster secret is refused with DISPY_ERR_AUTH; the scheduler keeps serving', async () => {
  await assert.rejects(
    RawClient.connect(sched, { secret: 'not-the-cluster-secret-at-all' }),
    (err: Error & { code?: string }) => err.code === 'DISPY_ERR_AUTH',
  );
  const c = await RawClient.connect(sched);
  const { computeId } = await c.start(fn('function compute(x) { return x * 2; }'));
  assert.equal(c.result(await c.jobEnd(c.job(computeId, [21]))), 42);
  await c.request({ t: 'close', computeId, terminate: false });
  c.close();
  assert.match(sched.log(), /DISPY_ERR_AUTH/);
});
