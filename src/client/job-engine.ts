/**
 * @internal The engine behind a JobCluster (the public class holds it in a private field and
 * delegates to it): the computation in its wire form, the job ledger, the node sessions, what
 * the node links report about jobs, and closing. The dispatcher drives it (`dispatchOne`,
 * `headOrder`: job-dispatch.ts), node links report to it (LinkUser), and `dispyts scheduler`
 * submits already-encoded jobs to it through relay-cluster.ts. Nothing here is published.
 */
import { rmSync } from 'node:fs';
import { isIP } from 'node:net';
import pino, { type Logger } from 'pino';
import { DispyError, Errors, jobException } from '../errors.js';
import type { Computation, Depend, JobFile, NodeMessage } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import { resolveSecret } from '../protocol/secret.js';
import { loadTls } from '../protocol/tls.js';
import { ClusterCore, nextJobUid } from './cluster-core.js';
import type { JobClusterOptions } from './cluster-options.js';
import { buildComputation, hookSources, type ModuleComputation } from './computation.js';
import { type Dispatchable, registerCluster, requestPump, unregisterCluster } from './dispatcher.js';
import type { DispyJob } from './dispy-job.js';
import { DispyNode } from './dispy-node.js';
import { normalizeDestPath, type LocalFile } from './file-transfer.js';
import type { ProgramComputation } from './interpreter.js';
import type { JobCluster } from './job-cluster.js';
import { dispatchOne, headOrder } from './job-dispatch.js';
import { JobLedger, type Queued, type Sent } from './job-ledger.js';
import { computationKind } from './job-scope.js';
import type { Credentials, JobMessage, LinkUser, NodeLink } from './node-link.js';
import type { NodeSession, SessionHost } from './node-session.js';
import { NodeFinder } from './node-finder.js';
import { NodeSessions } from './node-sessions.js';
import { NodeWatch } from './node-watch.js';
import { type JobFileAnswer, ResultFiles } from './result-files.js';
import { JobStatus, type DispyStatus } from './status.js';
import { nextAvgMs } from './dispatch-window.js';
import { requestTimeout } from './timeouts.js';

/**
 * @internal A computation already in its wire form, with what goes with it, for a cluster
 * that runs another program's computation (`dispyts scheduler`, relay-cluster.ts). Such a
 * cluster leaves results and provisional results as the encoded bytes the node sent.
 */
export interface PrebuiltComputation {
  computation: Computation;
  /** Local files sent to every node before setup, with their names on the nodes. */
  files: LocalFile[];
  /** Source of `setup`, or null. */
  setup: string | null;
  /** `setup`'s arguments, already encoded (payload codec), or null. */
  setupArgs: Uint8Array | null;
  /** Source of `cleanup`, or null. */
  cleanup: string | null;
  /** Source of `nodeSetup`, or null. */
  nodeSetup?: string | null;
  /** Whether nodes delete the computation's files when it closes. */
  cleanupFiles: boolean;
  /** The cluster's destPath on nodes, or null. */
  destPath: string | null;
  /** The client program it comes from (nodes give each program runners of its own), or null. */
  program: string | null;
}

/** @internal What a relaying cluster (relay-cluster.ts) runs and where its jobs' files go. */
export interface RelaySource {
  computation: PrebuiltComputation;
  /** A part of a file a job sends home: relayed to the program behind the scheduler; resolves with its answer. */
  jobFile(job: DispyJob, msg: JobFile): Promise<JobFileAnswer>;
}

/** @internal What a job carries besides its arguments: per-job files, maxRuntime, its own code. */
export interface JobExtras {
  files: LocalFile[];
  maxRuntime?: number;
  depends?: Depend[];
}

/** @internal */
export type AnyComputation = ((...args: never[]) => unknown) | string | string[] | ProgramComputation | ModuleComputation;

