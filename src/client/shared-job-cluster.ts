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
import { DispyError, asDispyError, fromWire, invalidOption } from '../errors.js';
import { connectChannel, type Channel } from '../protocol/channel.js';
import { DEFAULT_MAX_FRAME, NODE_PORT, SCHEDULER_PORT } from '../protocol/constants.js';
import type { Computation, Depend } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import { fromSchedulerSchema, type FromScheduler, type ToSchedulerInput } from '../protocol/scheduler-messages.js';
import { resolveSecret } from '../protocol/secret.js';
import { connectTls, loadTls, type TlsMaterial } from '../protocol/tls.js';
import { buildComputation, hookSources, type ModuleComputation } from './computation.js';
import type { ProgramComputation } from './interpreter.js';
import { computationKind, splitJobDepends } from './job-scope.js';
import { Deque } from './deque.js';
import { CloseOnce } from './close-once.js';
import { IdleWaiters } from './idle-waiters.js';
import { DispyJob } from './dispy-job.js';
import { DispyNode } from './dispy-node.js';
import { dependFiles, localFile, normalizeDestPath, transferFile, type FileRequest, type LocalFile } from './file-transfer.js';
import {
  MAX_SEND_ATTEMPTS,
  checkMaxArgsSize,
  nextJobUid,
  type ClusterStatus,
  type ClusterStatusEvent,
  type JobClusterOptions,
  type SubmitOptions,
} from './job-cluster.js';
import { parseNodeSpecs, type NodeAllocate, type NodeSpec, type NodeSpecObject } from './node-allocate.js';
import { CLIENT_ID, HEARTBEAT_MAX, REQUEST_TIMEOUT } from './node-link.js';
import { statusTable } from './print-status.js';
import { StatusEventQueue } from './status-events.js';
import { JobStatus, NodeStatus, isFinal, type DispyStatus } from './status.js';
import { ResultFiles } from './result-files.js';

export interface SharedJobClusterOptions
  extends Pick<
    JobClusterOptions,
    | 'depends'
    | 'jobStatus'
    | 'clusterStatus'
    | 'reentrant'
    | 'name'
    | 'setup'
    | 'cleanup'
    | 'globals'
    | 'resultsDir'
    | 'destPath'
    | 'maxRuntime'
    | 'maxFileSize'
    | 'isolate'
    | 'maxArgsSize'
    | 'logLevel'
    | 'logger'
  > {
  /**
   * Address of the `dispyts scheduler` (its `--host`).
   * @default '127.0.0.1'
   * @example schedulerHost: '192.0.2.5'
   */
  schedulerHost?: string;
  /**
   * The scheduler's port for clients (its `--port`).
   * @default 9702
   * @example schedulerPort: 9802
   */
  schedulerPort?: number;
  /**
   * Run alone: the scheduler admits this cluster only when no other cluster is active, and
   * admits none while it runs. Jobs submitted meanwhile wait here. `setNodeCpus` works for an
   * exclusive cluster (or with a `--cooperative` scheduler).
   * @default false
   * @example exclusive: true
   */
  exclusive?: boolean;
  /**
   * Seconds to get back to the scheduler after the connection broke while the scheduler still
   * runs (a network outage, a proxy restart): jobs stay pending, calls fail with
   * DISPY_ERR_CONNECTION meanwhile, and on reconnection the cluster resumes its computation
   * (results that came meanwhile are delivered, jobs the scheduler never got are sent again). A
   * scheduler that refuses the connection or restarted ends every pending job at once; so does
   * one not back in time. Never more than the scheduler's zombie interval. 0 turns it off. The
   * scheduler is told it: while the connection is gone it starts none of this cluster's jobs,
   * and at the end of this window it closes the computation (queued jobs dropped, running ones
   * terminated), since nobody can collect their results any more.
   * @default 60
   * @example reconnectTimeout: 300
   */
  reconnectTimeout?: number;
  /**
   * The scheduler's cluster secret (its `--cluster-secret`); the per-user secret file
   * (`~/.config/dispyts/secret`) when absent, which only works for a scheduler of the same user
   * on the same machine. The nodes' secret is the scheduler's business.
   * @default undefined
   * @example secret: process.env.DISPYTS_CLUSTER_SECRET
   */
  secret?: string;
  /**
   * Nodes of the scheduler this cluster may use: host names, IP addresses, wildcards or
   * `{ host, port, cpus }` (a NodeAllocate's `depends` are sent, its `setupArgs` used; its
   * `allocate` is not called: the scheduler decides).
   * @default every node of the scheduler
   * @example nodes: ['127.0.0.2', '127.0.0.3']
   */
  nodes?: NodeSpec | NodeSpec[];
  /**
   * Local address to connect to the scheduler from (the scheduler's monitor shows it).
   * @default chosen by the operating system
   * @example host: '192.0.2.10'
   */
  host?: string;
  /**
   * TLS toward the scheduler: this client's certificate (PEM), for a scheduler that requires
   * one; with `keyFile`, or one PEM holding both. Turns TLS on.
   * @default undefined
   * @example certFile: '/etc/dispyts/client.pem'
   */
  certFile?: string;
  /**
   * TLS: this client's private key (PEM).
   * @default undefined (the key in `certFile`)
   * @example keyFile: '/etc/dispyts/client-key.pem'
   */
  keyFile?: string;
  /**
   * TLS: CA certificate(s) the scheduler's certificate must chain to (it needs an IP
   * subjectAltName when addressed by IP); turns TLS on.
   * @default undefined (no TLS unless `certFile` is given; then the system CAs)
   * @example caFile: '/etc/dispyts/ca.pem'
   */
  caFile?: string;
}

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

