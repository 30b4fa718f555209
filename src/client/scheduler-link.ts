/**
 * A SharedJobCluster's connection to its `dispyts scheduler`: connecting and authenticating,
 * the scheduler's sched-info, requests and their replies, heartbeats both ways (a scheduler
 * silent for 5 of its pulse intervals is lost), and, when the connection breaks, getting back
 * and resuming the computation within the reconnect window. What the messages mean for jobs
 * and nodes is the cluster's (shared-jobs.ts); this file only keeps the line up.
 */
import type { Logger } from 'pino';
import { DispyError, Errors, asDispyError, fromWire } from '../errors.js';
import { connectChannel, type Channel } from '../protocol/channel.js';
import { DEFAULT_MAX_FRAME, SCHEDULER_PORT } from '../protocol/constants.js';
import { fromSchedulerSchema, type FromScheduler, type ToSchedulerInput } from '../protocol/scheduler-messages.js';
import { type Heard, missedBeatsMs, SilenceWatch } from '../protocol/silence-watch.js';
import { connectTls, type TlsMaterial } from '../protocol/tls.js';
import type { FileRequest } from './file-transfer.js';
import { CLIENT_ID, HEARTBEAT_MAX, REQUEST_TIMEOUT } from './node-link.js';

export type SchedReply = Extract<FromScheduler, { t: 'reply' }>;
export type SchedInfo = Extract<FromScheduler, { t: 'sched-info' }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type SchedRequest = DistributiveOmit<Extract<ToSchedulerInput, { rid: number }>, 'rid'>;
export type SchedChannel = Channel<FromScheduler, ToSchedulerInput>;

/** An error the scheduler answered with (as opposed to a lost connection or a time-out). */
export class Refused extends Error {
  readonly error: DispyError;
  constructor(error: DispyError) {
    super(error.message);
    this.error = error;
  }
}

/** What the link needs of its cluster. */
export interface SchedulerLinkUser {
  readonly name: string;
  readonly log: Logger;
  /** Closing or closed: a broken connection is not mended. */
  closing(): boolean;
  /** Admitted by the scheduler: only then is a broken connection resumed. */
  scheduled(): boolean;
  /** The computation's id on the scheduler (set once registered). */
  computeId(): string | null;
  /** Every message but sched-info and replies (job and node news). */
  onMessage(msg: FromScheduler): void;
  /** The jobs sent and not ended, for the resume request. */
  resumeUids(): number[];
  /** Resumed on `ch` (the scheduler's answer in `reply`): what was lost goes again. */
  onResumed(reply: SchedReply, ch: SchedChannel): void;
  /** The scheduler is lost for good (or refused to resume): the cluster ends everything; returns the error it keeps. */
  onLost(err: DispyError): DispyError;
}

export interface SchedulerLinkOptions {
  host: string;
  port: number;
  secret: Buffer;
  tls: TlsMaterial | null;
  /** Local address to connect from (the cluster's `host`), if given. */
  localAddress: string | undefined;
  /** Seconds to get back after a broken connection (the cluster's reconnectTimeout). */
  reconnectTimeout: number;
}

export class SchedulerLink {
  /** `host:port` of the scheduler. */
  readonly address: string;
  readonly #o: SchedulerLinkOptions;
  readonly #user: SchedulerLinkUser;
  #channel: SchedChannel | null = null;
  #info: SchedInfo | null = null;
  #infoWaiter: { resolve: (i: SchedInfo) => void; reject: (e: DispyError) => void } | null = null;
  /** The key the scheduler gave to resume the computation after a broken connection. */
  resumeKey: string | null = null;
  #reconnecting = false;
  #rid = 0;
  readonly #requests = new Map<number, { resolve: (r: SchedReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | null }>();
  /** When the scheduler was last heard. */
  readonly #scheduler: Heard = { lastHeard: Date.now() };
  #silence: SilenceWatch | null = null;
  #beatTimer: NodeJS.Timeout | null = null;
  #checkTimer: NodeJS.Timeout | null = null;
  /** Set once the scheduler is lost (or could not be used): nothing goes out any more. */
  broken: DispyError | null = null;

  constructor(address: string, o: SchedulerLinkOptions, user: SchedulerLinkUser) {
    this.address = address;
    this.#o = o;
    this.#user = user;
  }

  /** The connection now (null while there is none). */
  get channel(): SchedChannel | null {
    return this.#channel;
  }

  /** What the scheduler said of itself once connected, or null. */
  get info(): SchedInfo | null {
    return this.#info;
  }

