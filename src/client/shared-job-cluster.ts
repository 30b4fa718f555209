/**
 * SharedJobCluster: a JobCluster whose nodes belong to a `dispyts scheduler`, shared with other
 * programs. The computation is built here exactly as JobCluster builds it, registered with the
 * scheduler (which sets it up on the nodes), and jobs go to the scheduler, which relays their
 * statuses, results and the nodes' events back. Losing the scheduler ends every pending job and
 * call with a DISPY_ERR_* error; nothing waits silently.
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import pino, { type Logger } from 'pino';
import { DispyError, asDispyError, fromWire, invalidOption, Errors, jobException } from '../errors.js';
import { connectChannel, type Channel } from '../protocol/channel.js';
import { DEFAULT_MAX_FRAME, NODE_PORT, SCHEDULER_PORT } from '../protocol/constants.js';
import type { Computation, Depend } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import { fromSchedulerSchema, type FromScheduler, type ToSchedulerInput } from '../protocol/scheduler-messages.js';
import { resolveSecret } from '../protocol/secret.js';
import { type Heard, missedBeatsMs, SilenceWatch } from '../protocol/silence-watch.js';
import { connectTls, loadTls, type TlsMaterial } from '../protocol/tls.js';
import { buildComputation, hookSources, type ModuleComputation } from './computation.js';
import type { ProgramComputation } from './interpreter.js';
import { computationKind } from './job-scope.js';
import { Deque } from './deque.js';
import type { SharedJobClusterOptions } from './cluster-options.js';
import { checkSharedClusterOptions, checkSubmitOptions, wireTag } from './option-rules.js';
import type { AnyFn, ClusterStatus, DispyCluster, SubmitOptions } from './dispy-cluster.js';
import { DispyJob } from './dispy-job.js';
import { DispyNode } from './dispy-node.js';
import { dependFiles, localFile, normalizeDestPath, transferFile, type FileRequest, type LocalFile } from './file-transfer.js';
import { ClusterCore } from './cluster-core.js';
import type { ClusterStatusEvent } from './job-cluster.js';
import { MAX_SEND_ATTEMPTS } from './job-ledger.js';
import { parseNodeSpecs, type NodeAllocate, type NodeSpec, type NodeSpecObject } from './node-allocate.js';
import { CLIENT_ID, HEARTBEAT_MAX, REQUEST_TIMEOUT } from './node-link.js';
import { cancelGrace, cancelMessage, graceOf, nodeSetupSource, type CancelOptions } from './per-node-options.js';
import { JobStatus, NodeStatus, isFinal, type DispyStatus, type FinalJobStatus } from './status.js';
import { ResultFiles } from './result-files.js';

export type { SharedJobClusterOptions } from './cluster-options.js';

type SharedClusterEvents = {
  status: [ClusterStatusEvent<SharedJobCluster>];
  error: [DispyError];
};

/** A job not yet ended: queued here, or sent to the scheduler. */
interface Pending {
  job: DispyJob;
  args: Uint8Array;
  /** Pinned to this node (address or name). */
  node?: string;
  maxRuntime?: number;
  /** Per-job files (submitWith `depends`): sent to the scheduler right before the job. */
  files?: LocalFile[];
  /** The job's own functions and classes (submitWith `depends`, job-scope.ts). */
  depends?: Depend[];
  sent: boolean;
  /** The node it runs on (counted in that node's busy), while it runs. */
  running: DispyNode | null;
}

type Reply = Extract<FromScheduler, { t: 'reply' }>;
type SchedInfo = Extract<FromScheduler, { t: 'sched-info' }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type SchedRequest = DistributiveOmit<Extract<ToSchedulerInput, { rid: number }>, 'rid'>;
type NodeOp = Extract<ToSchedulerInput, { t: 'node-op' }>['op'];

/** An error the scheduler answered with (as opposed to a lost connection or a time-out). */
class Refused extends Error {
  readonly error: DispyError;
  constructor(error: DispyError) {
    super(error.message);
    this.error = error;
  }
}

export class SharedJobCluster<F extends AnyFn = AnyFn> extends EventEmitter<SharedClusterEvents> implements DispyCluster<F> {
  readonly name: string;
  readonly log: Logger;
  /** Marks a shared cluster (the HTTP server ignores CPUs when adding nodes to it). */
  readonly shared = true as const;
  /** Whether this cluster runs alone on the scheduler. */
  readonly exclusive: boolean;
  /** `host:port` of the scheduler. */
  readonly scheduler: string;
  readonly #opts: SharedJobClusterOptions;
  readonly #codec: PayloadCodec;
  readonly #computation: Promise<Computation>;
  readonly #files: LocalFile[];
  readonly #destPath: string | null;
  readonly #hooks: { setup: string | null; cleanup: string | null };
  readonly #setupArgs: unknown[];
  /** The kind of computation, for what a job's depends may hold (job-scope.ts). */
  readonly #kind: Computation['kind'] | null;
  /** Files jobs send home (result-files.ts). */
  readonly #resultFiles: ResultFiles;
  readonly #nodeSpecs: (string | NodeSpecObject)[];
  readonly #secret: Buffer;
  readonly #tls: TlsMaterial | null;
  /** Ids, pending count, events, settling, waiters (cluster-core.ts). */
  readonly #core: ClusterCore<SharedJobCluster>;
  #channel: Channel<FromScheduler, ToSchedulerInput> | null = null;
  #info: SchedInfo | null = null;
  #infoWaiter: { resolve: (i: SchedInfo) => void; reject: (e: DispyError) => void } | null = null;
  #computeId: string | null = null;
  #schedulerName: string | null = null;
  /** Resolves with the computeId once the scheduler registered the computation. */
  readonly #registered: Promise<string>;
  #scheduled = false;
  /** The key the scheduler gave to resume the computation after a broken connection. */
  #resumeKey: string | null = null;
  /** Set while getting back to the scheduler after a broken connection. */
  #reconnecting = false;
  /** Cancels asked for while reconnecting: sent once resumed. */
  readonly #cancels = new Set<number>();
  readonly #schedHost: string;
  readonly #schedPort: number;
  #rid = 0;
  readonly #requests = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | null }>();
  /** Every job not yet ended, by uid. */
  readonly #jobs = new Map<number, Pending>();
  /** Per job: sends the scheduler never got (lost with a broken connection) so far. */
  readonly #lostSends = new WeakMap<Pending, number>();
  /** Jobs not yet sent (before the scheduler admitted the cluster, or until the next flush). */
  readonly #unsent = new Deque<Pending>();
  #flushQueued = false;
  /** Nodes in use (Initialized), and every node this cluster saw, by address. */
  readonly #nodes = new Map<string, DispyNode>();
  /** When the scheduler was last heard. */
  readonly #scheduler: Heard = { lastHeard: Date.now() };
  #silence: SilenceWatch | null = null;
  #beatTimer: NodeJS.Timeout | null = null;
  #checkTimer: NodeJS.Timeout | null = null;
  /** Set once the scheduler is lost (or could not be used): the cluster is unusable. */
  #broken: DispyError | null = null;
  #closing = false;
  #closed = false;

