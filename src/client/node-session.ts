/**
 * One node as one JobCluster uses it, as an explicit state machine:
 *
 *   connecting → setting up → ready ⇄ suspended → dropped
 *
 * `connecting`: the link is being opened and NodeAllocate asked for CPUs; `setting up`: files
 * and setup sent; `ready`: jobs may go there (unless deallocated, draining or being closed);
 * `suspended`: the connection broke and the node was not declared dead, so its jobs stay with it
 * while the cluster reconnects (the same daemon resumes them, see `resume`); `dropped`: for
 * good, with a typed reason, its jobs re-run elsewhere or end. A dropped address is tried
 * again with back-off by a new session (node-sessions.ts). The pure rules (the transition
 * table, retry delays, the reconnect deadline, which failures are final) are exported for
 * test/node-session.test.ts; the steps here act on one session, each short.
 */
import type { Logger } from 'pino';
import { DispyError } from '../errors.js';
import type { Reply } from '../protocol/messages.js';
import { missedBeatsMs } from '../protocol/silence-watch.js';
import type { DispyNode } from './dispy-node.js';
import type { JobLedger, Sent } from './job-ledger.js';
import type { NodeAllocate } from './node-allocate.js';
import type { LinkUser, NodeLink } from './node-link.js';
import { graceOf } from './per-node-options.js';
import { NodeStatus, type DispyStatus } from './status.js';

export type SessionState = 'connecting' | 'setting-up' | 'ready' | 'suspended' | 'dropped';

/** What happens to a session: the link opened, setup ran, the connection broke, the same daemon came back, or the end. */
export type SessionEvent = 'linked' | 'set-up' | 'broken' | 'resumed' | 'drop';

/**
 * Why a session ended: `dead` silent for 5 heartbeats; `refused` the address refused the
 * reconnection (or the resume, or setup); `restarted` another daemon answers there; `closed`
 * closed on purpose (closeNode, the node closed the computation or is shutting down, the
 * cluster closes, a followed name no longer lists it); `lost` the connection broke and did not
 * come back within the reconnect window.
 */
export type DropReason = 'dead' | 'refused' | 'restarted' | 'closed' | 'lost';

const NEXT: Readonly<Record<SessionState, Partial<Record<SessionEvent, SessionState>>>> = {
  connecting: { linked: 'setting-up', drop: 'dropped' },
  'setting-up': { 'set-up': 'ready', drop: 'dropped' },
  ready: { broken: 'suspended', drop: 'dropped' },
  suspended: { resumed: 'ready', drop: 'dropped' },
  dropped: {},
};

/** The state after `event` in `state`; throws for a transition the machine does not have. */
export function nextState(state: SessionState, event: SessionEvent): SessionState {
  const next = NEXT[state][event];
  if (next === undefined) throw new DispyError('DISPY_ERR_INTERNAL', `node session: no transition on ${event} from ${state}`);
  return next;
}

/**
 * Seconds before trying an address again after `failures` failed attempts: a suspended node
 * quickly (its jobs are waiting; at most 1 s), a busy one every 2 s at most, others up to 30 s.
 */
export function retryDelay(failures: number, suspended: boolean, busy: boolean): number {
  const n = Math.min(failures, 6);
  return suspended ? Math.min(1, 0.1 * 2 ** n) : Math.min(busy ? 2 : 30, 0.5 * 2 ** n);
}

/**
 * Until when (ms since epoch) a broken connection's jobs wait for their node: 5 pulse
 * intervals after it was last heard, or `windowSec` from now without pulseInterval.
 */
export function suspendDeadline(lastHeard: number, pulseInterval: number | undefined, windowSec: number, now: number): number {
  return pulseInterval ? lastHeard + missedBeatsMs(pulseInterval) : now + windowSec * 1000;
}

/** Whether a failed reconnection to a suspended node ends it: nothing listens there any more, or someone else owns it. */
export function reconnectRefused(e: DispyError): boolean {
  return e.code !== 'DISPY_ERR_CONNECTION' || /ECONNREFUSED/.test(e.message);
}

/**
 * Whether a node whose connection or setup failed is tried again later: what is wrong with the
 * program itself does not fix itself; the rest (a node's secret, TLS or version fixed by its
 * admin included) may. (Not `isRetriable` of errors.ts, which is about trying a send again at once.)
 */
