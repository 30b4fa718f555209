/**
 * The job ledger (src/client/job-ledger.ts) without a daemon: where jobs queue, how a handed
 * back or lost attempt comes back (front of its queue, its node's when pinned), when a lost job
 * re-runs (reentrant, not pinned, not closing, no cancel asked), when it is given up
 * (MAX_SEND_ATTEMPTS lost sends) and which job is the earliest queued.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobLedger, MAX_SEND_ATTEMPTS, type Loss, type Queued } from '../src/client/job-ledger.js';
import { DispyJob } from '../src/client/dispy-job.js';
import { JobStatus } from '../src/client/status.js';

interface Node {
  ip: string;
}
const A: Node = { ip: '127.0.0.2' };
const LOST: Loss = { lost: true, reentrant: false, closing: false };
const HANDED_BACK: Loss = { lost: false, reentrant: false, closing: false };

let uids = 0;
function item(): Queued {
  const uid = ++uids;
  return { job: new DispyJob(uid, uid, [], null), args: new Uint8Array(1) };
}
const ids = (xs: Iterable<Queued>) => [...xs].map((q) => q.job._uid);

test('jobs queue in order; pinned ones in their node queue; takeQueued empties all', () => {
  const l = new JobLedger<Node>();
  const [a, b, c] = [item(), item(), item()];
  l.add(a, null);
  l.add(b, '127.0.0.2');
  l.add(c, null);
  assert.deepEqual(ids(l.queue), [a.job._uid, c.job._uid]);
  assert.deepEqual(ids(l.pinned.get('127.0.0.2')!), [b.job._uid]);
  assert.deepEqual(ids(l.takeQueued()), [a.job._uid, c.job._uid, b.job._uid]);
  assert.equal(l.queue.length + l.pinned.get('127.0.0.2')!.length, 0);
});

test('an attempt handed back goes to the front of its queue: the pinned node queue for a pinned job', () => {
  const l = new JobLedger<Node>();
  const [a, b, p] = [item(), item(), item()];
  l.add(b, null);
  const sa = l.send(1, a, A, false);
  assert.equal(l.lose(sa, A.ip, HANDED_BACK), 'requeue');
  assert.deepEqual(ids(l.queue), [a.job._uid, b.job._uid]);
  const sp = l.send(2, p, A, true);
  assert.equal(l.requeue(sp, A.ip), 'requeue');
  assert.deepEqual(ids(l.pinned.get(A.ip)!), [p.job._uid]);
  assert.deepEqual(Object.keys(l.queue.peek()!).sort(), ['args', 'job'], 'queued again without where it was sent');
});

test('a job lost unstarted is re-queued until its MAX_SEND_ATTEMPTS-th loss, then given up; handing back never counts', () => {
  const l = new JobLedger<Node>();
  const a = item();
  for (let i = 1; i < MAX_SEND_ATTEMPTS; i++) {
    assert.equal(l.lose(l.send(i, a, A, false), A.ip, LOST), 'requeue', `loss ${i}`);
    l.queue.shift();
  }
  assert.equal(l.lose(l.send(99, a, A, false), A.ip, HANDED_BACK), 'requeue', 'a nak or closeNode is not a loss');
  l.queue.shift();
  assert.equal(l.lostSends(a.job), MAX_SEND_ATTEMPTS - 1);
  assert.equal(l.lose(l.send(100, a, A, false), A.ip, LOST), 'give-up');
  assert.equal(l.queue.length, 0, 'a job given up is not queued');
});

test('a running job lost with its node re-runs only when reentrant, unpinned, not closing and not cancelled', () => {
  const started = (pinned = false) => {
    const l = new JobLedger<Node>();
    const s = l.send(1, item(), A, pinned);
    s.started = true;
    return { l, s };
  };
  let t = started();
  assert.equal(t.l.lose(t.s, A.ip, LOST), 'abandon', 'not reentrant');
  t = started();
  assert.equal(t.l.lose(t.s, A.ip, { ...LOST, reentrant: true }), 'rerun');
  assert.deepEqual(ids(t.l.queue), [t.s.job._uid], 'at the front of the queue');
  t = started(true);
  assert.equal(t.l.lose(t.s, A.ip, { ...LOST, reentrant: true }), 'abandon', 'pinned: its node is gone');
  t = started();
  assert.equal(t.l.lose(t.s, A.ip, { ...LOST, reentrant: true, closing: true }), 'abandon', 'closing');
  t = started();
  t.l.cancelRequested(t.s.job);
  assert.equal(t.l.lose(t.s, A.ip, { ...LOST, reentrant: true }), 'abandon', 'cancel asked for');
  assert.equal(t.l.lostSends(t.s.job), 0, 'a running job lost is not a lost send');
});

test('a job whose cancel was asked for never comes back to a queue', () => {
  const l = new JobLedger<Node>();
  const s = l.send(1, item(), A, false);
  l.cancelRequested(s.job);
  assert.equal(l.lose(s, A.ip, HANDED_BACK), 'cancel');
  assert.equal(l.lose(s, A.ip, LOST), 'cancel');
  assert.equal(l.queue.length, 0);
});

test('headOrder: the earliest job not ended among the queue, the jobs set apart and every pinned queue', () => {
  const l = new JobLedger<Node>();
  assert.equal(l.headOrder(), null);
  const [a, b, c, d] = [item(), item(), item(), item()];
  l.add(c, null);
  l.large.push(b);
  l.add(d, '127.0.0.3');
  assert.equal(l.headOrder(), b.job._uid);
  l.add(a, '127.0.0.2');
  assert.equal(l.headOrder(), a.job._uid);
  a.job._settle(JobStatus.Cancelled);
  b.job._settle(JobStatus.Cancelled);
  assert.equal(l.headOrder(), c.job._uid, 'ended jobs do not count');
  c.job._settle(JobStatus.Cancelled);
  assert.equal(l.headOrder(), d.job._uid);
  assert.equal(l.queue.length, 0, 'ended jobs at the head of the queue are dropped');
});

test('attemptsOn lists the attempts of one node', () => {
  const l = new JobLedger<Node>();
  const B: Node = { ip: '127.0.0.3' };
  l.send(1, item(), A, false);
  l.send(2, item(), B, false);
  l.send(3, item(), A, true);
  assert.deepEqual(
    l.attemptsOn(A).map(([uid]) => uid),
    [1, 3],
  );
});
