/**
 * A JobCluster's per-node session (src/client/node-session.ts) without a daemon: the
 * transition table (connecting → setting up → ready ⇄ suspended → dropped, nothing else), the
 * rules around it (retry delays, the reconnect deadline, which failures are final), and the
 * steps on one session with a scripted link and a real job ledger: suspending and running out
 * of time (lost), resuming with the same daemon (jobs it no longer has are lost, cancels asked
 * for meanwhile passed on), a refused resume, and dropping (each job lost once, Closed once).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { DispyError } from '../src/errors.js';
import { DispyJob } from '../src/client/dispy-job.js';
import { DispyNode } from '../src/client/dispy-node.js';
import { JobLedger, type Sent } from '../src/client/job-ledger.js';
import { NodeAllocate } from '../src/client/node-allocate.js';
import type { LinkUser, NodeLink } from '../src/client/node-link.js';
import {
  NodeSession,
  type SessionEvent,
  type SessionHost,
  type SessionState,
  nextState,
  reconnectRefused,
  setupRetried,
  retryDelay,
  suspendDeadline,
} from '../src/client/node-session.js';
import { NodeStatus, type DispyStatus } from '../src/client/status.js';

const STATES: SessionState[] = ['connecting', 'setting-up', 'ready', 'suspended', 'dropped'];
const EVENTS: SessionEvent[] = ['linked', 'set-up', 'broken', 'resumed', 'drop'];

test('the transition table: connecting → setting up → ready ⇄ suspended → dropped, and nothing else', () => {
  const allowed = new Map<string, SessionState>([
    ['connecting linked', 'setting-up'],
    ['connecting drop', 'dropped'],
    ['setting-up set-up', 'ready'],
    ['setting-up drop', 'dropped'],
    ['ready broken', 'suspended'],
    ['ready drop', 'dropped'],
    ['suspended resumed', 'ready'],
    ['suspended drop', 'dropped'],
  ]);
  for (const s of STATES) {
    for (const e of EVENTS) {
      const want = allowed.get(`${s} ${e}`);
      if (want) assert.equal(nextState(s, e), want, `${s} on ${e}`);
      else assert.throws(() => nextState(s, e), { code: 'DISPY_ERR_INTERNAL' }, `${s} on ${e} must not be a transition`);
    }
  }
});

test('retry delays: a suspended node within 1 s, a busy one every 2 s at most, others back off to 30 s', () => {
  assert.equal(retryDelay(0, true, false), 0.1);
  assert.equal(retryDelay(3, true, false), 0.8);
  assert.equal(retryDelay(20, true, true), 1);
  assert.equal(retryDelay(1, false, false), 1);
  assert.equal(retryDelay(2, false, true), 2);
  assert.equal(retryDelay(9, false, true), 2);
  assert.equal(retryDelay(5, false, false), 16);
  assert.equal(retryDelay(9, false, false), 30);
});

test('the reconnect deadline: 5 pulse intervals after last heard, or the window from now without pulseInterval', () => {
  assert.equal(suspendDeadline(1_000, 2, 60, 5_000), 11_000);
  assert.equal(suspendDeadline(1_000, undefined, 60, 5_000), 65_000);
});

test('which failures end a suspended session, and which attempts are tried again', () => {
  assert.equal(reconnectRefused(new DispyError('DISPY_ERR_CONNECTION', 'connect ECONNREFUSED 127.0.0.9:9700')), true);
  assert.equal(reconnectRefused(new DispyError('DISPY_ERR_CONNECTION', 'connect ETIMEDOUT')), false);
  assert.equal(reconnectRefused(new DispyError('DISPY_ERR_AUTH', 'wrong secret')), true);
  for (const code of [
    'DISPY_ERR_COMPUTATION',
    'DISPY_ERR_FREE_VARIABLE',
    'DISPY_ERR_FILE_TOO_LARGE',
    'DISPY_ERR_FORBIDDEN',
    'DISPY_ERR_MESSAGE_TOO_LARGE',
  ])
    assert.equal(setupRetried(code), false, code);
  for (const code of ['DISPY_ERR_CONNECTION', 'DISPY_ERR_AUTH', 'DISPY_ERR_TLS', 'DISPY_ERR_NODE_BUSY', 'DISPY_ERR_TIMEOUT'])
    assert.equal(setupRetried(code), true, code);
});

// ---- one session, a scripted link, a real ledger ----

interface ScriptedLink {
  link: NodeLink;
  released: LinkUser[];
  cancels: number[];
  forgotten: number[];
  adopted: number[];
  delivered: unknown[];
  requests: unknown[];
}

function scriptedLink(nodeId: string, answer: (msg: { t: string }) => Promise<unknown>, lastHeard = Date.now()): ScriptedLink {
  const s: ScriptedLink = { link: null as never, released: [], cancels: [], forgotten: [], adopted: [], delivered: [], requests: [] };
  s.link = {
    lastHeard,
    draining: false,
    closed: false,
    info: { nodeId },
    request: (msg: { t: string }) => {
      s.requests.push(msg);
      return answer(msg);
    },
    release: (u: LinkUser) => s.released.push(u),
    cancel: (uid: number) => s.cancels.push(uid),
    forget: (uid: number) => s.forgotten.push(uid),
    adopt: (_u: LinkUser, uid: number) => s.adopted.push(uid),
    deliver: (r: unknown) => s.delivered.push(r),
    updateRef: () => undefined,
  } as unknown as NodeLink;
  return s;
}

interface Host extends SessionHost {
  lost: { uid: number; lost: boolean; reason: string | undefined }[];
  forgotten: NodeSession[];
  events: DispyStatus[];
}

function host(): Host {
  const h: Host = {
    user: {} as LinkUser,
    computeId: 'c-1',
    log: pino({ level: 'silent' }),
    ledger: new JobLedger<NodeSession>(),
    pending: 1,
    closing: false,
    lost: [],
    forgotten: [],
    events: [],
    loseJob: (s: Sent<NodeSession>, reason: DispyError | null, lost: boolean) =>
      h.lost.push({ uid: s.job._uid, lost, reason: reason?.message }),
    forget: (session: NodeSession) => h.forgotten.push(session),
    emit: (status: DispyStatus) => h.events.push(status),
    pump: () => undefined,
  };
  return h;
}

let uids = 1000;
/** A session made ready on `link`, with `n` jobs sent to it (their wire ids returned). */
function readySession(h: Host, link: NodeLink, n: number): { cn: NodeSession; sent: number[] } {
  const cn = new NodeSession(new NodeAllocate('127.0.0.9'));
  assert.equal(cn.state, 'connecting');
  cn.linked(link, new DispyNode('127.0.0.9', 9700, 'n9', null as never), 2);
  assert.equal(cn.state, 'setting-up');
  assert.equal(cn.ready, false, 'no job goes to a node being set up');
  cn.setUp();
  assert.equal(cn.state, 'ready');
  assert.equal(cn.ready, true);
  const sent: number[] = [];
  for (let i = 0; i < n; i++) {
    const uid = ++uids;
    h.ledger.send(uid, { job: new DispyJob(uid, uid, [], null), args: new Uint8Array(1) }, cn, false);
    cn.inflight++;
    sent.push(uid);
  }
  return { cn, sent };
}

