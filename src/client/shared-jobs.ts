/**
 * A SharedJobCluster's jobs and nodes as the scheduler tells of them: every job not yet ended,
 * those not yet sent (before the scheduler admitted the cluster, or until the next flush),
 * sending them (per-job files first), what the scheduler relays back (job statuses,
 * provisional results, job ends, files jobs send home, node statuses), and what a broken or
 * lost connection does to them. The connection itself is scheduler-link.ts.
 */
import type { Logger } from 'pino';
import { DispyError, Errors, jobException } from '../errors.js';
import type { Depend } from '../protocol/messages.js';
import type { FromScheduler } from '../protocol/scheduler-messages.js';
import type { ClusterCore } from './cluster-core.js';
import type { DispyCluster } from './dispy-cluster.js';
import type { DispyJob } from './dispy-job.js';
import { DispyNode } from './dispy-node.js';
import { Deque } from './deque.js';
import { transferFile, type LocalFile } from './file-transfer.js';
import { MAX_SEND_ATTEMPTS } from './job-ledger.js';
import { wireTag } from './option-rules.js';
import { cancelMessage, graceOf } from './per-node-options.js';
import type { ResultFiles } from './result-files.js';
import { Refused, type SchedChannel, type SchedReply, type SchedulerLink } from './scheduler-link.js';
import type { ClusterEmitter } from './status-events.js';
import { JobStatus, NodeStatus, isFinal, type DispyStatus, type FinalJobStatus } from './status.js';

/** A job not yet ended: queued here, or sent to the scheduler. */
export interface Pending {
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

export interface SharedJobsInit<C extends ClusterEmitter & DispyCluster> {
  cluster: C;
  core: ClusterCore<C>;
  link: SchedulerLink;
  log: Logger;
  resultFiles: ResultFiles;
  /** Where per-job files go on the nodes, and their size limit. */
  fileOpts: { destPath: string | null; maxFileSize: number };
}

export class SharedJobs<C extends ClusterEmitter & DispyCluster> {
  readonly #cluster: C;
  readonly #core: ClusterCore<C>;
  readonly #link: SchedulerLink;
  readonly #log: Logger;
  readonly #resultFiles: ResultFiles;
  readonly #fileOpts: { destPath: string | null; maxFileSize: number };
  /** Every job not yet ended, by uid. */
  readonly jobs = new Map<number, Pending>();
  /** Per job: sends the scheduler never got (lost with a broken connection) so far. */
  readonly #lostSends = new WeakMap<Pending, number>();
  /** Jobs not yet sent (before the scheduler admitted the cluster, or until the next flush). */
  readonly #unsent = new Deque<Pending>();
  #flushQueued = false;
  /** Cancels asked for while reconnecting: sent once resumed. */
  readonly #cancels = new Set<number>();
  /** Nodes in use (Initialized), by address. */
  readonly nodes = new Map<string, DispyNode>();
  /** Set once the scheduler admitted the cluster: jobs go out from then on. */
  scheduled = false;

  constructor(o: SharedJobsInit<C>) {
    this.#cluster = o.cluster;
    this.#core = o.core;
    this.#link = o.link;
    this.#log = o.log;
    this.#resultFiles = o.resultFiles;
    this.#fileOpts = o.fileOpts;
  }

  // ---- sending ----