  /**
   * @param computation as for JobCluster: a function (shipped as source with `depends`), a
   *   program path, or `{ module, export }`.
   */
  constructor(computation: F | string | string[] | ProgramComputation | ModuleComputation, options: SharedJobClusterOptions = {}) {
    super();
    checkSharedClusterOptions(options);
    this.#opts = options;
    const built = buildComputation(computation, options);
    this.name = options.name ?? built.name;
    this.exclusive = options.exclusive ?? false;
    const host = options.schedulerHost ?? '127.0.0.1';
    const port = options.schedulerPort ?? SCHEDULER_PORT;
    this.scheduler = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
    this.#schedHost = host;
    this.#schedPort = port;
    this.log = options.logger ?? pino({ level: options.logLevel ?? 'warn', base: { cluster: this.name } }, pino.destination(2));
    this.#computation = built.wire;
    this.#computation.catch(() => undefined);
    this.#destPath = normalizeDestPath(options.destPath, this.log);
    this.#hooks = hookSources(options);
    const max = options.maxFileSize ?? 0;
    const specs = options.nodes === undefined ? [] : parseNodeSpecs(options.nodes);
    const files = built.files.map((p) => localFile(p, 'depends', max));
    for (const s of specs) files.push(...dependFiles(s.depends, 'NodeAllocate.depends', max, files));
    this.#files = files;
    this.#kind = computationKind(computation);
    this.#resultFiles = new ResultFiles({ dir: options.resultsDir ?? process.cwd(), maxFileSize: options.maxFileSize ?? 0, log: this.log });
    this.#setupArgs = specs.find((s) => s.setupArgs.length > 0)?.setupArgs ?? [];
    this.#nodeSpecs = specs.map(specToWire);
    this.#codec = new PayloadCodec(built.classes);
    this.#core = new ClusterCore<SharedJobCluster>(this as SharedJobCluster, { callbacks: options, log: this.log, codec: this.#codec });
    // Unreadable secret or TLS files fail here, not at the first connection.
    this.#secret = resolveSecret(options.secret);
    this.#tls = loadTls(options, 'client');
    this.#registered = this.#start();
    // Failures reach every job and call (and an error event); nothing is left unhandled.
    this.#registered.catch(() => undefined);
  }

  /** The computation's id on the scheduler (null until it registered it). */
  get computeId(): string | null {
    return this.#computeId;
  }

  /** The name the scheduler shows this cluster under (unique there), once registered. */
  get schedulerName(): string | null {
    return this.#schedulerName;
  }

  /** What the scheduler said of itself once connected (name, policy, cooperative, pulse interval), or null. */
  get schedulerInfo(): { name: string; policy: 'fsfs' | 'fair' | 'early'; cooperative: boolean; pulseInterval: number } | null {
    const i = this.#info;
    return i ? { name: i.name, policy: i.policy, cooperative: i.cooperative, pulseInterval: i.pulseInterval } : null;
  }

  /** Whether the scheduler admitted the cluster (jobs go out from then on). */
  get scheduled(): boolean {
    return this.#scheduled;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- connection ----

  /** An authenticated connection to the scheduler (or a DispyError saying why not). */
  async #connect(): Promise<Channel<FromScheduler, ToSchedulerInput>> {
    const host = this.#schedHost;
    const port = this.#schedPort;
    let ch: Channel<FromScheduler, ToSchedulerInput>;
    try {
      ch = await connectChannel<FromScheduler, ToSchedulerInput>({
        host,
        port,
        secret: this.#secret,
        clientId: CLIENT_ID,
        schema: fromSchedulerSchema,
        ...(this.#opts.host ? { localAddress: this.#opts.host } : {}),
        ...(this.#tls ? { createSocket: () => connectTls(this.#tls!, host, port, this.#opts.host), readyEvent: 'secureConnect' } : {}),
      });
    } catch (err) {
      const e = asDispyError(err, 'DISPY_ERR_CONNECTION');
      throw new DispyError(e.code, `scheduler ${this.scheduler}: ${e.message}`, { cause: e });
    }
    if (ch.peerHello?.role !== 'scheduler') {
      const e = new DispyError(
        'DISPY_ERR_CONNECTION',
        `${this.scheduler} is a dispyts ${ch.peerHello?.role ?? 'peer'}, not a scheduler (schedulerPort is the scheduler's port for clients, ${SCHEDULER_PORT} by default)`,
      );
      ch.close(e);
      throw e;
    }
    return ch;
  }

  /** Makes `ch` the cluster's connection; resolves with the scheduler's sched-info. */
  async #attach(ch: Channel<FromScheduler, ToSchedulerInput>): Promise<SchedInfo> {
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
      () => ch.close(new DispyError('DISPY_ERR_TIMEOUT', `scheduler ${this.scheduler} sent no sched-info in ${REQUEST_TIMEOUT} s`)),
      REQUEST_TIMEOUT * 1000,
    );
    try {
      return await info;
    } finally {
      clearTimeout(timer);
    }
  }