export function setupRetried(code: string): boolean {
  return ![
    'DISPY_ERR_COMPUTATION',
    'DISPY_ERR_FREE_VARIABLE',
    'DISPY_ERR_FILE_TOO_LARGE',
    'DISPY_ERR_FORBIDDEN',
    'DISPY_ERR_MESSAGE_TOO_LARGE',
  ].includes(code);
}

/** What a session needs of its cluster. */
export interface SessionHost {
  readonly user: LinkUser;
  readonly computeId: string;
  readonly log: Logger;
  readonly ledger: JobLedger<NodeSession>;
  /** Jobs pending in the cluster (timers keep the program alive only then). */
  readonly pending: number;
  /** The cluster is closing: its jobs are not re-run. */
  readonly closing: boolean;
  /** A job its node lost: re-run, or ended (`lost`: with a broken connection). */
  loseJob(s: Sent<NodeSession>, reason: DispyError | null, lost: boolean): void;
  /** The session's address is no longer the cluster's (dropped): it forgets it, saying why. */
  forget(session: NodeSession, reason: DispyError | null): void;
  emit(status: DispyStatus, node: DispyNode, job: null): void;
  /** Something changed that may let jobs go out. */
  pump(): void;
}

/** A suspended session's wait for its node. */
interface Suspension {
  nodeId: string;
  deadline: number;
  timer: NodeJS.Timeout;
}

export class NodeSession {
  #state: SessionState = 'connecting';
  readonly spec: NodeAllocate;
  /** The node's connection (set once linked; another one after a resume). */
  link!: NodeLink;
  /** The node as this cluster shows it (set once linked). */
  node!: DispyNode;
  /** CPUs this cluster may use there (its allocation or setNodeCpus). */
  cap = 0;
  /** Jobs sent there and not ended. */
  inflight = 0;
  /** Running average of this cluster's job wall time on the node (ms). */
  avgMs = Number.POSITIVE_INFINITY;
  /** False once deallocated (or the node refused a job): no job goes there until allocateNode. */
  allocated = true;
  /** Drained from its page (as last heard): no job is sent to it. */
  draining = false;
  /** Declared dead (silent for 5 × pulseInterval): when its link closes it is dropped, never suspended. */
  dead = false;
  /**
   * closeNode / resetupNode without terminatePending: no job goes there while its running jobs
   * finish (their results count); `closed` resolves once the node closed the computation.
   */
  closingNode: { kind: 'close' | 'resetup'; closed: Promise<void> } | null = null;
  #suspension: Suspension | null = null;
  /** Why it was dropped, once it was. */
  dropReason: DropReason | null = null;

  constructor(spec: NodeAllocate) {
    this.spec = spec;
  }

  get state(): SessionState {
    return this.#state;
  }