  /** Takes a new job; it goes out after the caller's synchronous code once the cluster is scheduled. */
  add(p: Pending): void {
    this.jobs.set(p.job._uid, p);
    this.#unsent.push(p);
    if (this.scheduled && !this.#flushQueued) {
      // After the caller's synchronous code, so an `id` set right after submit travels too.
      this.#flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends every job not sent yet. */
  flush(): void {
    this.#flushQueued = false;
    const ch = this.#link.channel;
    const computeId = this.#cluster.computeId;
    if (!this.scheduled || this.#link.broken || !ch || ch.closed || !computeId) return;
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
      this.#link.channel?.send({
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
      const e = new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `job ${String(p.job.id)}'s arguments encode to ${p.args.length} bytes: scheduler ${this.#link.address} takes messages of at most ${this.#link.maxMessageSize} bytes (its --max-message-size)`,
      );
      this.#end(p, JobStatus.Cancelled, e);
      this.#core.emitError(e);
    }
  }

  /** A job with per-job files: they go to the scheduler first (kept there for the job), then the job. */
  async #sendWithFiles(p: Pending, computeId: string): Promise<void> {
    const job = p.job;
    try {
      for (const f of p.files!) {
        if (job.settled) return;
        await transferFile(this.#link.fileRequester(), computeId, f, { ...this.#fileOpts, job: job._uid });
      }
    } catch (err) {
      // A lost scheduler ends every pending job (Abandoned) on its own.
      if (job.settled || this.#link.broken) return;
      if (this.#link.reconnecting || !this.#link.channel) {
        // The connection broke: the job (files and all) goes again once resumed.
        p.sent = false;
        this.#unsent.unshift(p);
        return;
      }
      const e =
        err instanceof Refused ? err.error : err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', (err as Error).message);
      this.#log.warn({ job: job._uid, code: e.code }, `a file of the job could not be sent: ${e.message}`);
      job.exception = jobException(`job cancelled: sending its file failed: ${e.code}: ${e.message}`);
      job.endTime = Date.now();
      this.settle(p, JobStatus.Cancelled, null);
      return;
    }
    if (job.settled || this.#link.broken) return;
    this.#sendJob(p, computeId);
  }

  /**
   * Cancels a job: one not yet sent ends Cancelled at once; a sent one is cancelled by the
   * scheduler (or once reconnected). 0, or -1 if it is not pending here or there is no connection.
   */
  cancel(job: DispyJob, grace: number): number {
    const p = this.jobs.get(job._uid);
    if (!p) return -1;
    if (!p.sent) {
      job.endTime = Date.now();
      this.settle(p, JobStatus.Cancelled, null);
      return 0;
    }
    if (this.#link.reconnecting) {
      this.#cancels.add(job._uid);
      return 0;
    }
    return this.#link.send(cancelMessage(job._uid, grace)) ? 0 : -1;
  }

  // ---- a broken connection ----

  /** The jobs sent and not ended (what the resume request names). */
  sentUids(): number[] {
    return [...this.jobs.values()].filter((p) => p.sent && !p.job.settled).map((p) => p.job._uid);
  }

  /** Resumed on `ch`: jobs the scheduler never got go again, cancels asked for meanwhile go out. */
  resumed(reply: SchedReply, ch: SchedChannel): void {
    // Jobs that never reached the scheduler go again, in their order, ahead of newer ones.
    const again = new Set(reply.unknown ?? []);
    const resend = [...this.jobs.values()].filter((p) => again.has(p.job._uid) && !p.job.settled);
    for (const p of resend.reverse()) {
      if (this.#givenUp(p)) continue;
      p.sent = false;
      this.#unsent.unshift(p);
    }
    for (const uid of this.#cancels) {
      const p = this.jobs.get(uid);
      if (p) ch.send(cancelMessage(uid, graceOf(p.job)));
    }
    this.#cancels.clear();
    this.#log.warn({ resent: resend.length }, `reconnected to scheduler ${this.#link.address}; the computation resumed`);
    this.flush();
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
      `job ${String(p.job.id)} given up after ${n} attempts to hand it to scheduler ${this.#link.address}: each time the connection broke before the scheduler got it`,
    );
    this.#end(p, JobStatus.Abandoned, e);
    this.#core.emitError(e);
    return true;
  }

  /** The scheduler is lost: every pending job ends Abandoned naming `err`, and every node Closed. */
  abandonAll(err: DispyError): void {
    this.#unsent.clear();
    const now = Date.now();
    for (const p of [...this.jobs.values()]) {
      const node = p.running;
      p.job.exception = jobException(`job abandoned: ${err.message}`);
      p.job.endTime = now;
      p.job._errorCode = err.code;
      this.settle(p, JobStatus.Abandoned, node);
    }
    this.closeNodes();
  }

  /** The cluster closes: jobs not yet sent end Cancelled. */
  cancelUnsent(): void {
    for (const p of [...this.jobs.values()]) {
      if (p.sent) continue;
      p.job.exception = jobException('job cancelled: cluster closed');
      p.job.endTime = Date.now();
      this.settle(p, JobStatus.Cancelled, null);
    }
  }

  /** The cluster closed: jobs still pending end Terminated. */
  terminateAll(): void {
    for (const p of [...this.jobs.values()]) {
      p.job.exception = Errors.jobClusterClosed();
      p.job.endTime = Date.now();
      this.settle(p, JobStatus.Terminated, p.running);
    }
  }

  /** Every node still in use: Closed. */
  closeNodes(): void {
    for (const n of [...this.nodes.values()]) {
      this.nodes.delete(n.ipAddr);
      n.busy = 0;
      n.status = NodeStatus.Closed;
      n.updateTime = Date.now();
      this.#core.emit(NodeStatus.Closed, n, null);
    }
  }

  // ---- what the scheduler relays ----

  /** Job and node news from the scheduler (the cluster handles `closed`). */
  onMessage(msg: FromScheduler, computeId: string | null): void {
    switch (msg.t) {
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
        const ch = this.#link.channel;
        void this.#resultFiles.receive('scheduler', this.jobs.get(msg.uid)?.job ?? null, msg).then((a) => {
          if (ch && !ch.closed) ch.send({ t: 'job-file-ack', fid: msg.fid, ...a });
        });
        return;
      }
      case 'node-status':
        if (msg.computeId === computeId) this.#onNodeStatus(msg);
        return;
    }
  }