  async #start(): Promise<string> {
    let ch: Channel<FromScheduler, ToSchedulerInput>;
    try {
      ch = await this.#connect();
    } catch (err) {
      throw this.#fail(asDispyError(err, 'DISPY_ERR_CONNECTION'));
    }
    if (this.#closing || this.#broken) {
      ch.end();
      throw this.#unusable();
    }
    this.#info = await this.#attach(ch);
    this.#startHeartbeats(this.#info.pulseInterval);
    let computation: Computation;
    try {
      computation = await this.#computation;
    } catch (err) {
      throw this.#fail(asDispyError(err, 'DISPY_ERR_COMPUTATION'));
    }
    const o = this.#opts;
    const registered = await this.#guard(
      this.#request({
        t: 'compute',
        name: this.name,
        computation,
        setup: this.#hooks.setup,
        // cleanup gets setup's arguments too, and nodeSetup gets them.
        setupArgs: o.setup || o.nodeSetup || typeof o.cleanup === 'function' ? this.#codec.encode(this.#setupArgs, 'setupArgs') : null,
        cleanup: this.#hooks.cleanup,
        // Per-node setup (per-node-options.ts).
        nodeSetup: nodeSetupSource(o),
        cleanupFiles: o.cleanup !== false,
        destPath: this.#destPath,
        nodes: this.#nodeSpecs,
        reentrant: o.reentrant ?? false,
        exclusive: this.exclusive,
        maxRuntime: o.maxRuntime ?? 0,
        files: this.#files.map((f) => f.name),
        isolate: o.isolate ?? null,
        // The scheduler keeps the computation for this long once the connection is gone, no longer.
        reconnectTimeout: o.reconnectTimeout ?? 60,
      }),
      'registering the computation',
    );
    if (!registered.computeId)
      throw this.#fail(new DispyError('DISPY_ERR_BAD_FRAME', `scheduler ${this.scheduler} registered the computation without a computeId`));
    const computeId = registered.computeId;
    this.#computeId = computeId;
    this.#resumeKey = registered.resumeKey ?? null;
    this.#schedulerName = registered.name ?? this.name;
    for (const f of this.#files)
      await this.#guard(transferFile(this.#fileRequester(), computeId, f, this.#fileOpts()), `sending ${f.name}`);
    this.log.info({ computeId, name: this.#schedulerName, exclusive: this.exclusive }, 'computation registered; waiting to be scheduled');
    // An exclusive cluster waits here until the scheduler admits it: no time limit.
    void this.#guard(this.#request({ t: 'schedule', computeId }, Infinity), 'scheduling the computation').then(
      () => {
        if (this.#broken || this.#closing) return;
        this.#scheduled = true;
        this.log.info({ computeId }, 'cluster scheduled');
        this.#flush();
      },
      () => undefined,
    );
    return computeId;
  }

  /**
   * A step of the set-up: its failure makes the cluster unusable (every job and call fails),
   * unless the cluster is being closed anyway.
   */
  async #guard<T>(p: Promise<T>, what: string): Promise<T> {
    try {
      return await p;
    } catch (err) {
      if (this.#broken) throw this.#broken;
      const e = err instanceof Refused ? err.error : asDispyError(err, 'DISPY_ERR_CONNECTION');
      if (this.#closing) throw e;
      throw this.#fail(new DispyError(e.code, `scheduler ${this.scheduler}: ${what} failed: ${e.message}`, { cause: e }));
    }
  }

  #fileRequester(): { request(msg: FileRequest, timeoutSec?: number): Promise<Reply>; maxMessageSize: number } {
    return {
      request: (msg, timeoutSec) => this.#request(msg, timeoutSec),
      maxMessageSize: this.#info?.maxMessageSize ?? DEFAULT_MAX_FRAME,
    };
  }

  #fileOpts(): { destPath: string | null; maxFileSize: number } {
    return { destPath: this.#destPath, maxFileSize: this.#opts.maxFileSize ?? 0 };
  }

  /** Sends a request and resolves with its reply; an error reply rejects with Refused. */
  #request(msg: SchedRequest, timeoutSec = REQUEST_TIMEOUT): Promise<Reply> {
    if (this.#broken) return Promise.reject(this.#unusable());
    const ch = this.#channel;
    if (!ch || ch.closed) return Promise.reject(new DispyError('DISPY_ERR_CONNECTION', `no connection to scheduler ${this.scheduler}`));
    const rid = ++this.#rid;
    return new Promise<Reply>((resolve, reject) => {
      const timer = Number.isFinite(timeoutSec)
        ? setTimeout(() => {
            this.#requests.delete(rid);
            reject(new DispyError('DISPY_ERR_TIMEOUT', `scheduler ${this.scheduler} did not answer ${msg.t} in ${timeoutSec} s`));
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

  #onClose(ch: Channel<FromScheduler, ToSchedulerInput>, reason: DispyError | null): void {
    if (ch !== this.#channel) return;
    this.#stopTimers();
    if (this.#closing || this.#closed) {
      this.#rejectRequests(Errors.clusterClosed(this.name));
      return;
    }
    if (this.#broken) return;
    const why = reason ? reason.message : 'the scheduler closed the connection';
    const lost = new DispyError(
      'DISPY_ERR_CONNECTION',
      `connection to scheduler ${this.scheduler} lost: ${why}`,
      reason ? { cause: reason } : undefined,
    );
    if (this.#reconnecting) {
      // A new connection broke while resuming: the reconnection loop tries again.
      this.#channel = null;
      this.#rejectRequests(lost);
      return;
    }
    const window = this.#reconnectWindow();
    if (window > 0 && this.#resumeKey && this.#scheduled) {
      this.#channel = null;
      this.#reconnecting = true;
      this.#rejectRequests(new DispyError('DISPY_ERR_CONNECTION', `${lost.message}; reconnecting`, { cause: lost }));
      this.log.warn({ reconnectTimeout: window }, `${lost.message}; reconnecting to resume the computation`);
      void this.#reconnect(lost, window);
      return;
    }
    this.#fail(lost);
  }

  /** Seconds to try to get back: the option, at most the scheduler's zombie interval. */
  #reconnectWindow(): number {
    const want = this.#opts.reconnectTimeout ?? 60;
    const zombie = this.#info?.zombieInterval;
    return zombie === undefined ? want : Math.min(want, zombie);
  }

  /**
   * Gets back to the scheduler after `lost` and resumes the computation there, retrying (with
   * back-off) for `windowSec` while connections fail for want of a route; a refused connection,
   * a restarted scheduler or a refused resume end every pending job at once (#fail).
   */
  async #reconnect(lost: DispyError, windowSec: number): Promise<void> {
    const deadline = Date.now() + windowSec * 1000;
    let delay = 100;
    for (;;) {
      if (this.#closing || this.#broken) {
        this.#reconnecting = false;
        return;
      }
      let ch: Channel<FromScheduler, ToSchedulerInput> | null = null;
      let permanent = false;
      try {
        try {
          ch = await this.#connect();
        } catch (err) {
          const e = asDispyError(err, 'DISPY_ERR_CONNECTION');
          // Nothing listens: the scheduler is gone, and its computations with it.
          permanent = e.code !== 'DISPY_ERR_CONNECTION' && e.code !== 'DISPY_ERR_TIMEOUT' ? true : /ECONNREFUSED/.test(e.message);
          throw e;
        }
        if (this.#closing || this.#broken) {
          ch.end();
          continue;
        }
        const info = await this.#attach(ch);
        if (info.schedulerId !== this.#info?.schedulerId) {
          permanent = true;
          throw new DispyError('DISPY_ERR_CONNECTION', 'the scheduler restarted, and its computations with it');
        }
        const uids = [...this.#jobs.values()].filter((p) => p.sent && !p.job.settled).map((p) => p.job._uid);
        let reply: Reply;
        try {
          reply = await this.#request({ t: 'resume', computeId: this.#computeId!, key: this.#resumeKey!, uids });
        } catch (err) {
          if (err instanceof Refused) {
            permanent = true;
            throw err.error;
          }
          throw err;
        }
        this.#reconnecting = false;
        this.#info = info;
        this.#startHeartbeats(info.pulseInterval);
        // Jobs that never reached the scheduler go again, in their order, ahead of newer ones.
        const again = new Set(reply.unknown ?? []);
        const resend = [...this.#jobs.values()].filter((p) => again.has(p.job._uid) && !p.job.settled);
        for (const p of resend.reverse()) {
          if (this.#givenUp(p)) continue;
          p.sent = false;
          this.#unsent.unshift(p);
        }
        for (const uid of this.#cancels) {
          const p = this.#jobs.get(uid);
          if (p) ch.send(cancelMessage(uid, graceOf(p.job)));
        }
        this.#cancels.clear();
        this.log.warn({ resent: resend.length }, `reconnected to scheduler ${this.scheduler}; the computation resumed`);
        this.#flush();
        return;
      } catch (err) {
        const e = err instanceof Refused ? err.error : asDispyError(err, 'DISPY_ERR_CONNECTION');
        if (ch && this.#channel === ch) {
          this.#channel = null;
          ch.close(e);
        }
        if (this.#closing || this.#broken) {
          this.#reconnecting = false;
          return;
        }
        if (permanent || Date.now() + delay >= deadline) {
          this.#reconnecting = false;
          const why = permanent ? `resuming failed: ${e.message}` : `not back within ${windowSec} s (last: ${e.message})`;
          this.#fail(new DispyError('DISPY_ERR_CONNECTION', `${lost.message}; ${why}`, { cause: e }));
          return;
        }
        this.log.debug({ err: e.message, retryInMs: delay }, 'reconnecting to the scheduler');
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /**
   * Counts one more send of the job the scheduler never got; at MAX_SEND_ATTEMPTS it ends
   * Abandoned (DISPY_ERR_UNDELIVERABLE) with an error event instead of being sent again forever,
   * and true is returned.
   */
  #givenUp(p: Pending): boolean {
    const n = (this.#lostSends.get(p) ?? 0) + 1;
    this.#lostSends.set(p, n);
    if (n < MAX_SEND_ATTEMPTS) return false;
    const e = new DispyError(
      'DISPY_ERR_UNDELIVERABLE',
      `job ${String(p.job.id)} given up after ${n} attempts to hand it to scheduler ${this.scheduler}: each time the connection broke before the scheduler got it`,
    );
    p.job.exception = jobException(e.message);
    p.job.endTime = Date.now();
    p.job._errorCode = e.code;
    this.#settle(p, JobStatus.Abandoned, null);
    this.#core.emitError(e);
    return true;
  }

  #rejectRequests(err: Error): void {
    for (const r of this.#requests.values()) {
      if (r.timer) clearTimeout(r.timer);
      r.reject(err);
    }
    this.#requests.clear();
    const w = this.#infoWaiter;
    this.#infoWaiter = null;
    w?.reject(err instanceof DispyError ? err : asDispyError(err));
  }

  /**
   * The scheduler is lost or unusable: every pending request and job ends with `err` (jobs
   * Abandoned, naming the scheduler and the reason), nodes close, an error event says why, and
   * every later call fails at once. Returns `err`.
   */
  #fail(err: DispyError): DispyError {
    if (this.#broken) return this.#broken;
    this.#broken = err;
    this.#stopTimers();
    this.log.error({ code: err.code }, err.message);
    this.#rejectRequests(err);
    if (this.#channel && !this.#channel.closed) this.#channel.close(err);
    this.#unsent.clear();
    const now = Date.now();
    for (const p of [...this.#jobs.values()]) {
      const node = p.running;
      p.job.exception = jobException(`job abandoned: ${err.message}`);
      p.job.endTime = now;
      p.job._errorCode = err.code;
      this.#settle(p, JobStatus.Abandoned, node);
    }
    this.#closeNodes();
    this.#core.emitError(err);
    return err;
  }

  /** Every node still in use: Closed. */
  #closeNodes(): void {
    for (const n of [...this.#nodes.values()]) {
      this.#nodes.delete(n.ipAddr);
      n.busy = 0;
      n.status = NodeStatus.Closed;
      n.updateTime = Date.now();
      this.#emit(NodeStatus.Closed, n, null);
    }
  }

  /** The error later calls fail with once the cluster cannot be used. */
  #unusable(): DispyError {
    if (this.#broken)
      return new DispyError(this.#broken.code, `cluster ${this.name} cannot be used: ${this.#broken.message}`, { cause: this.#broken });
    return Errors.clusterClosed(this.name);
  }

  // ---- messages from the scheduler ----

  #onMessage(msg: FromScheduler): void {
    this.#scheduler.lastHeard = Date.now();
    switch (msg.t) {
      case 'sched-info': {
        const w = this.#infoWaiter;
        this.#infoWaiter = null;
        w?.resolve(msg);
        return;
      }
      case 'reply': {
        const r = this.#requests.get(msg.rid);
        if (!r) return;
        this.#requests.delete(msg.rid);
        if (r.timer) clearTimeout(r.timer);
        if (msg.ok) r.resolve(msg);
        else r.reject(new Refused(fromWire(msg.error ?? { code: 'DISPY_ERR_INTERNAL', message: 'request failed' })));
        return;
      }
      case 'job-status':
        this.#onJobStatus(msg);
        return;
      case 'provisional':
        this.#onProvisional(msg);
        return;
      case 'job-end':
        this.#onJobEnd(msg);
        return;
      case 'job-file': {
        // A file a job sends home (result-files.ts).
        const ch = this.#channel;
        void this.#resultFiles.receive('scheduler', this.#jobs.get(msg.uid)?.job ?? null, msg).then((a) => {
          if (ch && !ch.closed) ch.send({ t: 'job-file-ack', fid: msg.fid, ...a });
        });
        return;
      }
      case 'node-status':
        if (msg.computeId === this.#computeId) this.#onNodeStatus(msg);
        return;
      case 'closed':
        if (msg.computeId !== this.#computeId || this.#closing) return;
        this.#fail(
          new DispyError(
            'DISPY_ERR_CLUSTER_CLOSED',
            `scheduler ${this.scheduler} closed cluster ${this.#schedulerName ?? this.name}: ${msg.reason}`,
          ),
        );
        return;
      case 'pulse':
        return;
    }
  }

  /** The node at `ip` (one the scheduler has not described yet gets a placeholder). */
  #nodeAt(ip: string): DispyNode {
    let n = this.#core.everyNode.get(ip);
    if (!n) {
      n = new DispyNode(ip, 0, '', this);
      this.#core.everyNode.set(ip, n);
      this.#nodes.set(ip, n);
    }
    return n;
  }

  #onJobStatus(msg: Extract<FromScheduler, { t: 'job-status' }>): void {
    const p = this.#jobs.get(msg.uid);
    if (!p) return;
    const job = p.job;
    if (msg.status === JobStatus.Running) {
      if (!msg.ip) return;
      const node = this.#nodeAt(msg.ip);
      if (p.running !== node) {
        if (p.running) p.running.busy = Math.max(0, p.running.busy - 1);
        node.busy++;
        p.running = node;
      }
      node.updateTime = Date.now();
      job.status = JobStatus.Running;
      job.startTime = msg.startTime ?? Date.now();
      job.ipAddr = msg.ip;
      this.#emit(JobStatus.Running, node, job);
    } else if (msg.status === JobStatus.Created) {
      // Queued again on the scheduler (its node died and the cluster is reentrant).
      const node = p.running ?? (msg.ip ? (this.#core.everyNode.get(msg.ip) ?? null) : null);
      if (p.running) p.running.busy = Math.max(0, p.running.busy - 1);
      p.running = null;
      job.status = JobStatus.Created;
      job.startTime = null;
      this.#emit(JobStatus.Created, node, job);
    } else {
      this.log.debug({ uid: msg.uid, status: msg.status }, 'job status ignored');
    }
  }

  #onProvisional(msg: Extract<FromScheduler, { t: 'provisional' }>): void {
    const p = this.#jobs.get(msg.uid);
    if (!p) return;
    if (!this.#core.provisional(p.job, msg.result, msg.uid)) return;
    const node = p.running ?? (msg.ip ? this.#nodeAt(msg.ip) : null);
    this.#emit(JobStatus.ProvisionalResult, node, p.job._snapshot());
  }

  #onJobEnd(msg: Extract<FromScheduler, { t: 'job-end' }>): void {
    const p = this.#jobs.get(msg.uid);
    if (!p) return;
    const job = p.job;
    const ran = msg.startTime !== null && msg.ip !== null;
    const node = p.running ?? (ran ? this.#nodeAt(msg.ip!) : null);
    if (p.running) p.running.busy = Math.max(0, p.running.busy - 1);
    else if (ran && job.status === JobStatus.Created && node) {
      // It ran without a job-status (a scheduler may leave it out when the end follows at
      // once): the Running event still comes first, as the event table says.
      job.status = JobStatus.Running;
      job.startTime = msg.startTime;
      job.ipAddr = msg.ip;
      this.#emit(JobStatus.Running, node, job);
    }
    p.running = null;
    job.endTime = msg.endTime ?? Date.now();
    if (ran) {
      job.startTime = msg.startTime;
      job.ipAddr = msg.ip;
      if (node && msg.status !== JobStatus.Abandoned) {
        node.jobsDone++;
        node.jobTime += Math.max(0, job.endTime - msg.startTime!) / 1000;
        node.updateTime = Date.now();
      }
    }
    const status = isFinal(msg.status) ? msg.status : JobStatus.Terminated;
    this.#settle(p, this.#core.ended(job, msg, status), node);
  }

  #onNodeStatus(msg: Extract<FromScheduler, { t: 'node-status' }>): void {
    const v = msg.node;
    const n = this.#nodeAt(v.ipAddr);
    n.port = v.port;
    n.name = v.name;
    n.cpus = v.cpus;
    n.availCpus = v.availCpus;
    n.machineCpus = v.machineCpus;
    n.platform = v.platform;
    n.busy = v.busy;
    n.jobsDone = v.jobsDone;
    n.jobTime = v.jobTime;
    n.cpuUsed = v.cpuUsed;
    n.tx = v.tx;
    n.rx = v.rx;
    n.availInfo = v.availInfo;
    n.updateTime = v.updateTime ?? Date.now();
    switch (msg.status) {
      case NodeStatus.Initialized:
        n.status = NodeStatus.Initialized;
        this.#nodes.set(n.ipAddr, n);
        break;
      case NodeStatus.Closed:
        n.status = NodeStatus.Closed;
        this.#nodes.delete(n.ipAddr);
        break;
      case NodeStatus.AvailInfo:
        break;
      default:
        this.log.debug({ node: n.ipAddr, status: msg.status }, 'node status ignored');
        return;
    }
    this.#emit(msg.status as DispyStatus, n, null);
  }

  #settle(p: Pending, status: FinalJobStatus, node: DispyNode | null): void {
    const job = p.job;
    if (job.settled) return;
    this.#jobs.delete(job._uid);
    this.#core.settle(job, status, node);
  }

  #emit(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    this.#core.emit(status, node, job);
  }

  // ---- submitting ----

  /** Queues a job calling the computation with `args`. */
  submit(...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(undefined, undefined, undefined, args);
  }

  /** Like submit, with the job's `id` set. */
  submitJobId(id: unknown, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(id, undefined, undefined, args);
  }

  /** Queues a job that runs only on `node` (a DispyNode, an IP address or a node name). */
  submitNode(node: DispyNode | string, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(undefined, this.#pinTarget(node), undefined, args);
  }

  /**
   * Queues a job with options, as JobCluster's submitWith: `id`, `node` (as submitNode),
   * `maxRuntime` (seconds) and `depends`, files that go (through the scheduler, which keeps them
   * until the job ended) to the job's node right before it, into the computation's directory.
   * A file the scheduler refuses (too large, unreadable) ends the job Cancelled, saying why.
   *
   * @example cluster.submitWith({ depends: ['./input-7.csv'], id: 7 }, 'input-7.csv')
   */
  submitWith(options: SubmitOptions, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    const { files, maxRuntime, code } = checkSubmitOptions(options, this.#opts.maxFileSize ?? 0, this.#kind);
    const { node } = options;
    const pin = node === undefined || node === null ? undefined : this.#pinTarget(node);
    const job = this.#submit(options.id, pin, maxRuntime, args, files);
    // Sent with the job (after this synchronous code, see #submit).
    if (code.length) this.#jobs.get(job._uid)!.depends = code;
    return job;
  }

  #pinTarget(node: DispyNode | string): string {
    if (node instanceof DispyNode) return node.ipAddr;
    if (typeof node !== 'string' || node.length === 0 || node.length > 1024)
      throw invalidOption('node', 'a DispyNode, an IP address or a node name', node);
    return this.#resolveNode(node);
  }

  /** An IP address for a node name this cluster knows; anything else as it is (the scheduler resolves it). */
  #resolveNode(node: DispyNode | string): string {
    if (node instanceof DispyNode) return node.ipAddr;
    if (isIP(node) || this.#core.everyNode.has(node)) return node;
    for (const n of this.#core.everyNode.values()) if (n.name === node) return n.ipAddr;
    return node;
  }

  #submit(
    id: unknown,
    node: string | undefined,
    maxRuntime: number | undefined,
    args: unknown[],
    files: LocalFile[] = [],
  ): DispyJob<Awaited<ReturnType<F>>> {
    if (this.#broken) throw this.#unusable();
    if (this.#closing) throw Errors.clusterClosed(this.name);
    const bytes = this.#core.checkArgs(this.#codec.encode(args, 'args'), this.#opts.maxArgsSize);
    const job = this.#core.newJob<Awaited<ReturnType<F>>>(id, args);
    const uid = job._uid;
    job._attempt = uid;
    const p: Pending = { job: job as DispyJob, args: bytes, sent: false, running: null };
    if (node !== undefined) p.node = node;
    if (maxRuntime !== undefined) p.maxRuntime = maxRuntime;
    if (files.length) p.files = files;
    this.#jobs.set(uid, p);
    this.#unsent.push(p);
    if (this.#scheduled && !this.#flushQueued) {
      // After the caller's synchronous code, so an `id` set right after submit travels too.
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
    return job;
  }

  /** Sends every job not sent yet. */
  #flush(): void {
    this.#flushQueued = false;
    const ch = this.#channel;
    const computeId = this.#computeId;
    if (!this.#scheduled || this.#broken || !ch || ch.closed || !computeId) return;
    while (this.#unsent.length) {
      const p = this.#unsent.shift()!;
      if (p.job.settled) continue;
      p.sent = true;
      if (p.files) void this.#sendWithFiles(p, computeId);
      else this.#sendJob(p, computeId);
    }
  }

  #sendJob(p: Pending, computeId: string): void {
    const tag = wireTag(p.job.id);
    try {
      this.#channel?.send({
        t: 'job',
        uid: p.job._uid,
        computeId,
        args: p.args,
        ...(tag === undefined ? {} : { tag }),
        ...(p.node === undefined ? {} : { node: p.node }),
        ...(p.maxRuntime === undefined ? {} : { maxRuntime: p.maxRuntime }),
        ...(p.files ? { files: p.files.map((f) => f.name) } : {}),
        ...(p.depends ? { depends: p.depends } : {}),
      });
    } catch (err) {
      if (!(err instanceof DispyError) || err.code !== 'DISPY_ERR_MESSAGE_TOO_LARGE') throw err;
      // The scheduler does not take a job that large: it ends here, saying so.
      const max = this.#info?.maxMessageSize ?? DEFAULT_MAX_FRAME;
      const e = new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `job ${String(p.job.id)}'s arguments encode to ${p.args.length} bytes: scheduler ${this.scheduler} takes messages of at most ${max} bytes (its --max-message-size)`,
      );
      p.job.exception = jobException(e.message);
      p.job.endTime = Date.now();
      p.job._errorCode = e.code;
      this.#settle(p, JobStatus.Cancelled, null);
      this.#core.emitError(e);
    }
  }

  /** A job with per-job files: they go to the scheduler first (kept there for the job), then the job. */
  async #sendWithFiles(p: Pending, computeId: string): Promise<void> {
    const job = p.job;
    try {
      for (const f of p.files!) {
        if (job.settled) return;
        await transferFile(this.#fileRequester(), computeId, f, { ...this.#fileOpts(), job: job._uid });
      }
    } catch (err) {
      // A lost scheduler ends every pending job (Abandoned) on its own.
      if (job.settled || this.#broken) return;
      if (this.#reconnecting || !this.#channel) {
        // The connection broke: the job (files and all) goes again once resumed.
        p.sent = false;
        this.#unsent.unshift(p);
        return;
      }
      const e =
        err instanceof Refused ? err.error : err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', (err as Error).message);
      this.log.warn({ job: job._uid, code: e.code }, `a file of the job could not be sent: ${e.message}`);
      job.exception = jobException(`job cancelled: sending its file failed: ${e.code}: ${e.message}`);
      job.endTime = Date.now();
      this.#settle(p, JobStatus.Cancelled, null);
      return;
    }
    if (job.settled || this.#broken) return;
    this.#sendJob(p, computeId);
  }

  // ---- control ----

  /**
   * Cancels a job: one not yet sent ends Cancelled at once; otherwise the scheduler drops it
   * (Cancelled) or kills it on its node (Terminated). Resolves to 0, or -1 if the job is not
   * this cluster's or already ended.
   */
  async cancel(job: DispyJob, options?: CancelOptions): Promise<number> {
    if (!(job instanceof DispyJob) || job.cluster !== this || job.settled) return -1;
    // A grace makes it polite (per-node-options.ts).
    const grace = cancelGrace(job, options, this.#opts.cancelGrace);
    const p = this.#jobs.get(job._uid);
    if (!p) return -1;
    if (!p.sent) {
      job.endTime = Date.now();
      this.#settle(p, JobStatus.Cancelled, null);
      return 0;
    }
    const ch = this.#channel;
    if (this.#reconnecting) {
      this.#cancels.add(job._uid);
      return 0;
    }
    if (!ch || ch.closed) return -1;
    ch.send(cancelMessage(job._uid, grace));
    return 0;
  }

  /** Waits for the computation's registration; fails fast once the cluster is unusable. */
  async #computeIdNow(): Promise<string> {
    if (this.#broken) throw this.#unusable();
    if (this.#closed) throw Errors.clusterClosed(this.name);
    try {
      return await this.#registered;
    } catch {
      throw this.#unusable();
    }
  }

  /**
   * One node operation on the scheduler: its answer, or -1 when the scheduler refused (the
   * reason is logged). A lost scheduler rejects (DISPY_ERR_CONNECTION).
   */
  async #nodeOp(
    op: NodeOp,
    fields: Omit<Extract<SchedRequest, { t: 'node-op' }>, 't' | 'op' | 'computeId'> = {},
  ): Promise<number | number[]> {
    const computeId = await this.#computeIdNow();
    try {
      const r = await this.#request({ t: 'node-op', computeId, op, ...fields });
      return r.value ?? 0;
    } catch (err) {
      if (err instanceof Refused) {
        this.log.warn({ op, node: fields.node, code: err.error.code }, `${op} refused by the scheduler: ${err.error.message}`);
        return -1;
      }
      if (this.#broken) throw this.#unusable();
      throw err;
    }
  }

  /**
   * Asks the scheduler to look for nodes now (dispy's `discover_nodes`). Resolves to 0 once it
   * did, -1 if it refused. `specs` (dispy's `discover_nodes(nodes)`) are checked as `nodes` are;
   * which nodes the scheduler looks for is its own `--node` list.
   */
  async discoverNodes(specs?: NodeSpec | NodeSpec[]): Promise<number> {
    if (specs !== undefined) parseNodeSpecs(specs);
    return numeric(await this.#nodeOp('discover'));
  }

  /**
   * Adds a node of the scheduler to this cluster (a host name, IP address, wildcard,
   * `{ host, port }`, NodeAllocate or DispyNode). CPUs in the spec are the scheduler's to
   * decide (the HTTP server leaves them out). Resolves to 0 or -1.
   */
  async allocateNode(spec: NodeSpec | DispyNode): Promise<number> {
    const node = spec instanceof DispyNode ? { host: spec.ipAddr, port: spec.port } : specToWire(parseNodeSpecs(spec)[0]!);
    return numeric(await this.#nodeOp('allocate', { node }));
  }

  /** Stops giving this cluster's jobs to `node`; its running jobs finish. Resolves to 0 or -1. */
  async deallocateNode(node: DispyNode | string): Promise<number> {
    return numeric(await this.#nodeOp('deallocate', { node: this.#resolveNode(node) }));
  }

  /**
   * Closes the computation on `node`: running jobs finish, or are terminated with
   * `terminatePending`. Resolves to 0 or -1.
   */
  async closeNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    return numeric(await this.#nodeOp('close', { node: this.#resolveNode(node), terminatePending: options.terminatePending ?? false }));
  }

  /** Closes the computation on `node` and sets it up again. Resolves to 0 or -1. */
  async resetupNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    return numeric(await this.#nodeOp('resetup', { node: this.#resolveNode(node), terminatePending: options.terminatePending ?? false }));
  }

  /**
   * Sets the CPUs this cluster uses on `node` (as JobCluster.setNodeCpus). The scheduler allows
   * it for an exclusive cluster or when it runs `--cooperative`; otherwise -1. Resolves to the
   * new CPU count, or -1.
   */
  async setNodeCpus(node: DispyNode | string, cpus: number): Promise<number> {
    if (!Number.isInteger(cpus)) return -1;
    const ip = this.#resolveNode(node);
    const r = numeric(await this.#nodeOp('set-cpus', { node: ip, cpus }));
    const n = this.#nodes.get(ip);
    if (r >= 0 && n && n.cpus !== r) {
      n.cpus = r;
      n.updateTime = Date.now();
      this.#emit(NodeStatus.AvailInfo, n, null);
    }
    return r;
  }

  /**
   * This cluster's jobs running on `node`, as this client knows them or, with `fromNode`, as
   * the scheduler reports them.
   */
  async nodeJobs(node: DispyNode | string, options: { fromNode?: boolean } = {}): Promise<DispyJob[]> {
    const ip = this.#resolveNode(node);
    if (options.fromNode) {
      const r = await this.#nodeOp('node-jobs', { node: ip });
      if (!Array.isArray(r)) return [];
      return r.map((uid) => this.#jobs.get(uid)?.job).filter((j): j is DispyJob => j !== undefined);
    }
    if (this.#broken) throw this.#unusable();
    return [...this.#jobs.values()].filter((p) => p.running?.ipAddr === ip).map((p) => p.job);
  }

  /**
   * Sends a file to `node` into the computation's directory there (through the scheduler).
   * Resolves to 0, or -1 if the file is missing or too large, or the scheduler or node refused
   * it (the reason is logged).
   */
  async sendFile(path: string, node: DispyNode | string): Promise<number> {
    let file: LocalFile;
    try {
      file = localFile(path, 'sendFile', this.#opts.maxFileSize ?? 0);
    } catch (err) {
      this.log.warn({ path, code: (err as DispyError).code, err: (err as Error).message }, 'sendFile failed');
      return -1;
    }
    const computeId = await this.#computeIdNow();
    try {
      await transferFile(this.#fileRequester(), computeId, file, this.#fileOpts());
    } catch (err) {
      if (err instanceof Refused) {
        this.log.warn({ path, code: err.error.code }, `sendFile refused by the scheduler: ${err.error.message}`);
        return -1;
      }
      if (this.#broken) throw this.#unusable();
      throw err;
    }
    return numeric(await this.#nodeOp('send-file', { node: this.#resolveNode(node), file: file.name }));
  }

  /**
   * Resolves true once no job is pending and the status callbacks of every ended job have run,
   * or false if `timeout` seconds pass first. Jobs end (Abandoned) when the scheduler is lost.
   */
  wait(timeout?: number): Promise<boolean> {
    return this.#core.wait(timeout);
  }

  /**
   * As JobCluster.close: waits for pending jobs (up to `timeout` seconds), then closes the
   * computation on the scheduler (which closes it on the nodes). With `terminate`, jobs still
   * pending after `timeout` (default 0) end Cancelled or Terminated; without it a timed-out
   * close resolves false. Once the scheduler is lost there is nothing left to close: resolves
   * true at once.
   */
  close(options: { timeout?: number; terminate?: boolean } = {}): Promise<boolean> {
    return this.#core.close(() => this.#close(options));
  }

  async #close({ timeout, terminate = false }: { timeout?: number; terminate?: boolean }): Promise<boolean> {
    if (!this.#broken) {
      const idle = await this.wait(terminate ? (timeout ?? 0) : timeout);
      if (!idle && !terminate) return false;
    }
    this.#closing = true;
    for (const p of [...this.#jobs.values()]) {
      if (p.sent) continue;
      p.job.exception = jobException('job cancelled: cluster closed');
      p.job.endTime = Date.now();
      this.#settle(p, JobStatus.Cancelled, null);
    }
    const ch = this.#channel;
    if (!this.#broken && this.#computeId && ch && !ch.closed) {
      try {
        await this.#request({ t: 'close', computeId: this.#computeId, terminate: true });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'closing the computation on the scheduler failed');
      }
    }
    for (const p of [...this.#jobs.values()]) {
      p.job.exception = Errors.jobClusterClosed();
      p.job.endTime = Date.now();
      this.#settle(p, JobStatus.Terminated, p.running);
    }
    this.#closeNodes();
    this.#closed = true;
    this.#stopTimers();
    this.#rejectRequests(Errors.clusterClosed(this.name));
    if (ch && !ch.closed) ch.end();
    await this.#core.drained();
    return true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close({ terminate: true });
  }

  /** The cluster's nodes in use and the number of jobs not yet ended. */
  status(): ClusterStatus {
    return { nodes: [...this.#nodes.values()].filter((n) => n.status === NodeStatus.Initialized), jobsPending: this.#jobs.size };
  }

  /** Prints (and returns) dispy's table of nodes, jobs, times and data; closed nodes included. */
  printStatus(wallTime?: number): string {
    return this.#core.printStatus(wallTime);
  }
}

/** A node spec as the scheduler takes it. */
function specToWire(s: NodeAllocate): string | NodeSpecObject {
  return s.cpus || s.port !== NODE_PORT ? { host: s.host, port: s.port, ...(s.cpus ? { cpus: s.cpus } : {}) } : s.host;
}

function numeric(v: number | number[]): number {
  return typeof v === 'number' ? v : 0;
}