/** @internal */
export class JobEngine implements LinkUser, Dispatchable, SessionHost {
  /** The public cluster: what events, jobs and nodes name, and what NodeAllocate.allocate gets. */
  readonly cluster: JobCluster;
  readonly name: string;
  readonly computeId: string;
  readonly log: Logger;
  readonly opts: JobClusterOptions;
  /** The wire form of the computation (a module is bundled asynchronously). */
  readonly computation: Promise<Computation>;
  /** Local files to ship to every node before setup (program file, file depends). */
  readonly computationFiles: string[];
  /** Set for a cluster relaying another program's computation: results stay encoded. */
  readonly prebuilt: PrebuiltComputation | null;
  /** The cluster's destPath on nodes (dispy's dest_path), normalized. */
  readonly destPath: string | null;
  /** What submitWith adds to a job: its per-job files and its maxRuntime. */
  readonly jobExtras = new WeakMap<DispyJob, JobExtras>();
  /** The kind of computation, for what a job's depends may hold (job-scope.ts). */
  readonly kind: Computation['kind'] | null;
  /** Files jobs send home (result-files.ts). */
  readonly resultFiles: ResultFiles;
  /** Sources of setup and cleanup, shipped with the computation. */
  readonly hooks: { setup: string | null; cleanup: string | null };
  readonly codec: PayloadCodec;
  readonly creds: Credentials;
  /** Where each pending job is, and the rules that move it (job-ledger.ts). */
  readonly ledger = new JobLedger<NodeSession>();
  /** Nodes already reported (error event) for refusing a job by size. */
  readonly sizeReported = new Set<string>();
  /** Ids, pending count, events, settling, waiters (cluster-core.ts). */
  readonly core: ClusterCore<JobCluster>;
  /** Where nodes come from: specs, discovery, followed names (node-finder.ts). */
  readonly finder: NodeFinder;
  /** The nodes' sessions (node-sessions.ts). */
  readonly sessions: NodeSessions;
  /** Says why no node is usable, and gives up after nodeTimeout (node-watch.ts). */
  readonly watch: NodeWatch;
  closing = false;
  closed = false;