  /** The node at `ip` (one the scheduler has not described yet gets a placeholder). */
  #nodeAt(ip: string): DispyNode {
    let n = this.#core.everyNode.get(ip);
    if (!n) {
      n = new DispyNode(ip, 0, '', this.#cluster);
      this.#core.everyNode.set(ip, n);
      this.nodes.set(ip, n);
    }
    return n;
  }

  #onJobStatus(msg: Extract<FromScheduler, { t: 'job-status' }>): void {
    const p = this.jobs.get(msg.uid);
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
      this.#core.emit(JobStatus.Running, node, job);
    } else if (msg.status === JobStatus.Created) {
      // Queued again on the scheduler (its node died and the cluster is reentrant).
      const node = p.running ?? (msg.ip ? (this.#core.everyNode.get(msg.ip) ?? null) : null);
      if (p.running) p.running.busy = Math.max(0, p.running.busy - 1);
      p.running = null;
      job.status = JobStatus.Created;
      job.startTime = null;
      this.#core.emit(JobStatus.Created, node, job);
    } else {
      this.#log.debug({ uid: msg.uid, status: msg.status }, 'job status ignored');
    }
  }

  #onProvisional(msg: Extract<FromScheduler, { t: 'provisional' }>): void {
    const p = this.jobs.get(msg.uid);
    if (!p) return;
    if (!this.#core.provisional(p.job, msg.result, msg.uid)) return;
    const node = p.running ?? (msg.ip ? this.#nodeAt(msg.ip) : null);
    this.#core.emit(JobStatus.ProvisionalResult, node, p.job._snapshot());
  }

  #onJobEnd(msg: Extract<FromScheduler, { t: 'job-end' }>): void {
    const p = this.jobs.get(msg.uid);
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
      this.#core.emit(JobStatus.Running, node, job);
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
    this.settle(p, this.#core.ended(job, msg, status), node);
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
        this.nodes.set(n.ipAddr, n);
        break;
      case NodeStatus.Closed:
        n.status = NodeStatus.Closed;
        this.nodes.delete(n.ipAddr);
        break;
      case NodeStatus.AvailInfo:
        break;
      default:
        this.#log.debug({ node: n.ipAddr, status: msg.status }, 'node status ignored');
        return;
    }
    this.#core.emit(msg.status as DispyStatus, n, null);
  }

  /** Ends a job with `e` said in its exception and code. */
  #end(p: Pending, status: FinalJobStatus, e: DispyError): void {
    p.job.exception = jobException(e.message);
    p.job.endTime = Date.now();
    p.job._errorCode = e.code;
    this.settle(p, status, null);
  }

  settle(p: Pending, status: FinalJobStatus, node: DispyNode | null): void {
    const job = p.job;
    if (job.settled) return;
    this.jobs.delete(job._uid);
    this.#core.settle(job, status, node);
  }
}