test('a deallocated ready session takes no job; an attempt that never got ready ends dropped with its reason', () => {
  const h = host();
  const { cn } = readySession(h, scriptedLink('d1', async () => ({})).link, 0);
  cn.allocated = false;
  assert.equal(cn.ready, false);
  cn.allocated = true;
  assert.equal(cn.ready, true);
  const attempt = new NodeSession(new NodeAllocate('127.0.0.9'));
  attempt.failed('refused');
  assert.equal(attempt.state, 'dropped');
  assert.equal(attempt.dropReason, 'refused');
  assert.throws(() => attempt.setUp(), { code: 'DISPY_ERR_INTERNAL' });
});

test('suspend: not once the deadline passed; else its jobs wait, and when the wait runs out it is dropped (lost) once', async () => {
  const h = host();
  const late = readySession(h, scriptedLink('d1', async () => ({}), Date.now() - 60_000).link, 1);
  assert.equal(late.cn.suspend(h, null, 1, 30), false, 'silent for more than 5 pulse intervals: no wait');
  assert.equal(late.cn.state, 'ready');

  const l = scriptedLink('d1', async () => ({}));
  const { cn, sent } = readySession(h, l.link, 2);
  const forgotten = new Promise<void>((resolve) => {
    h.forget = (s) => {
      h.forgotten.push(s);
      resolve();
    };
  });
  assert.equal(cn.suspend(h, new DispyError('DISPY_ERR_CONNECTION', 'reset'), undefined, 0.05), true);
  assert.equal(cn.state, 'suspended');
  assert.equal(cn.ready, false);
  assert.equal(cn.awaitedNodeId, 'd1');
  assert.equal(h.lost.length, 0, 'its jobs wait for it');
  await forgotten;
  assert.equal(cn.state, 'dropped');
  assert.equal(cn.dropReason, 'lost');
  assert.deepEqual(
    h.lost.map((x) => x.uid),
    sent,
  );
  assert.ok(h.lost.every((x) => x.lost && x.reason?.includes('did not come back in time (reset)')));
  assert.deepEqual(h.events, [NodeStatus.Closed]);
  assert.equal(l.released.length, 1);
  cn.drop(h, 'dead', null);
  assert.equal(h.lost.length, 2, 'a dropped session is dropped once');
  assert.equal(h.events.length, 1);
});