// biome-ignore lint/suspicious/noExplicitAny: a constraint every function satisfies (unknown[] parameters would reject typed ones)
type AnyFn = (...args: any[]) => unknown;

/** An error the scheduler answered with (as opposed to a lost connection or a time-out). */
class Refused extends Error {
  readonly error: DispyError;
  constructor(error: DispyError) {
    super(error.message);
    this.error = error;
  }
}

export class SharedJobCluster<F extends AnyFn = AnyFn> extends EventEmitter<SharedClusterEvents> {
  readonly name: string;
  readonly log: Logger;
  /** Marks a shared cluster (the HTTP server ignores CPUs when adding nodes to it). */
  readonly shared = true;
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
  readonly #statusEvents: StatusEventQueue<SharedJobCluster>;
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
  readonly #everyNode = new Map<string, DispyNode>();
  #jobIds = 0;
  readonly #idleWaiters = new IdleWaiters();
  #lastHeard = Date.now();
  #lastCheck = Date.now();
  #beatTimer: NodeJS.Timeout | null = null;
  #checkTimer: NodeJS.Timeout | null = null;
  /** Set once the scheduler is lost (or could not be used): the cluster is unusable. */
  #broken: DispyError | null = null;
  #closing = false;
  #closed = false;
  readonly #closeOnce = new CloseOnce();

  /**
   * @param computation as for JobCluster: a function (shipped as source with `depends`), a
   *   program path, or `{ module, export }`.
   */
  constructor(computation: F | string | string[] | ProgramComputation | ModuleComputation, options: SharedJobClusterOptions = {}) {
    super();
    validateOptions(options);
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
    this.#statusEvents = StatusEventQueue.ofCluster<SharedJobCluster>(this as SharedJobCluster, options, this.log);
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
    this.#lastHeard = Date.now();
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
        // cleanup gets setup's arguments too.
        setupArgs: o.setup || typeof o.cleanup === 'function' ? this.#codec.encode(this.#setupArgs, 'setupArgs') : null,
        cleanup: this.#hooks.cleanup,
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
    this.#lastCheck = Date.now();
    this.#checkTimer = setInterval(() => this.#checkScheduler(pulseInterval), pulseInterval * 1000);
    this.#checkTimer.unref();
  }

