/**
 * One client connection to the scheduler (a SharedJobCluster): its computations, its jobs by
 * the uids it chose, and its heartbeat. Every message was validated by the channel's schema;
 * requests that cannot be honoured get an error reply (or a job-end for a job), never a
 * dropped connection, so one client's mistake costs nothing to anyone else.
 */
import { randomBytes } from 'node:crypto';
import type { Channel } from '../protocol/channel.js';
import { DispyError, asDispyError, type DispyErrorCode, Errors } from '../errors.js';
import type { FromScheduler, ToScheduler } from '../protocol/scheduler-messages.js';
import { scopeNodes } from './node-scope.js';
import type { ComputationOwner, SchedulerContext } from './scheduler-context.js';
import { jobFileName } from './computation-files.js';
import { refusedJob } from './job-ends.js';
import { SharedComputation } from './shared-computation.js';
import { jobFileAcked } from './job-file-relay.js';

/** Computations one connection may have registered at a time. */
export const MAX_COMPUTATIONS_PER_CLIENT = 1000;

type Msg<T extends ToScheduler['t']> = Extract<ToScheduler, { t: T }>;

let sessions = 0;

export class ClientSession implements ComputationOwner {
  readonly key: string;
  readonly clientIp: string;
  readonly channel: Channel<ToScheduler, FromScheduler>;
  /** This client's computations not yet closed. */
  readonly comps = new Map<string, SharedComputation>();
  /** ms since epoch of the last message from the client. */
  lastHeard = Date.now();
  /** Seconds between the client's heartbeats (0 until it says). */
  beatEvery = 0;
  readonly #ctx: SchedulerContext;
  /** The client's job uids still running here -> their computation. */
  readonly #jobs = new Map<number, SharedComputation>();

  /** Finds a computation of any connection, live or gone (to resume it). */
  readonly #find: (computeId: string) => SharedComputation | undefined;

  constructor(
    ctx: SchedulerContext,
    channel: Channel<ToScheduler, FromScheduler>,
    find: (computeId: string) => SharedComputation | undefined,
  ) {
    this.#ctx = ctx;
    this.#find = find;
    this.channel = channel;
    this.key = `client-${++sessions}-${randomBytes(4).toString('hex')}`;
    this.clientIp = (channel.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '');
  }

  get peer(): string {
    return this.channel.peer;
  }

  send(msg: FromScheduler): void {
    this.channel.send(msg);
  }

  jobGone(uid: number): void {
    this.#jobs.delete(uid);
  }

