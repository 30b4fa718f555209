/**
 * SharedJobCluster: a JobCluster whose nodes belong to a `dispyts scheduler`, shared with other
 * programs. The computation is built here exactly as JobCluster builds it, registered with the
 * scheduler (which sets it up on the nodes), and jobs go to the scheduler, which relays their
 * statuses, results and the nodes' events back. Losing the scheduler ends every pending job and
 * call with a DISPY_ERR_* error; nothing waits silently. The connection is scheduler-link.ts,
 * the jobs and nodes it tells of shared-jobs.ts.
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import pino, { type Logger } from 'pino';
import { DispyError, Errors, asDispyError } from '../errors.js';
import { SCHEDULER_PORT } from '../protocol/constants.js';
import type { Computation } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import type { FromScheduler } from '../protocol/scheduler-messages.js';
import { resolveSecret } from '../protocol/secret.js';
import { loadTls } from '../protocol/tls.js';
import { buildComputation, hookSources, type ModuleComputation } from './computation.js';
import type { ProgramComputation } from './interpreter.js';
import { computationKind } from './job-scope.js';
import type { SharedJobClusterOptions } from './cluster-options.js';
import { checkSharedClusterOptions, checkSubmitOptions } from './option-rules.js';
import type { AnyFn, ClusterStatus, DispyCluster, SubmitOptions } from './dispy-cluster.js';
import { DispyJob } from './dispy-job.js';
import { DispyNode } from './dispy-node.js';
import { dependFiles, localFile, normalizeDestPath, transferFile, type LocalFile } from './file-transfer.js';
import { ClusterCore } from './cluster-core.js';
import type { ClusterStatusEvent } from './job-cluster.js';
import { parseNodeSpecs, type NodeSpec, type NodeSpecObject } from './node-allocate.js';
import { cancelGrace, nodeSetupSource, type CancelOptions } from './per-node-options.js';
import { NodeStatus } from './status.js';
import { ResultFiles } from './result-files.js';
import { Refused, SchedulerLink, type SchedChannel, type SchedReply, type SchedulerLinkUser } from './scheduler-link.js';
import { type Pending, SharedJobs } from './shared-jobs.js';
import { SharedNodeOps, specToWire } from './shared-node-ops.js';

export type { SharedJobClusterOptions } from './cluster-options.js';

type SharedClusterEvents = {
  status: [ClusterStatusEvent<SharedJobCluster>];
  error: [DispyError];
};

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
  readonly #nodeSpecs: (string | NodeSpecObject)[];
  /** Ids, pending count, events, settling, waiters (cluster-core.ts). */
  readonly #core: ClusterCore<SharedJobCluster>;
  /** The connection to the scheduler (scheduler-link.ts). */
  readonly #link: SchedulerLink;
  /** Jobs not yet ended and the nodes the scheduler tells of (shared-jobs.ts). */
  readonly #jobs: SharedJobs<SharedJobCluster>;
  /** Node management through the scheduler (shared-node-ops.ts). */
  readonly #ops: SharedNodeOps;
  #computeId: string | null = null;
  #schedulerName: string | null = null;
  /** Resolves with the computeId once the scheduler registered the computation. */
  readonly #registered: Promise<string>;
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
    const resultFiles = new ResultFiles({ dir: options.resultsDir ?? process.cwd(), maxFileSize: options.maxFileSize ?? 0, log: this.log });
    this.#setupArgs = specs.find((s) => s.setupArgs.length > 0)?.setupArgs ?? [];
    this.#nodeSpecs = specs.map(specToWire);
    this.#codec = new PayloadCodec(built.classes);
    this.#core = new ClusterCore<SharedJobCluster>(this as SharedJobCluster, { callbacks: options, log: this.log, codec: this.#codec });
    // Unreadable secret or TLS files fail here, not at the first connection.
    const linkOptions = {
      host,
      port,
      secret: resolveSecret(options.secret),
      tls: loadTls(options, 'client'),
      localAddress: options.host,
      reconnectTimeout: options.reconnectTimeout ?? 60,
    };
    this.#link = new SchedulerLink(this.scheduler, linkOptions, this.#linkUser());
    this.#jobs = new SharedJobs<SharedJobCluster>({
      cluster: this as SharedJobCluster,
      core: this.#core,
      link: this.#link,
      log: this.log,
      resultFiles,
      fileOpts: this.#fileOpts(),
    });
    this.#ops = new SharedNodeOps({
      link: this.#link,
      log: this.log,
      everyNode: this.#core.everyNode,
      computeId: () => this.#computeIdNow(),
    });
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
    const i = this.#link.info;
    return i ? { name: i.name, policy: i.policy, cooperative: i.cooperative, pulseInterval: i.pulseInterval } : null;
  }

  /** Whether the scheduler admitted the cluster (jobs go out from then on). */
  get scheduled(): boolean {
    return this.#jobs.scheduled;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** What the link asks of this cluster (scheduler-link.ts). */
  #linkUser(): SchedulerLinkUser {
    return {
      name: this.name,
      log: this.log,
      closing: () => this.#closing,
      scheduled: () => this.#jobs.scheduled,
      computeId: () => this.#computeId,
      onMessage: (msg) => this.#onMessage(msg),
      resumeUids: () => this.#jobs.sentUids(),
      onResumed: (reply: SchedReply, ch: SchedChannel) => this.#jobs.resumed(reply, ch),
      onLost: (err) => this.#fail(err),
    };
  }

  // ---- registering ----

  async #start(): Promise<string> {
    await this.#link.open();
    let computation: Computation;
    try {
      computation = await this.#computation;
    } catch (err) {
      throw this.#fail(asDispyError(err, 'DISPY_ERR_COMPUTATION'));
    }
    const o = this.#opts;
    const registered = await this.#guard(
      this.#link.request({
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
    this.#link.resumeKey = registered.resumeKey ?? null;
    this.#schedulerName = registered.name ?? this.name;
    for (const f of this.#files)
      await this.#guard(transferFile(this.#link.fileRequester(), computeId, f, this.#fileOpts()), `sending ${f.name}`);
    this.log.info({ computeId, name: this.#schedulerName, exclusive: this.exclusive }, 'computation registered; waiting to be scheduled');
    // An exclusive cluster waits here until the scheduler admits it: no time limit.
    void this.#guard(this.#link.request({ t: 'schedule', computeId }, Infinity), 'scheduling the computation').then(
      () => {
        if (this.#link.broken || this.#closing) return;
        this.#jobs.scheduled = true;
        this.log.info({ computeId }, 'cluster scheduled');
        this.#jobs.flush();
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
      if (this.#link.broken) throw this.#link.broken;
      const e = err instanceof Refused ? err.error : asDispyError(err, 'DISPY_ERR_CONNECTION');
      if (this.#closing) throw e;
      throw this.#fail(new DispyError(e.code, `scheduler ${this.scheduler}: ${what} failed: ${e.message}`, { cause: e }));
    }
  }

  #fileOpts(): { destPath: string | null; maxFileSize: number } {
    return { destPath: this.#destPath, maxFileSize: this.#opts.maxFileSize ?? 0 };
  }

  /**
   * The scheduler is lost or unusable: every pending request and job ends with `err` (jobs
   * Abandoned, naming the scheduler and the reason), nodes close, an error event says why, and
   * every later call fails at once. Returns `err`.
   */
  #fail(err: DispyError): DispyError {
    if (this.#link.broken) return this.#link.broken;
    this.log.error({ code: err.code }, err.message);
    this.#link.fail(err);
    this.#jobs.abandonAll(err);
    this.#core.emitError(err);
    return err;
  }

  #onMessage(msg: FromScheduler): void {
    if (msg.t !== 'closed') {
      this.#jobs.onMessage(msg, this.#computeId);
      return;
    }
    if (msg.computeId !== this.#computeId || this.#closing) return;
    this.#fail(
      new DispyError(
        'DISPY_ERR_CLUSTER_CLOSED',
        `scheduler ${this.scheduler} closed cluster ${this.#schedulerName ?? this.name}: ${msg.reason}`,
      ),
    );
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
    return this.#submit(undefined, this.#ops.pinTarget(node), undefined, args);
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
    const pin = node === undefined || node === null ? undefined : this.#ops.pinTarget(node);
    const job = this.#submit(options.id, pin, maxRuntime, args, files);
    // Sent with the job (after this synchronous code, see #submit).
    if (code.length) this.#jobs.jobs.get(job._uid)!.depends = code;
    return job;
  }

  #submit(
    id: unknown,
    node: string | undefined,
    maxRuntime: number | undefined,
    args: unknown[],
    files: LocalFile[] = [],
  ): DispyJob<Awaited<ReturnType<F>>> {
    if (this.#link.broken) throw this.#link.unusable();
    if (this.#closing) throw Errors.clusterClosed(this.name);
    const bytes = this.#core.checkArgs(this.#codec.encode(args, 'args'), this.#opts.maxArgsSize);
    const job = this.#core.newJob<Awaited<ReturnType<F>>>(id, args);
    job._attempt = job._uid;
    const p: Pending = { job: job as DispyJob, args: bytes, sent: false, running: null };
    if (node !== undefined) p.node = node;
    if (maxRuntime !== undefined) p.maxRuntime = maxRuntime;
    if (files.length) p.files = files;
    this.#jobs.add(p);
    return job;
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
    return this.#jobs.cancel(job, grace);
  }

  /** Waits for the computation's registration; fails fast once the cluster is unusable. */
  async #computeIdNow(): Promise<string> {
    if (this.#link.broken) throw this.#link.unusable();
    if (this.#closed) throw Errors.clusterClosed(this.name);
    try {
      return await this.#registered;
    } catch {
      throw this.#link.unusable();
    }
  }

  /**
   * Asks the scheduler to look for nodes now (dispy's `discover_nodes`). Resolves to 0 once it
   * did, -1 if it refused. `specs` (dispy's `discover_nodes(nodes)`) are checked as `nodes` are;
   * which nodes the scheduler looks for is its own `--node` list.
   */
  async discoverNodes(specs?: NodeSpec | NodeSpec[]): Promise<number> {
    if (specs !== undefined) parseNodeSpecs(specs);
    return this.#ops.value('discover');
  }

  /**
   * Adds a node of the scheduler to this cluster (a host name, IP address, wildcard,
   * `{ host, port }`, NodeAllocate or DispyNode). CPUs in the spec are the scheduler's to
   * decide (the HTTP server leaves them out). Resolves to 0 or -1.
   */
  async allocateNode(spec: NodeSpec | DispyNode): Promise<number> {
    const node = spec instanceof DispyNode ? { host: spec.ipAddr, port: spec.port } : specToWire(parseNodeSpecs(spec)[0]!);
    return this.#ops.value('allocate', { node });
  }

  /** Stops giving this cluster's jobs to `node`; its running jobs finish. Resolves to 0 or -1. */
  async deallocateNode(node: DispyNode | string): Promise<number> {
    return this.#ops.value('deallocate', { node: this.#ops.resolve(node) });
  }

  /**
   * Closes the computation on `node`: running jobs finish, or are terminated with
   * `terminatePending`. Resolves to 0 or -1.
   */
  async closeNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    return this.#ops.value('close', { node: this.#ops.resolve(node), terminatePending: options.terminatePending ?? false });
  }

  /** Closes the computation on `node` and sets it up again. Resolves to 0 or -1. */
  async resetupNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    return this.#ops.value('resetup', { node: this.#ops.resolve(node), terminatePending: options.terminatePending ?? false });
  }

  /**
   * Sets the CPUs this cluster uses on `node` (as JobCluster.setNodeCpus). The scheduler allows
   * it for an exclusive cluster or when it runs `--cooperative`; otherwise -1. Resolves to the
   * new CPU count, or -1.
   */
  async setNodeCpus(node: DispyNode | string, cpus: number): Promise<number> {
    if (!Number.isInteger(cpus)) return -1;
    const ip = this.#ops.resolve(node);
    const r = await this.#ops.value('set-cpus', { node: ip, cpus });
    const n = this.#jobs.nodes.get(ip);
    if (r >= 0 && n && n.cpus !== r) {
      n.cpus = r;
      n.updateTime = Date.now();
      this.#core.emit(NodeStatus.AvailInfo, n, null);
    }
    return r;
  }

  /**
   * This cluster's jobs running on `node`, as this client knows them or, with `fromNode`, as
   * the scheduler reports them.
   */
  async nodeJobs(node: DispyNode | string, options: { fromNode?: boolean } = {}): Promise<DispyJob[]> {
    const ip = this.#ops.resolve(node);
    if (options.fromNode) {
      const r = await this.#ops.op('node-jobs', { node: ip });
      if (!Array.isArray(r)) return [];
      return r.map((uid) => this.#jobs.jobs.get(uid)?.job).filter((j): j is DispyJob => j !== undefined);
    }
    if (this.#link.broken) throw this.#link.unusable();
    return [...this.#jobs.jobs.values()].filter((p) => p.running?.ipAddr === ip).map((p) => p.job);
  }

  /**
   * Sends a file to `node` into the computation's directory there (through the scheduler).
   * Resolves to 0, or -1 if the file is missing or too large, or the scheduler or node refused
   * it (the reason is logged).
   */
  async sendFile(path: string, node: DispyNode | string): Promise<number> {
    return this.#ops.sendFile(path, node, this.#fileOpts());
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
    if (!this.#link.broken) {
      const idle = await this.wait(terminate ? (timeout ?? 0) : timeout);
      if (!idle && !terminate) return false;
    }
    this.#closing = true;
    this.#jobs.cancelUnsent();
    const ch = this.#link.channel;
    if (!this.#link.broken && this.#computeId && ch && !ch.closed) {
      try {
        await this.#link.request({ t: 'close', computeId: this.#computeId, terminate: true });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'closing the computation on the scheduler failed');
      }
    }
    this.#jobs.terminateAll();
    this.#jobs.closeNodes();
    this.#closed = true;
    this.#link.close();
    await this.#core.drained();
    return true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close({ terminate: true });
  }

  /** The cluster's nodes in use and the number of jobs not yet ended. */
  status(): ClusterStatus {
    return { nodes: [...this.#jobs.nodes.values()].filter((n) => n.status === NodeStatus.Initialized), jobsPending: this.#jobs.jobs.size };
  }

  /** Prints (and returns) dispy's table of nodes, jobs, times and data; closed nodes included. */
  printStatus(wallTime?: number): string {
    return this.#core.printStatus(wallTime);
  }
}