  /** A scheduler silent for 5 of its pulse intervals is declared lost. */
  #checkScheduler(pulseInterval: number): void {
    const now = Date.now();
    const late = now - this.#lastCheck > 2 * pulseInterval * 1000 + 1000;
    this.#lastCheck = now;
    if (late) {
      // This timer itself ran late: the silence was ours (process paused), not the scheduler's.
      this.#lastHeard = Math.max(this.#lastHeard, now);
      return;
    }
    const silent = now - this.#lastHeard;
    if (silent <= 5 * pulseInterval * 1000) return;
    this.#channel?.close(
      new DispyError(
        'DISPY_ERR_CONNECTION',
        `the scheduler sent nothing for ${(silent / 1000).toFixed(1)} s (5 × its pulse interval of ${pulseInterval} s)`,
      ),
    );
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
      this.#rejectRequests(new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${this.name} is closed`));
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
        for (const uid of this.#cancels) if (this.#jobs.has(uid)) ch.send({ t: 'cancel', uid });
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
    p.job.exception = `DispyError: ${e.message}`;
    p.job.endTime = Date.now();
    p.job._errorCode = e.code;
    this.#settle(p, JobStatus.Abandoned, null);
    this.#statusEvents.pushError(e);
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
      p.job.exception = `DispyError: job abandoned: ${err.message}`;
      p.job.endTime = now;
      p.job._errorCode = err.code;
      this.#settle(p, JobStatus.Abandoned, node);
    }
    this.#closeNodes();
    this.#statusEvents.pushError(err);
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
    return new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${this.name} is closed`);
  }

  // ---- messages from the scheduler ----

  #onMessage(msg: FromScheduler): void {
    this.#lastHeard = Date.now();
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
    let n = this.#everyNode.get(ip);
    if (!n) {
      n = new DispyNode(ip, 0, '', this);
      this.#everyNode.set(ip, n);
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
      const node = p.running ?? (msg.ip ? (this.#everyNode.get(msg.ip) ?? null) : null);
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
    try {
      p.job.result = this.#codec.decode(msg.result) as never;
    } catch (err) {
      this.log.warn({ uid: msg.uid, err: (err as Error).message }, 'undecodable provisional result ignored');
      return;
    }
    p.job.status = JobStatus.ProvisionalResult;
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
    job.stdout = msg.stdout;
    job.stderr = msg.stderr;
    job.exception = msg.exception;
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
    let status = (isFinal(msg.status) ? msg.status : JobStatus.Terminated) as DispyStatus;
    if (msg.result) {
      try {
        job.result = this.#codec.decode(msg.result) as never;
      } catch (err) {
        status = JobStatus.Terminated;
        job.exception = `DispyError: cannot decode the job's result: ${(err as Error).message}`;
      }
    }
    job._errorCode = msg.code;
    this.#settle(p, status, node);
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

  #settle(p: Pending, status: DispyStatus, node: DispyNode | null): void {
    const job = p.job;
    if (job.settled) return;
    this.#jobs.delete(job._uid);
    job._settle(status);
    this.#emit(status, node, job);
    if (this.#jobs.size === 0) {
      this.#idleWaiters.wake();
    }
  }

  #emit(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    this.#statusEvents.push(status, node, job);
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
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
    const { depends = [], node, maxRuntime } = options;
    if (!Array.isArray(depends)) throw invalidOption('depends', 'an array of file paths, functions and classes', depends);
    // Functions and classes are this job's own code (job-scope.ts); strings are its files.
    const { code } = splitJobDepends(depends, this.#kind);
    if (maxRuntime !== undefined && !(typeof maxRuntime === 'number' && maxRuntime > 0 && Number.isFinite(maxRuntime)))
      throw invalidOption('maxRuntime', 'a positive number of seconds', maxRuntime);
    const files = dependFiles(depends, 'depends', this.#opts.maxFileSize ?? 0);
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
    if (isIP(node) || this.#everyNode.has(node)) return node;
    for (const n of this.#everyNode.values()) if (n.name === node) return n.ipAddr;
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
    if (this.#closing) throw new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${this.name} is closed`);
    const bytes = this.#codec.encode(args, 'args');
    const max = this.#opts.maxArgsSize ?? DEFAULT_MAX_FRAME;
    if (bytes.length > max) {
      throw new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `the job's arguments encode to ${bytes.length} bytes, more than cluster ${this.name}'s maxArgsSize of ${max} bytes`,
      );
    }
    const uid = nextJobUid();
    const job = new DispyJob<Awaited<ReturnType<F>>>(uid, id === undefined || id === null || id === '' ? ++this.#jobIds : id, args, this);
    job._attempt = uid;
    const p: Pending = { job: job as DispyJob, args: bytes, sent: false, running: null };
    if (node !== undefined) p.node = node;
    if (maxRuntime !== undefined) p.maxRuntime = maxRuntime;
    if (files.length) p.files = files;
    this.#jobs.set(uid, p);
    this.#unsent.push(p);
    this.#emit(JobStatus.Created, null, job as DispyJob);
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
    const tag = tagOf(p.job.id);
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
      p.job.exception = `DispyError: ${e.message}`;
      p.job.endTime = Date.now();
      p.job._errorCode = e.code;
      this.#settle(p, JobStatus.Cancelled, null);
      this.#statusEvents.pushError(e);
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
      job.exception = `DispyError: job cancelled: sending its file failed: ${e.code}: ${e.message}`;
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
  async cancel(job: DispyJob): Promise<number> {
    if (!(job instanceof DispyJob) || job.cluster !== this || job.settled) return -1;
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
    ch.send({ t: 'cancel', uid: job._uid });
    return 0;
  }

  /** Waits for the computation's registration; fails fast once the cluster is unusable. */
  async #computeIdNow(): Promise<string> {
    if (this.#broken) throw this.#unusable();
    if (this.#closed) throw new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${this.name} is closed`);
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
    return this.#idleWaiters.wait(this.#jobs.size === 0, () => this.#statusEvents.drained(), timeout);
  }

  /**
   * As JobCluster.close: waits for pending jobs (up to `timeout` seconds), then closes the
   * computation on the scheduler (which closes it on the nodes). With `terminate`, jobs still
   * pending after `timeout` (default 0) end Cancelled or Terminated; without it a timed-out
   * close resolves false. Once the scheduler is lost there is nothing left to close: resolves
   * true at once.
   */
  close(options: { timeout?: number; terminate?: boolean } = {}): Promise<boolean> {
    return this.#closeOnce.run(() => this.#close(options));
  }

  async #close({ timeout, terminate = false }: { timeout?: number; terminate?: boolean }): Promise<boolean> {
    if (!this.#broken) {
      const idle = await this.wait(terminate ? (timeout ?? 0) : timeout);
      if (!idle && !terminate) return false;
    }
    this.#closing = true;
    for (const p of [...this.#jobs.values()]) {
      if (p.sent) continue;
      p.job.exception = 'DispyError: job cancelled: cluster closed';
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
      p.job.exception = 'DispyError: job terminated as its cluster was closed';
      p.job.endTime = Date.now();
      this.#settle(p, JobStatus.Terminated, p.running);
    }
    this.#closeNodes();
    this.#closed = true;
    this.#stopTimers();
    this.#rejectRequests(new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${this.name} is closed`));
    if (ch && !ch.closed) ch.end();
    await this.#statusEvents.drained();
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
    const text = statusTable([...this.#everyNode.values()], this.#jobs.size, wallTime);
    process.stdout.write(text);
    return text;
  }
}

/** A node spec as the scheduler takes it. */
function specToWire(s: NodeAllocate): string | NodeSpecObject {
  return s.cpus || s.port !== NODE_PORT ? { host: s.host, port: s.port, ...(s.cpus ? { cpus: s.cpus } : {}) } : s.host;
}

function numeric(v: number | number[]): number {
  return typeof v === 'number' ? v : 0;
}

/** A job id the scheduler's HTTP server can show (a string or finite number). */
function tagOf(id: unknown): string | number | undefined {
  if (typeof id === 'string') return id.length <= 1024 ? id : id.slice(0, 1024);
  return typeof id === 'number' && Number.isFinite(id) ? id : undefined;
}

function validateOptions(o: SharedJobClusterOptions): void {
  if (o === null || typeof o !== 'object') throw invalidOption('options', 'an object', o);
  if (o.depends !== undefined && !Array.isArray(o.depends)) throw invalidOption('depends', 'an array', o.depends);
  if (o.resultsDir !== undefined && (typeof o.resultsDir !== 'string' || o.resultsDir.length === 0))
    throw invalidOption('resultsDir', 'a directory path', o.resultsDir);
  if (o.globals !== undefined && (o.globals === null || typeof o.globals !== 'object' || Array.isArray(o.globals)))
    throw invalidOption('globals', 'an object of names and values', o.globals);
  if (o.jobStatus !== undefined && typeof o.jobStatus !== 'function') throw invalidOption('jobStatus', 'a function', o.jobStatus);
  if (o.clusterStatus !== undefined && typeof o.clusterStatus !== 'function')
    throw invalidOption('clusterStatus', 'a function', o.clusterStatus);
  if (o.schedulerHost !== undefined && (typeof o.schedulerHost !== 'string' || o.schedulerHost.length === 0))
    throw invalidOption('schedulerHost', 'an address or host name', o.schedulerHost);
  if (o.schedulerPort !== undefined && !(Number.isInteger(o.schedulerPort) && o.schedulerPort > 0 && o.schedulerPort <= 65535))
    throw invalidOption('schedulerPort', 'an integer from 1 to 65535', o.schedulerPort);
  if (o.host !== undefined && (typeof o.host !== 'string' || isIP(o.host) === 0)) throw invalidOption('host', 'an IP address', o.host);
  if (o.exclusive !== undefined && typeof o.exclusive !== 'boolean') throw invalidOption('exclusive', 'true or false', o.exclusive);
  if (
    o.reconnectTimeout !== undefined &&
    !(typeof o.reconnectTimeout === 'number' && o.reconnectTimeout >= 0 && Number.isFinite(o.reconnectTimeout))
  ) {
    throw invalidOption('reconnectTimeout', 'a number of seconds >= 0', o.reconnectTimeout);
  }
  if (o.secret !== undefined && typeof o.secret !== 'string') throw invalidOption('secret', 'a string', o.secret);
  if (o.reentrant !== undefined && typeof o.reentrant !== 'boolean') throw invalidOption('reentrant', 'true or false', o.reentrant);
  if (o.setup !== undefined && typeof o.setup !== 'function') throw invalidOption('setup', 'a function', o.setup);
  if (o.cleanup !== undefined && typeof o.cleanup !== 'function' && typeof o.cleanup !== 'boolean')
    throw invalidOption('cleanup', 'true, false or a function', o.cleanup);
  if (o.destPath !== undefined && (typeof o.destPath !== 'string' || o.destPath.length === 0))
    throw invalidOption('destPath', 'a relative directory name', o.destPath);
  if (o.maxRuntime !== undefined && !(typeof o.maxRuntime === 'number' && o.maxRuntime > 0 && Number.isFinite(o.maxRuntime)))
    throw invalidOption('maxRuntime', 'a positive number of seconds', o.maxRuntime);
  if (o.maxFileSize !== undefined && !(Number.isInteger(o.maxFileSize) && o.maxFileSize >= 0))
    throw invalidOption('maxFileSize', 'a number of bytes >= 0', o.maxFileSize);
  checkMaxArgsSize(o.maxArgsSize);
  for (const k of ['certFile', 'keyFile', 'caFile'] as const) {
    if (o[k] !== undefined && (typeof o[k] !== 'string' || o[k].length === 0)) throw invalidOption(k, 'a file path', o[k]);
  }
  if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length === 0 || o.name.length > 256))
    throw invalidOption('name', 'a non-empty string', o.name);
  if (o.isolate !== undefined && o.isolate !== 'job') throw invalidOption('isolate', "'job'", o.isolate);
}