  /** Set while getting back to the scheduler after a broken connection. */
  get reconnecting(): boolean {
    return this.#reconnecting;
  }

  /** Largest message the scheduler takes. */
  get maxMessageSize(): number {
    return this.#info?.maxMessageSize ?? DEFAULT_MAX_FRAME;
  }

  /**
   * The first connection: connects (a failure is the cluster's loss, onLost), attaches and
   * starts the heartbeats; resolves with the scheduler's sched-info.
   */
  async open(): Promise<SchedInfo> {
    let ch: SchedChannel;
    try {
      ch = await this.#connect();
    } catch (err) {
      throw this.#user.onLost(asDispyError(err, 'DISPY_ERR_CONNECTION'));
    }
    if (this.#user.closing() || this.broken) {
      ch.end();
      throw this.unusable();
    }
    this.#info = await this.#attach(ch);
    this.#startHeartbeats(this.#info.pulseInterval);
    return this.#info;
  }

  /** An authenticated connection to the scheduler (or a DispyError saying why not). */
  async #connect(): Promise<SchedChannel> {
    const { host, port, localAddress, tls } = this.#o;
    let ch: SchedChannel;
    try {
      ch = await connectChannel<FromScheduler, ToSchedulerInput>({
        host,
        port,
        secret: this.#o.secret,
        clientId: CLIENT_ID,
        schema: fromSchedulerSchema,
        ...(localAddress ? { localAddress } : {}),
        ...(tls ? { createSocket: () => connectTls(tls, host, port, localAddress), readyEvent: 'secureConnect' } : {}),
      });
    } catch (err) {
      const e = asDispyError(err, 'DISPY_ERR_CONNECTION');
      throw new DispyError(e.code, `scheduler ${this.address}: ${e.message}`, { cause: e });
    }
    if (ch.peerHello?.role !== 'scheduler') {
      const e = new DispyError(
        'DISPY_ERR_CONNECTION',
        `${this.address} is a dispyts ${ch.peerHello?.role ?? 'peer'}, not a scheduler (schedulerPort is the scheduler's port for clients, ${SCHEDULER_PORT} by default)`,
      );
      ch.close(e);
      throw e;
    }
    return ch;
  }

  /** Makes `ch` the connection; resolves with the scheduler's sched-info. */
  async #attach(ch: SchedChannel): Promise<SchedInfo> {
    this.#channel = ch;
    this.#scheduler.lastHeard = Date.now();
    const info = new Promise<SchedInfo>((resolve, reject) => {
      this.#infoWaiter = {
        resolve: (i) => {
          // Nothing larger than the scheduler takes is sent; what it may send is accepted.
          const max = i.maxMessageSize ?? DEFAULT_MAX_FRAME;
          ch.maxSend = max;
          ch.maxFrame = Math.max(DEFAULT_MAX_FRAME, max);
          resolve(i);
        },
        reject,
      };
    });
    ch.on('message', (msg) => {
      if (ch === this.#channel) this.#onMessage(msg);
    });
    ch.on('close', (reason) => this.#onClose(ch, reason));
    const timer = setTimeout(
      () => ch.close(new DispyError('DISPY_ERR_TIMEOUT', `scheduler ${this.address} sent no sched-info in ${REQUEST_TIMEOUT} s`)),
      REQUEST_TIMEOUT * 1000,
    );
    try {
      return await info;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends a message that needs no reply; false if there is no connection. */
  send(msg: ToSchedulerInput): boolean {
    const ch = this.#channel;
    if (!ch || ch.closed) return false;
    ch.send(msg);
    return true;
  }

  /** Sends a request and resolves with its reply; an error reply rejects with Refused. */
  request(msg: SchedRequest, timeoutSec = REQUEST_TIMEOUT): Promise<SchedReply> {
    if (this.broken) return Promise.reject(this.unusable());
    const ch = this.#channel;
    if (!ch || ch.closed) return Promise.reject(new DispyError('DISPY_ERR_CONNECTION', `no connection to scheduler ${this.address}`));
    const rid = ++this.#rid;
    return new Promise<SchedReply>((resolve, reject) => {
      const timer = Number.isFinite(timeoutSec)
        ? setTimeout(() => {
            this.#requests.delete(rid);
            reject(new DispyError('DISPY_ERR_TIMEOUT', `scheduler ${this.address} did not answer ${msg.t} in ${timeoutSec} s`));
          }, timeoutSec * 1000)
        : null;
      this.#requests.set(rid, { resolve, reject, timer });
      try {
        ch.send({ ...msg, rid } as ToSchedulerInput);
      } catch (err) {
        // Too large for the scheduler (DISPY_ERR_MESSAGE_TOO_LARGE): nothing was sent.
        if (timer) clearTimeout(timer);
        this.#requests.delete(rid);
        reject(new Refused(asDispyError(err)));
      }
    });
  }

  /** What file-transfer.ts sends files through: requests on this link. */
  fileRequester(): { request(msg: FileRequest, timeoutSec?: number): Promise<SchedReply>; maxMessageSize: number } {
    return { request: (msg, timeoutSec) => this.request(msg, timeoutSec), maxMessageSize: this.maxMessageSize };
  }

  #startHeartbeats(pulseInterval: number): void {
    const every = Math.min(pulseInterval, HEARTBEAT_MAX);
    const beat = (): void => {
      const ch = this.#channel;
      if (ch && !ch.closed) ch.send({ t: 'beat', every });
    };
    beat();
    this.#beatTimer = setInterval(beat, every * 1000);
    this.#beatTimer.unref();
    this.#silence = new SilenceWatch({ roundMs: pulseInterval * 1000 });
    this.#checkTimer = setInterval(() => this.#checkScheduler(pulseInterval), pulseInterval * 1000);
    this.#checkTimer.unref();
  }

  /** A scheduler silent for 5 of its pulse intervals is declared lost. */
  #checkScheduler(pulseInterval: number): void {
    this.#silence?.round([this.#scheduler], {
      heard: (h) => h,
      limitMs: () => missedBeatsMs(pulseInterval),
      gone: (_, silent) =>
        this.#channel?.close(
          new DispyError(
            'DISPY_ERR_CONNECTION',
            `the scheduler sent nothing for ${(silent / 1000).toFixed(1)} s (5 × its pulse interval of ${pulseInterval} s)`,
          ),
        ),
    });
  }

  #stopTimers(): void {
    if (this.#beatTimer) clearInterval(this.#beatTimer);
    if (this.#checkTimer) clearInterval(this.#checkTimer);
    this.#beatTimer = this.#checkTimer = null;
  }

  #onClose(ch: SchedChannel, reason: DispyError | null): void {
    if (ch !== this.#channel) return;
    this.#stopTimers();
    if (this.#user.closing()) {
      this.rejectRequests(Errors.clusterClosed(this.#user.name));
      return;
    }
    if (this.broken) return;
    const why = reason ? reason.message : 'the scheduler closed the connection';
    const lost = new DispyError(
      'DISPY_ERR_CONNECTION',
      `connection to scheduler ${this.address} lost: ${why}`,
      reason ? { cause: reason } : undefined,
    );
    if (this.#reconnecting) {
      // A new connection broke while resuming: the reconnection loop tries again.
      this.#channel = null;
      this.rejectRequests(lost);
      return;
    }
    const window = this.#reconnectWindow();
    if (window > 0 && this.resumeKey && this.#user.scheduled()) {
      this.#channel = null;
      this.#reconnecting = true;
      this.rejectRequests(new DispyError('DISPY_ERR_CONNECTION', `${lost.message}; reconnecting`, { cause: lost }));
      this.#user.log.warn({ reconnectTimeout: window }, `${lost.message}; reconnecting to resume the computation`);
      void this.#reconnect(lost, window);
      return;
    }
    this.#user.onLost(lost);
  }

  /** Seconds to try to get back: the option, at most the scheduler's zombie interval. */
  #reconnectWindow(): number {
    const want = this.#o.reconnectTimeout;
    const zombie = this.#info?.zombieInterval;
    return zombie === undefined ? want : Math.min(want, zombie);
  }

  /**
   * Gets back to the scheduler after `lost` and resumes the computation there, retrying (with
   * back-off) for `windowSec` while connections fail for want of a route; a refused connection,
   * a restarted scheduler or a refused resume end every pending job at once (onLost).
   */
  async #reconnect(lost: DispyError, windowSec: number): Promise<void> {
    const deadline = Date.now() + windowSec * 1000;
    let delay = 100;
    for (;;) {
      if (this.#user.closing() || this.broken) {
        this.#reconnecting = false;
        return;
      }
      const attempt: Attempt = { permanent: false, channel: null };
      try {
        // False: the cluster closed meanwhile, and the loop stops at its top.
        if (await this.#reconnectOnce(attempt)) return;
      } catch (err) {
        const e = err instanceof Refused ? err.error : asDispyError(err, 'DISPY_ERR_CONNECTION');
        const ch = attempt.channel;
        if (ch && this.#channel === ch) {
          this.#channel = null;
          ch.close(e);
        }
        if (this.#user.closing() || this.broken) {
          this.#reconnecting = false;
          return;
        }
        if (attempt.permanent || Date.now() + delay >= deadline) {
          this.#reconnecting = false;
          const why = attempt.permanent ? `resuming failed: ${e.message}` : `not back within ${windowSec} s (last: ${e.message})`;
          this.#user.onLost(new DispyError('DISPY_ERR_CONNECTION', `${lost.message}; ${why}`, { cause: e }));
          return;
        }
        this.#user.log.debug({ err: e.message, retryInMs: delay }, 'reconnecting to the scheduler');
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /**
   * One attempt: connect, check that the same scheduler answers, resume the computation. True
   * once resumed; false when the cluster closed meanwhile (the loop then stops). Throws, with
   * `attempt.permanent` set when trying again cannot help.
   */
  async #reconnectOnce(attempt: Attempt): Promise<boolean> {
    let ch: SchedChannel;
    try {
      ch = await this.#connect();
    } catch (err) {
      const e = asDispyError(err, 'DISPY_ERR_CONNECTION');
      // Nothing listens: the scheduler is gone, and its computations with it.
      attempt.permanent = e.code !== 'DISPY_ERR_CONNECTION' && e.code !== 'DISPY_ERR_TIMEOUT' ? true : /ECONNREFUSED/.test(e.message);
      throw e;
    }
    attempt.channel = ch;
    if (this.#user.closing() || this.broken) {
      ch.end();
      return false;
    }
    const info = await this.#attach(ch);
    if (info.schedulerId !== this.#info?.schedulerId) {
      attempt.permanent = true;
      throw new DispyError('DISPY_ERR_CONNECTION', 'the scheduler restarted, and its computations with it');
    }
    const uids = this.#user.resumeUids();
    let reply: SchedReply;
    try {
      reply = await this.request({ t: 'resume', computeId: this.#user.computeId()!, key: this.resumeKey!, uids });
    } catch (err) {
      if (err instanceof Refused) {
        attempt.permanent = true;
        throw err.error;
      }
      throw err;
    }
    this.#reconnecting = false;
    this.#info = info;
    this.#startHeartbeats(info.pulseInterval);
    this.#user.onResumed(reply, ch);
    return true;
  }

  rejectRequests(err: Error): void {
    for (const r of this.#requests.values()) {
      if (r.timer) clearTimeout(r.timer);
      r.reject(err);
    }
    this.#requests.clear();
    const w = this.#infoWaiter;
    this.#infoWaiter = null;
    w?.reject(err instanceof DispyError ? err : asDispyError(err));
  }

  /** The scheduler is lost or unusable: requests end with `err`, the connection closes; later calls fail at once. */
  fail(err: DispyError): void {
    this.broken = err;
    this.#stopTimers();
    this.rejectRequests(err);
    if (this.#channel && !this.#channel.closed) this.#channel.close(err);
  }

  /** The cluster closed: requests end, the connection is ended. */
  close(): void {
    const ch = this.#channel;
    this.#stopTimers();
    this.rejectRequests(Errors.clusterClosed(this.#user.name));
    if (ch && !ch.closed) ch.end();
  }

  /** The error later calls fail with once the cluster cannot be used. */
  unusable(): DispyError {
    if (this.broken)
      return new DispyError(this.broken.code, `cluster ${this.#user.name} cannot be used: ${this.broken.message}`, { cause: this.broken });
    return Errors.clusterClosed(this.#user.name);
  }

  #onMessage(msg: FromScheduler): void {
    this.#scheduler.lastHeard = Date.now();
    if (msg.t === 'sched-info') {
      const w = this.#infoWaiter;
      this.#infoWaiter = null;
      w?.resolve(msg);
      return;
    }
    if (msg.t === 'reply') {
      const r = this.#requests.get(msg.rid);
      if (!r) return;
      this.#requests.delete(msg.rid);
      if (r.timer) clearTimeout(r.timer);
      if (msg.ok) r.resolve(msg);
      else r.reject(new Refused(fromWire(msg.error ?? { code: 'DISPY_ERR_INTERNAL', message: 'request failed' })));
      return;
    }
    this.#user.onMessage(msg);
  }
}

/** One reconnection attempt: its channel once connected, and whether its failure is final. */
interface Attempt {
  permanent: boolean;
  channel: SchedChannel | null;
}