  constructor(cluster: JobCluster, computation: AnyComputation, options: JobClusterOptions) {
    this.cluster = cluster;
    this.opts = options;
    const pre = options._relay?.computation ?? null;
    this.prebuilt = pre;
    this.kind = pre ? pre.computation.kind : computationKind(computation);
    const built = pre
      ? { name: pre.computation.name || 'compute', wire: Promise.resolve(pre.computation), classes: [], files: [] }
      : buildComputation(computation, options);
    this.name = options.name ?? built.name;
    this.log = options.logger ?? pino({ level: options.logLevel ?? 'warn', base: { cluster: this.name } }, pino.destination(2));
    this.resultFiles = new ResultFiles({ dir: options.resultsDir ?? process.cwd(), maxFileSize: options.maxFileSize ?? 0, log: this.log });
    this.computation = built.wire;
    // Failures surface when a node is set up (an error event); nothing is left unhandled.
    this.computation.catch(() => undefined);
    this.computationFiles = built.files;
    this.destPath = normalizeDestPath(pre ? (pre.destPath ?? undefined) : options.destPath, this.log);
    this.hooks = pre ? { setup: pre.setup, cleanup: pre.cleanup } : hookSources(options);
    this.codec = new PayloadCodec(built.classes);
    // A relaying cluster forwards results as they came: no codec for them.
    this.core = new ClusterCore<JobCluster>(cluster, {
      callbacks: options,
      log: this.log,
      codec: pre ? null : this.codec,
      onActive: (on) => this.#setActive(on),
    });
    this.computeId = `${Date.now().toString(36)}-${nextJobUid().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    // Unreadable or unusable TLS files fail here (DISPY_ERR_TLS), not at the first connection.
    this.creds = { secret: resolveSecret(options.secret), tls: loadTls(options, 'client') };
    this.finder = new NodeFinder(this);
    this.sessions = new NodeSessions(this);
    this.watch = new NodeWatch(this);
  }

  /** Registers with the dispatcher and starts looking for nodes (after the public class is built). */
  start(): void {
    registerCluster(this);
    this.sessions.start();
  }

  // ---- SessionHost ----

  get user(): LinkUser {
    return this;
  }

  get pending(): number {
    return this.core.pending;
  }

  forget(session: NodeSession, reason: DispyError | null): void {
    this.sessions.forget(session, reason);
  }

  emit(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    this.core.emit(status, node, job);
  }

  emitError(err: DispyError): void {
    this.core.emitError(err);
  }

  pump(): void {
    requestPump();
  }

  // ---- submitting ----

  /** Queues a job (arguments encoded, checked against maxArgsSize); `pinTo`: the only node it may run on. */
  enqueue(id: unknown, pinTo: string | null, args: unknown[], bytes: Uint8Array, maxRuntime: number | undefined): DispyJob {
    if (this.closing) throw Errors.clusterClosed(this.name);
    const checked = this.core.checkArgs(bytes, this.opts.maxArgsSize);
    const job = this.core.newJob<unknown>(id, args) as DispyJob;
    const item: Queued = maxRuntime === undefined ? { job, args: checked } : { job, args: checked, maxRuntime };
    this.ledger.add(item, pinTo);
    requestPump();
    return job;
  }

  /** The address of `node` (a DispyNode, address or name) a job is pinned to; DISPY_ERR_NODE_UNKNOWN if it is not the cluster's. */
  pinTarget(node: DispyNode | string): string {
    const s = this.sessions;
    const ip = node instanceof DispyNode ? node.ipAddr : (s.nodeOf(node)?.node.ipAddr ?? (isIP(node) ? node : null));
    if (!ip || (!s.nodes.has(ip) && !this.finder.specFor(ip))) {
      const named = String(node instanceof DispyNode ? node.ipAddr : node);
      throw new DispyError('DISPY_ERR_NODE_UNKNOWN', `node ${named} is not a node of cluster ${this.name}`);
    }
    return ip;
  }

  // ---- Dispatchable (job-dispatch.ts) ----

  /** @internal Submission order of the earliest queued job (the scheduler's `fsfs` policy), or null. */
  headOrder(): number | null {
    return headOrder(this);
  }

  /** @internal Sends one queued job to a node if any has room; true if it did. */
  dispatchOne(): boolean {
    return dispatchOne(this);
  }

  // ---- LinkUser: what the nodes' links report ----

  /** @internal A part of a file a job sends home (dispySendFile), written under resultsDir. */
  onJobFile(link: NodeLink, msg: JobFile): Promise<JobFileAnswer> {
    const s = this.ledger.sent.get(msg.uid);
    const job = s && s.cn.link === link ? s.job : null;
    const relay = this.opts._relay;
    if (job && relay) return relay.jobFile(job, msg);
    return this.resultFiles.receive(link.host, job, msg);
  }

  /** @internal */
  onJobMessage(link: NodeLink, msg: JobMessage, bytes: number): void {
    const s = this.ledger.sent.get(msg.uid);
    if (!s || s.cn.link !== link) return;
    const { job, cn } = s;
    const node = cn.node;
    node.rx += bytes;
    node.updateTime = Date.now();
    switch (msg.t) {
      case 'started':
        s.started = true;
        node.busy++;
        job.status = JobStatus.Running;
        job.startTime = msg.startTime;
        job.ipAddr = node.ipAddr;
        this.core.emit(JobStatus.Running, node, job);
        return;
      case 'provisional':
        if (this.core.provisional(job, msg.result, msg.uid)) this.core.emit(JobStatus.ProvisionalResult, node, job._snapshot());
        return;
      case 'nak':
        this.#handedBack(s, msg.uid, msg.reason);
        return;
      case 'done':
        this.ledger.sent.delete(msg.uid);
        cn.inflight--;
        if (s.started) node.busy--;
        this.#finishFromNode(s, msg);
        requestPump();
        return;
    }
  }

  /** The node handed the job back unstarted (a nak). */
  #handedBack(s: Sent<NodeSession>, uid: number, reason: string): void {
    const { job, cn } = s;
    this.ledger.sent.delete(uid);
    cn.inflight--;
    if (reason !== 'full' && reason !== 'draining') {
      cn.allocated = false;
      this.log.info({ node: cn.node.ipAddr, reason }, 'node refused a job');
    }
    // It runs elsewhere (a cancelled one never runs), unless the cluster is closing or the job
    // was pinned to a node that closeNode closed.
    if (this.closing) this.core.cancelLocal(job, 'cluster closed');
    else if (s.pinned && cn.closingNode?.kind === 'close') this.core.cancelLocal(job, `its node ${cn.node.ipAddr} was closed`);
    else this.requeue(s);
    requestPump();
  }

  /** @internal */
  onPulse(link: NodeLink, msg: Extract<NodeMessage, { t: 'pulse' }>): void {
    this.sessions.onPulse(link, msg);
  }

  /** @internal */
  onComputationClosed(link: NodeLink, computeId: string, reason: string): void {
    if (computeId === this.computeId) this.sessions.onComputationClosed(link, reason);
  }

  /** @internal */
  onLinkClosed(link: NodeLink, reason: DispyError | null): void {
    this.sessions.onLinkClosed(link, reason);
  }

  /** @internal heartbeatInterval for the node links: pulseInterval. */
  get heartbeatInterval(): number | undefined {
    return this.opts.pulseInterval;
  }

  /** @internal Whether this cluster keeps its connections to nodes ref'd: while jobs are pending. */
  get keepsAlive(): boolean {
    return this.core.pending > 0 && !this.closed;
  }

  // ---- what becomes of a job ----

  requeue(s: Sent<NodeSession>): void {
    // A job whose cancel was asked for runs nowhere again, whatever brought it back.
    if (this.ledger.requeue(s, s.cn.node.ipAddr) === 'cancel') this.core.cancelLocal(s.job, 'cancelled by the program');
  }

  #finishFromNode(s: Sent<NodeSession>, msg: Extract<NodeMessage, { t: 'done' }>): void {
    const { job, cn } = s;
    const node = cn.node;
    job.endTime = msg.endTime;
    if (msg.startTime !== null) {
      job.startTime = msg.startTime;
      job.ipAddr = node.ipAddr;
      node.jobsDone++;
      const ms = Math.max(0, msg.endTime - msg.startTime);
      node.jobTime += ms / 1000;
      cn.avgMs = nextAvgMs(cn.avgMs, ms);
      node.cpuUsed += msg.cpuTime;
    }
    const status = msg.status === 'Finished' ? JobStatus.Finished : msg.status === 'Cancelled' ? JobStatus.Cancelled : JobStatus.Terminated;
    this.core.settle(job, this.core.ended(job, msg, status), node);
  }

  /**
   * A job whose node lost it: re-run (never started, or reentrant) or Abandoned. `lost`: lost
   * with a broken connection (counted: after MAX_SEND_ATTEMPTS such losses it is given up),
   * not taken back by closeNode.
   */
  loseJob(s: Sent<NodeSession>, reason: DispyError | null, lost = true): void {
    const node = s.cn.node;
    switch (this.ledger.lose(s, node.ipAddr, { lost, reentrant: this.opts.reentrant === true, closing: this.closing })) {
      case 'requeue':
        return;
      case 'cancel':
        this.core.cancelLocal(s.job, 'cancelled by the program');
        return;
      case 'give-up':
        this.giveUpJob(s, reason);
        return;
      case 'rerun':
        s.job.status = JobStatus.Created;
        s.job.startTime = null;
        this.core.emit(JobStatus.Created, node, s.job);
        return;
      case 'abandon':
        s.job.exception = jobException(`node ${node.ipAddr} was lost while running the job${reason ? ` (${reason.message})` : ''}`);
        s.job.endTime = Date.now();
        this.core.settle(s.job, JobStatus.Abandoned, node);
    }
  }

  /** The ledger gave the job up (lost unstarted MAX_SEND_ATTEMPTS times): Abandoned, DISPY_ERR_UNDELIVERABLE, with an error event. */
  giveUpJob(s: Sent<NodeSession>, reason: DispyError | null): void {
    const job = s.job;
    const n = this.ledger.lostSends(job);
    const ip = s.cn.node.ipAddr;
    const e = new DispyError(
      'DISPY_ERR_UNDELIVERABLE',
      `job ${String(job.id)} given up after ${n} attempts to hand it to a node: each time the connection broke before the node started it (last: node ${ip}${reason ? `: ${reason.message}` : ''})`,
    );
    job.exception = jobException(e.message);
    job.endTime = Date.now();
    job._errorCode = e.code;
    this.log.warn({ node: ip, job: String(job.id), attempts: n }, 'job given up: its sends kept being lost');
    this.core.settle(job, JobStatus.Abandoned, s.cn.node);
    this.core.emitError(e);
  }

  /**
   * Pending jobs keep the program alive; an idle cluster does not (a script that forgets
   * close() still exits, and its nodes serve the next program once it is gone). Refs or unrefs
   * the connections to nodes, discovery's sockets and the retry and reconnection timers, and
   * runs the watch that says why no node is usable.
   */
  #setActive(on: boolean): void {
    this.sessions.setRef(on);
    if (this.closing) return;
    this.watch.setActive(on);
  }

  // ---- closing ----

  /** close() once the wait is over (or cut short by `terminate`): see JobCluster.close. */
  async close(timeout: number | undefined, started: number): Promise<void> {
    this.closing = true;
    this.watch.stop();
    for (const item of this.ledger.takeQueued()) this.core.cancelLocal(item.job, 'cluster closed');
    this.sessions.stopTimers();
    // A node that does not answer holds close() no longer than its timeout (at least 1 s, so
    // live nodes can terminate the jobs), or the request timeout when none was given.
    const replyWithin =
      timeout === undefined ? requestTimeout() : Math.min(requestTimeout(), Math.max(1, timeout - (Date.now() - started) / 1000));
    await this.sessions.closeComputation(replyWithin);
    for (const s of this.ledger.sent.values()) {
      s.job.exception = Errors.jobClusterClosed();
      s.job.endTime = Date.now();
      this.core.settle(s.job, JobStatus.Terminated, s.cn.node);
    }
    this.ledger.sent.clear();
    this.sessions.closeAll();
    this.closed = true;
    unregisterCluster(this);
    if (this.opts.recoverFile) rmSync(this.opts.recoverFile, { force: true });
    await this.core.drained();
  }
}