  #to(event: SessionEvent): void {
    this.#state = nextState(this.#state, event);
  }

  /** Jobs may go there (once it has room). */
  get ready(): boolean {
    return this.#state === 'ready' && this.allocated;
  }

  /** Set while the connection is lost and the node not (yet) given up. */
  get suspended(): boolean {
    return this.#state === 'suspended';
  }

  /** The daemon identity the suspended session waits for (null unless suspended). */
  get awaitedNodeId(): string | null {
    return this.#suspension?.nodeId ?? null;
  }

  /** The link is open and NodeAllocate gave it `cpus`: setup goes next. */
  linked(link: NodeLink, node: DispyNode, cpus: number): void {
    this.#to('linked');
    this.link = link;
    this.node = node;
    this.cap = cpus;
  }

  /** Setup ran there: jobs may go. */
  setUp(): void {
    this.#to('set-up');
    this.draining = this.link.draining;
  }

  /** An attempt that never became ready (its link, if any, released by the caller). */
  failed(why: DropReason): void {
    this.#to('drop');
    this.dropReason = why;
  }

  /** The cluster closes: a suspended session waits no longer (its jobs end with the cluster). */
  stopWaiting(): void {
    if (this.#suspension) clearTimeout(this.#suspension.timer);
  }

  /** Refs or unrefs the reconnect timer: only pending jobs keep the program alive. */
  setRef(on: boolean): void {
    const t = this.#suspension?.timer;
    if (t) on ? t.ref() : t.unref();
  }

  /**
   * The connection broke but the node was not declared dead: its jobs stay with it until the
   * deadline (suspendDeadline); the same daemon answering resumes them, a refused connection or
   * a new daemon there drops it at once. False (nothing changed) if the deadline has passed.
   */
  suspend(host: SessionHost, reason: DispyError | null, pulseInterval: number | undefined, windowSec: number): boolean {
    const deadline = suspendDeadline(this.link.lastHeard, pulseInterval, windowSec, Date.now());
    const left = deadline - Date.now();
    if (left <= 0) return false;
    const ip = this.node.ipAddr;
    const timer = setTimeout(() => {
      if (!this.suspended) return;
      const why = `node ${ip} did not come back in time${reason ? ` (${reason.message})` : ''}`;
      this.drop(host, 'lost', new DispyError('DISPY_ERR_CONNECTION', why));
    }, left);
    if (host.pending === 0) timer.unref();
    this.#suspension = { nodeId: this.link.info.nodeId, deadline, timer };
    this.#to('broken');
    host.log.warn({ node: ip, reason: reason?.message, waitMs: left }, 'connection to node lost: reconnecting; its jobs wait for it');
    return true;
  }

  /**
   * Reconnected to the same daemon on `link`: its jobs go on (those it no longer has are lost),
   * results it kept arrive, and cancels asked for meanwhile reach their jobs. A failed resume
   * request drops the session (refused).
   */
  async resume(host: SessionHost, link: NodeLink): Promise<void> {
    const mine = host.ledger.attemptsOn(this).map(([uid]) => uid);
    for (const uid of mine) link.adopt(host.user, uid);
    const old = this.link;
    this.link = link;
    let reply: Reply;
    try {
      reply = await link.request({ t: 'resume', computeId: host.computeId, uids: mine });
    } catch (err) {
      for (const uid of mine) link.forget(uid);
      this.link = old;
      if (this.suspended) this.drop(host, 'refused', err instanceof DispyError ? err : new DispyError('DISPY_ERR_CONNECTION', String(err)));
      link.release(host.user);
      return;
    }
    this.#endSuspension();
    this.#to('resumed');
    this.#takeBack(host, mine, reply);
  }

  /** After a resume: results delivered, cancels passed on, jobs the node no longer has lost. */
  #takeBack(host: SessionHost, mine: number[], reply: Reply): void {
    const link = this.link;
    const ip = this.node.ipAddr;
    const running = new Set(reply.uids ?? []);
    const results = reply.results ?? [];
    link.updateRef();
    for (const r of results) link.deliver(r);
    // Cancels asked for while the connection was down reach their jobs now.
    for (const uid of running) {
      const s = host.ledger.sent.get(uid);
      if (s && s.cn === this && host.ledger.isCancelRequested(s.job)) link.cancel(uid, graceOf(s.job));
    }
    let lost = 0;
    for (const uid of mine) {
      const s = host.ledger.sent.get(uid);
      if (!s || s.cn !== this || running.has(uid)) continue;
      // Neither running there nor kept: it was lost with the connection.
      link.forget(uid);
      host.ledger.sent.delete(uid);
      this.inflight--;
      if (s.started) this.node.busy--;
      host.loseJob(s, new DispyError('DISPY_ERR_CONNECTION', `node ${ip} no longer had the job after a reconnection`), true);
      lost++;
    }
    this.node.updateTime = Date.now();
    host.log.info({ node: ip, running: running.size, delivered: results.length, lost }, 'node reconnected: jobs resumed');
    host.pump();
  }

  #endSuspension(): void {
    if (this.#suspension) clearTimeout(this.#suspension.timer);
    this.#suspension = null;
  }

  /**
   * The node is gone (`why`): its jobs re-run elsewhere (reentrant, or never started) or are
   * Abandoned; Closed is emitted (unless closeNode said it already). `lost`: its jobs were lost
   * with it (counted, and logged), not taken back by closeNode.
   */
  drop(host: SessionHost, why: DropReason, reason: DispyError | null, lost = true): void {
    if (this.#state === 'dropped') return;
    const ip = this.node.ipAddr;
    this.#to('drop');
    this.dropReason = why;
    this.#endSuspension();
    host.forget(this, reason);
    if (lost) host.log.warn({ node: ip, reason: reason?.message, why }, 'node lost');
    for (const [uid, s] of host.ledger.attemptsOn(this)) {
      host.ledger.sent.delete(uid);
      host.loseJob(s, reason, lost);
    }
    this.node.busy = 0;
    // closeNode said Closed already.
    const said = this.closingNode !== null && this.node.status === NodeStatus.Closed;
    this.node.status = NodeStatus.Closed;
    this.node.updateTime = Date.now();
    if (!said) host.emit(NodeStatus.Closed, this.node, null);
    this.link.release(host.user);
    host.pump();
  }
}
