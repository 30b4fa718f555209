/**
 * Scheduler policies on one 1-CPU node shared by two raw clients: with fsfs the jobs run in the
 * order they were submitted (all of the first client's, then the second's), with fair the two
 * computations take turns. Then exclusive admission: an exclusive computation waits until no
 * other is active, runs alone, and may change its nodes' CPUs; --cooperative lets any do so.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobStatus, NodeStatus } from '../src/client/status.js';
import { startNode, type TestNode } from './helpers/daemon.js';
import { RawClient, fn, startScheduler, type TestScheduler } from './helpers/scheduler.js';

let node: TestNode;
let sched: TestScheduler | null = null;

before(async () => {
  node = await startNode({ host: '127.0.0.215', cpus: 1 });
});

after(async () => {
  await sched?.stop();
  await node?.stop();
});

const SLEEP = fn('async function compute(tag, ms) { await new Promise((r) => setTimeout(r, ms)); return tag; }');

/** Runs 4 jobs of client A, then 4 of client B, on the 1-CPU node; returns the tags in start order. */
async function runOrder(policy: 'fsfs' | 'fair'): Promise<string> {
  sched = await startScheduler({ host: '127.0.0.216', nodes: [`${node.host}:${node.port}`], args: ['--policy', policy] });
  try {
    const a = await RawClient.connect(sched, { localAddress: '127.0.0.217' });
    const b = await RawClient.connect(sched, { localAddress: '127.0.0.218' });
    assert.equal(a.info.policy, policy);
    const ca = await a.start(SLEEP);
    const cb = await b.start(SLEEP);
    await Promise.all([a, b].map((c) => c.waitFor((m) => m.t === 'node-status' && m.status === NodeStatus.Initialized)));
    const first = a.job(ca.computeId, ['A', 250]);
    for (let i = 0; i < 3; i++) a.job(ca.computeId, ['A', 250]);
    // B's jobs come while A's first one runs, after A's others were queued.
    await a.waitFor((m) => m.t === 'job-status' && m.uid === first && m.status === JobStatus.Running);
    const bUids = Array.from({ length: 4 }, () => b.job(cb.computeId, ['B', 250]));
    await b.jobEnd(bUids[3]!, 20_000);
    await a.jobEnd(4, 20_000);
    const starts: { tag: string; t: number }[] = [];
    for (const [c, tag] of [
      [a, 'A'],
      [b, 'B'],
    ] as const) {
      for (const m of c.received) if (m.t === 'job-end') starts.push({ tag, t: m.startTime! });
    }
    assert.equal(starts.length, 8);
    const order = starts
      .sort((x, y) => x.t - y.t)
      .map((s) => s.tag)
      .join('');
    a.close();
    b.close();
    return order;
  } finally {
    await sched.stop();
    sched = null;
  }
}

test('fsfs runs jobs in submission order, fair alternates between computations', async () => {
  const fsfs = await runOrder('fsfs');
  const fair = await runOrder('fair');
  assert.equal(fsfs, 'AAAABBBB', `fsfs order ${fsfs}`);
  assert.equal(fair, 'ABABABAB', `fair order ${fair}`);
});

test('an exclusive computation waits for the others, runs alone, and may set its nodes CPUs', async () => {
  sched = await startScheduler({ host: '127.0.0.216', nodes: [`${node.host}:${node.port}`] });
  const a = await RawClient.connect(sched);
  const b = await RawClient.connect(sched);
  const c = await RawClient.connect(sched);
  const ca = await a.start(SLEEP);
  const rb = await b.request({ t: 'compute', name: 'alone', computation: SLEEP, exclusive: true });
  const bScheduled = b.request({ t: 'schedule', computeId: rb.computeId! }, 20_000);
  // An ordinary computation that comes after it waits behind it.
  const rc = await c.request({ t: 'compute', name: 'later', computation: SLEEP });
  const cScheduled = c.request({ t: 'schedule', computeId: rc.computeId! }, 20_000);
  const settled = (p: Promise<unknown>): Promise<boolean> =>
    Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 400))]);
  assert.equal(await settled(bScheduled), false, 'the exclusive computation waits while another is active');
  assert.equal(await settled(cScheduled), false, 'a later computation waits behind the exclusive one');
  assert.equal(a.result(await a.jobEnd(a.job(ca.computeId, ['A', 10]))), 'A');
  const aClosedAt = Date.now();
  await a.request({ t: 'close', computeId: ca.computeId, terminate: false });
  const rs = await bScheduled;
  assert.equal(rs.ok, true, rs.error?.message);
  assert.ok(Date.now() >= aClosedAt);
  assert.equal(await settled(cScheduled), false, 'nothing else runs beside the exclusive computation');
  await b.waitFor((m) => m.t === 'node-status' && m.status === NodeStatus.Initialized);
  const set = await b.request({ t: 'node-op', computeId: rb.computeId!, op: 'set-cpus', node: node.host, cpus: 1 });
  assert.equal(set.ok, true, set.error?.message);
  assert.equal(set.value, 1);
  assert.equal(b.result(await b.jobEnd(b.job(rb.computeId!, ['B', 10]))), 'B');
  await b.request({ t: 'close', computeId: rb.computeId!, terminate: false });
  const cs = await cScheduled;
  assert.equal(cs.ok, true, cs.error?.message);
  const refused = await c.request({ t: 'node-op', computeId: rc.computeId!, op: 'set-cpus', node: node.host, cpus: 1 });
  assert.equal(refused.error?.code, 'DISPY_ERR_FORBIDDEN');
  for (const x of [a, b, c]) x.close();
  await sched.stop();
  sched = null;
});

test('--cooperative lets any computation set its nodes CPUs', async () => {
  sched = await startScheduler({ host: '127.0.0.216', nodes: [`${node.host}:${node.port}`], args: ['--cooperative'] });
  const a = await RawClient.connect(sched);
  assert.equal(a.info.cooperative, true);
  const { computeId } = await a.start(SLEEP);
  await a.waitFor((m) => m.t === 'node-status' && m.status === NodeStatus.Initialized);
  const set = await a.request({ t: 'node-op', computeId, op: 'set-cpus', node: node.host, cpus: 1 });
  assert.equal(set.ok, true, set.error?.message);
  assert.equal(set.value, 1);
  const cpus = await a.waitFor((m) => m.t === 'node-status' && m.status === NodeStatus.AvailInfo);
  assert.equal(cpus.t === 'node-status' && cpus.node.cpus, 1);
  a.close();
});