  #reply(rid: number, extra: Omit<Extract<FromScheduler, { t: 'reply' }>, 't' | 'rid' | 'ok'> = {}): void {
    this.send({ t: 'reply', rid, ok: true, ...extra });
  }

  #fail(rid: number, err: unknown): void {
    const e = asDispyError(err);
    this.send({ t: 'reply', rid, ok: false, error: { code: e.code, message: e.message.slice(0, 1024 * 1024) } });
  }

  /** The client's computation `computeId`, or an error naming it (another client's is unknown too). */
  #comp(computeId: string): SharedComputation {
    const comp = this.comps.get(computeId);
    if (!comp)
      throw new DispyError(
        'DISPY_ERR_UNKNOWN_COMPUTATION',
        `no computation ${computeId} of this client on the scheduler (compute first; closed computations are forgotten)`,
      );
    return comp;
  }

  onMessage(msg: ToScheduler): void {
    this.lastHeard = Date.now();
    try {
      this.#dispatch(msg);
    } catch (err) {
      // A request that cannot be honoured is answered; the connection stays.
      const e = asDispyError(err);
      if ('rid' in msg) this.#fail(msg.rid, e);
      else if (msg.t === 'job') this.#refuseJob(msg.uid, e.code, e.message);
      else this.#ctx.log.warn({ peer: this.peer, t: msg.t, code: e.code, reason: e.message }, 'message refused');
    }
  }

  #dispatch(msg: ToScheduler): void {
    switch (msg.t) {
      case 'beat':
        this.beatEvery = msg.every;
        return;
      case 'compute':
        this.#compute(msg);
        return;
      case 'file-begin':
      case 'file-chunk':
        this.#file(msg);
        return;
      case 'resume':
        this.#resume(msg);
        return;
      case 'schedule': {
        const comp = this.#comp(msg.computeId);
        comp.schedule().then(
          () => this.#reply(msg.rid, { computeId: comp.computeId, name: comp.name }),
          (err: unknown) => this.#fail(msg.rid, err),
        );
        return;
      }
      case 'job':
        this.#job(msg);
        return;
      case 'cancel':
        this.#jobs.get(msg.uid)?.cancel(msg.uid, msg.grace);
        return;
      case 'job-file-ack':
        jobFileAcked(this.key, msg);
        return;
      case 'close': {
        const comp = this.#comp(msg.computeId);
        comp.close(msg.terminate).then(
          () => {
            this.comps.delete(comp.computeId);
            this.#reply(msg.rid);
          },
          (err: unknown) => this.#fail(msg.rid, err),
        );
        return;
      }
      case 'node-op': {
        const comp = this.#comp(msg.computeId);
        comp.nodeOp(msg).then(
          (value) => this.#reply(msg.rid, { value }),
          (err: unknown) => this.#fail(msg.rid, err),
        );
        return;
      }
    }
  }

  #compute(msg: Msg<'compute'>): void {
    if (this.#ctx.stopping) throw Errors.schedulerShuttingDown();
    if (this.comps.size >= MAX_COMPUTATIONS_PER_CLIENT) {
      throw new DispyError(
        'DISPY_ERR_BAD_REQUEST',
        `this client has ${this.comps.size} computations open on the scheduler, the most allowed; close some first`,
      );
    }
    const nodes = scopeNodes(this.#ctx.nodes, msg.nodes);
    const computeId = `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`;
    const name = this.#ctx.names.take(msg.name || msg.computation.name || 'compute', this.clientIp);
    let dir: string;
    try {
      dir = this.#ctx.files.adopt(this.key, computeId, this.clientIp, null, true);
    } catch (err) {
      this.#ctx.names.release(name);
      throw err;
    }
    const comp = new SharedComputation({ ctx: this.#ctx, owner: this, computeId, name, msg, nodes, dir });
    this.comps.set(computeId, comp);
    this.#ctx.log.info(
      { computation: name, computeId, peer: this.peer, kind: msg.computation.kind, exclusive: msg.exclusive },
      'computation registered',
    );
    this.#reply(msg.rid, { computeId, name, resumeKey: comp.resumeKey });
  }

  /**
   * `resume`: the client lost its connection and takes its computation back on this one, if the
   * scheduler still runs it (same key). Its jobs here move along; those it listed that never
   * arrived are named in the reply; results it missed follow.
   */
  #resume(msg: Msg<'resume'>): void {
    const comp = this.#find(msg.computeId);
    if (!comp?.canResume(msg.key)) {
      throw new DispyError(
        'DISPY_ERR_UNKNOWN_COMPUTATION',
        `no computation ${msg.computeId} to resume on this scheduler (it was closed, or the scheduler restarted)`,
      );
    }
    const old = comp.owner;
    if (old !== this) {
      if (old instanceof ClientSession) {
        const uids = old.#release(comp);
        for (const uid of uids) this.#jobs.set(uid, comp);
        // The client is here now: an old connection it left open is dead.
        if (!old.channel.closed)
          old.channel.close(new DispyError('DISPY_ERR_CONNECTION', `the client resumed computation ${comp.name} on another connection`));
      }
      this.comps.set(comp.computeId, comp);
    }
    const missed = comp.adopt(this);
    const ended = new Set(missed.map((e) => e.uid));
    const unknown = msg.uids.filter((uid) => !comp.knows(uid) && !ended.has(uid));
    this.#ctx.log.info({ computation: comp.name, peer: this.peer, missed: missed.length, unknown: unknown.length }, 'computation resumed');
    this.#reply(msg.rid, { computeId: comp.computeId, name: comp.name, unknown });
    for (const end of missed) {
      this.send(end);
      this.#jobs.delete(end.uid);
    }
  }

  /** Gives up `comp` (resumed on another connection): returns the uids of its jobs here. */
  #release(comp: SharedComputation): number[] {
    this.comps.delete(comp.computeId);
    const uids: number[] = [];
    for (const [uid, c] of this.#jobs) {
      if (c !== comp) continue;
      uids.push(uid);
      this.#jobs.delete(uid);
    }
    return uids;
  }

  #file(msg: Msg<'file-begin' | 'file-chunk'>): void {
    const comp = this.#comp(msg.computeId);
    if (comp.ended) throw Errors.computationClosed(comp.name);
    const max = this.#ctx.maxFileSize;
    if (msg.t === 'file-begin' && max > 0 && msg.size > max) {
      this.#ctx.log.info({ peer: this.peer, name: msg.name, size: msg.size }, 'file transfer refused: too large');
      throw new DispyError(
        'DISPY_ERR_FILE_TOO_LARGE',
        `file \`${msg.name}\` is ${msg.size} bytes, more than the scheduler's --max-file-size of ${max} bytes`,
      );
    }
    // Files are kept per computation here; the computation's destPath applies on the nodes. A
    // per-job file is kept apart for its job (jobs may send different files of one name).
    const name = msg.job === undefined ? msg.name : jobFileName(msg.job, msg.name);
    const done =
      msg.t === 'file-begin'
        ? this.#ctx.files.begin(comp.fileKey, this.clientIp, { ...msg, name, destPath: null })
        : this.#ctx.files.chunk(comp.fileKey, { ...msg, name });
    done.then(
      (offset) => this.#reply(msg.rid, { offset }),
      (err: unknown) => {
        const e = asDispyError(err);
        this.#ctx.log.info({ peer: this.peer, name: msg.name, code: e.code, reason: e.message }, 'file transfer refused');
        this.#fail(msg.rid, e);
      },
    );
  }

  #job(msg: Msg<'job'>): void {
    if (this.#jobs.has(msg.uid)) {
      // The first job with this uid is the one the client will hear about.
      this.#ctx.log.warn({ peer: this.peer, uid: msg.uid }, 'job refused: its uid is in use by another job of this client');
      return;
    }
    const comp = this.comps.get(msg.computeId);
    if (!comp) {
      this.#refuseJob(msg.uid, 'DISPY_ERR_UNKNOWN_COMPUTATION', `no computation ${msg.computeId} of this client on the scheduler`);
      return;
    }
    this.#jobs.set(msg.uid, comp);
    comp.submit(msg);
  }

  #refuseJob(uid: number, code: DispyErrorCode, message: string): void {
    this.send(refusedJob(uid, code, message));
  }

  /** The connection is gone: its computations are kept for the zombie interval, then closed. */
  onClosed(): void {
    for (const comp of this.comps.values()) comp.orphan();
  }
}