test('resume with the same daemon: running jobs go on, kept results arrive, lost ones are lost, cancels pass on', async () => {
  const h = host();
  const old = scriptedLink('d1', async () => ({}));
  const { cn, sent } = readySession(h, old.link, 3);
  const [running, cancelled, gone] = sent as [number, number, number];
  cn.allocated = true;
  assert.equal(cn.suspend(h, null, undefined, 30), true);
  h.ledger.cancelRequested(h.ledger.sent.get(cancelled)!.job);
  const fresh = scriptedLink('d1', async (msg) => {
    assert.equal(msg.t, 'resume');
    return { uids: [running, cancelled], results: ['kept'] };
  });
  await cn.resume(h, fresh.link);
  assert.equal(cn.state, 'ready');
  assert.equal(cn.ready, true, 'ready again as it was');
  assert.equal(cn.link, fresh.link);
  assert.deepEqual(fresh.adopted, sent);
  assert.deepEqual(fresh.requests, [{ t: 'resume', computeId: 'c-1', uids: sent }]);
  assert.deepEqual(fresh.delivered, ['kept']);
  assert.deepEqual(fresh.cancels, [cancelled], 'the cancel asked for while away reaches its job');
  assert.deepEqual(
    h.lost.map((x) => x.uid),
    [gone],
  );
  assert.deepEqual(fresh.forgotten, [gone]);
  assert.equal(cn.inflight, 2);
  assert.equal(h.ledger.sent.has(gone), false);
  assert.equal(h.events.length, 0, 'no Closed: the node never went');
  cn.drop(h, 'closed', null, false);
});

test('a refused resume drops the session (refused): the old link stays its link, the new one is released', async () => {
  const h = host();
  const old = scriptedLink('d1', async () => ({}));
  const { cn, sent } = readySession(h, old.link, 1);
  assert.equal(cn.suspend(h, null, undefined, 30), true);
  const fresh = scriptedLink('d1', async () => {
    throw new DispyError('DISPY_ERR_UNKNOWN_COMPUTATION', 'no such computation');
  });
  await cn.resume(h, fresh.link);
  assert.equal(cn.state, 'dropped');
  assert.equal(cn.dropReason, 'refused');
  assert.equal(cn.link, old.link);
  assert.deepEqual(fresh.forgotten, sent);
  assert.equal(fresh.released.length, 1);
  assert.equal(old.released.length, 1);
  assert.deepEqual(
    h.lost.map((x) => [x.uid, x.reason]),
    [[sent[0], 'no such computation']],
  );
  assert.deepEqual(h.events, [NodeStatus.Closed]);
});

test('drop from ready: each job lost once (closeNode: not counted as lost), Closed once, the link released', () => {
  const h = host();
  const l = scriptedLink('d1', async () => ({}));
  const { cn, sent } = readySession(h, l.link, 2);
  cn.drop(h, 'closed', null, false);
  assert.equal(cn.state, 'dropped');
  assert.deepEqual(
    h.lost.map((x) => [x.uid, x.lost]),
    sent.map((uid) => [uid, false]),
  );
  assert.equal(h.ledger.sent.size, 0);
  assert.deepEqual(h.events, [NodeStatus.Closed]);
  assert.equal(cn.node.status, NodeStatus.Closed);
  assert.deepEqual(h.forgotten, [cn]);
  assert.equal(l.released.length, 1);
});
