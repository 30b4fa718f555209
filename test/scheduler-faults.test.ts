/**
 * Clients that vanish and a scheduler that stops: a silent client is cut off after 5 heartbeat
 * intervals; SIGTERM ends every job with DISPY_ERR_CLUSTER_CLOSED and closes connections cleanly.
 * (A client whose connection dies: scheduler-client-gone.test.ts.)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobStatus } from '../src/client/status.js';
import { startNode, until, within, type TestNode } from './helpers/daemon.js';
import { RawClient, fn, startScheduler, type TestScheduler } from './helpers/scheduler.js';

let node: TestNode;
let sched: TestScheduler;

before(async () => {
  node = await startNode({ host: '127.0.0.219', cpus: 1 });
  sched = await startScheduler({ host: '127.0.0.220', nodes: [`${node.host}:${node.port}`], args: ['--zombie-interval', '1'] });
});

after(async () => {
  await sched?.stop();
  await node?.stop();
});

const SLEEP = fn('async function compute(tag, ms) { await new Promise((r) => setTimeout(r, ms)); return tag; }');

test('a client silent for 5 of its heartbeat intervals is cut off', async () => {
  const c = await RawClient.connect(sched);
  c.send({ t: 'beat', every: 0.1 });
  const reason = (await within(c.closed, 5000, 'the silent client cut off')) as { code?: string } | null;
  assert.equal(reason, null, 'an orderly close from the scheduler');
  await until(() => /sent nothing for/.test(sched.log()), 5000, 'the reason logged');
});

test('SIGTERM: every job ends with DISPY_ERR_CLUSTER_CLOSED, clients are told, connections close cleanly', async () => {
  const d = await RawClient.connect(sched);
  const { computeId } = await d.start(SLEEP);
  const running = d.job(computeId, ['D', 30_000]);
  const queued = d.job(computeId, ['D', 30_000]);
  await d.waitFor((m) => m.t === 'job-status' && m.uid === running && m.status === JobStatus.Running);
  const waiting = await d.request({ t: 'compute', name: 'unscheduled', computation: SLEEP });
  const held = d.job(waiting.computeId!, ['never', 1]);
  assert.equal(await sched.stop('SIGTERM'), 0);
  const ends = await Promise.all([running, queued, held].map((u) => d.jobEnd(u, 1)));
  assert.deepEqual(
    ends.map((e) => e.status),
    [JobStatus.Terminated, JobStatus.Cancelled, JobStatus.Cancelled],
  );
  for (const e of ends) {
    assert.equal(e.code, 'DISPY_ERR_CLUSTER_CLOSED', `job ${e.uid}: ${e.exception}`);
    assert.match(e.exception ?? '', /shutting down/);
  }
  const closed = await d.waitFor((m) => m.t === 'closed' && m.computeId === computeId, 1);
  assert.match(closed.t === 'closed' ? closed.reason : '', /shutting down \(SIGTERM\)/);
  // The job-ends and `closed` came before the connection ended.
  assert.equal(await d.closed, null);
});
