/**
 * One client's computation inside the scheduler: registered by `compute`, its files received,
 * admitted by `schedule`, then run by one real JobCluster of this process (node links, setup,
 * heartbeats, dead nodes, re-runs and the HTTP server come with it), built by relay-cluster.ts. Jobs arrive with their
 * arguments encoded by the client and go back with their results as the node sent them; the
 * cluster's events are relayed, in order, to the owning client.
 *
 * Its parts: the cluster built from `compute` (computation-cluster.ts), where its files live
 * (computation-files.ts), the job-ends it sends (job-ends.ts) and `node-op` (computation-node-op.ts).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import type { z } from 'zod';
import type { ClusterStatusEvent, JobCluster } from '../client/job-cluster.js';
import type { RelayCluster } from '../client/relay-cluster.js';
import type { DispyJob } from '../client/dispy-job.js';
import type { NodeAllocate } from '../client/node-allocate.js';
import { JobStatus, isFinal } from '../client/status.js';
import { DispyError, asDispyError, type DispyErrorCode, Errors } from '../errors.js';
import type { FromScheduler, sjobSchema } from '../protocol/scheduler-messages.js';
import { type ComputeMessage, computationCluster, requiredFiles } from './computation-cluster.js';
import { isFile, jobFileName } from './computation-files.js';
import { type NodeOpMessage, runNodeOp } from './computation-node-op.js';
import { type AwayEnds, type CloseNote, type JobEnd, MAX_TEXT, finishedJob, fitEnd, keepAway, refusedJob } from './job-ends.js';
import { nodeView } from './node-view.js';
import type { ComputationOwner, SchedulerContext } from './scheduler-context.js';
import { relayJobFile } from './job-file-relay.js';

export type SchedulerJobMessage = z.infer<typeof sjobSchema>;

export type ComputationState = 'registered' | 'waiting' | 'running' | 'closing' | 'closed';

export interface SharedComputationInit {
  ctx: SchedulerContext;
  owner: ComputationOwner;
  computeId: string;
  name: string;
  msg: ComputeMessage;
  /** The nodes it may use (node-scope.ts). */
  nodes: NodeAllocate[];
  /** Directory of the files the client sends for it. */
  dir: string;
}

export class SharedComputation {
  readonly computeId: string;
  readonly name: string;
  readonly exclusive: boolean;
  /** The client connection it belongs to (another one after the client resumed it). */
  owner: ComputationOwner;
  /** Its files are kept under the key of the connection that registered it. */
  readonly fileKey: string;
  /** What a client must show to resume it after a broken connection. */
  readonly resumeKey = randomBytes(24).toString('hex');
  readonly dir: string;
  state: ComputationState = 'registered';
  cluster: JobCluster | null = null;
  /** The scheduler's handle on the cluster: encoded jobs in, hold while the client is away. */
  #relay: RelayCluster | null = null;
  readonly #ctx: SchedulerContext;
  readonly #msg: ComputeMessage;
  readonly #nodes: NodeAllocate[];
  /** Jobs that came before the computation was admitted. */
  #held: SchedulerJobMessage[] = [];
  /** The cluster's job uid -> the client's uid. */
  readonly #uids = new Map<number, number>();
  /** The client's uid -> the cluster's job. */
  readonly #jobs = new Map<number, DispyJob>();
  /** Names of the per-job files kept for a job (client uid), until it ends. */
  readonly #jobFiles = new Map<number, readonly string[]>();
  /** Why the scheduler closed the computation on its own (jobs it ended get this code). */
  #note: CloseNote | null = null;
  #closing: Promise<void> | null = null;
  #terminate = false;
  #escalate: (() => void) | null = null;
  #zombieTimer: NodeJS.Timeout | null = null;
  /** Seconds its client was given to come back, once it was gone (null while it is here). */
  #goneFor: number | null = null;
  /** While its client is gone: the job-ends it missed (bounded), delivered if it resumes. */
  #away: AwayEnds | null = null;

  constructor(init: SharedComputationInit) {
    this.#ctx = init.ctx;
    this.owner = init.owner;
    this.fileKey = init.owner.key;
    this.computeId = init.computeId;
    this.name = init.name;
    this.#msg = init.msg;
    this.exclusive = init.msg.exclusive;
    this.#nodes = init.nodes;
    this.dir = init.dir;
  }

  /** Whether the computation was closed or is closing. */
  get ended(): boolean {
    return this.state === 'closing' || this.state === 'closed';
  }

  /**
   * `schedule`: checks that every announced file arrived, waits for admission (an exclusive
   * computation until no other one is active), then starts the cluster.
   */
  async schedule(): Promise<void> {
    if (this.state === 'running') return;
    if (this.state === 'waiting')
      throw new DispyError('DISPY_ERR_BAD_REQUEST', `computation ${this.name} is already waiting to be scheduled`);
    if (this.ended) throw Errors.computationClosed(this.name);
    for (const name of requiredFiles(this.#msg)) {
      if (!isFile(join(this.dir, name)))
        throw new DispyError(
          'DISPY_ERR_BAD_REQUEST',
          `file \`${name}\` of computation ${this.name} has not been sent completely (file-begin and file-chunk it before schedule)`,
        );
    }
    this.state = 'waiting';
    if (this.exclusive || this.#ctx.admission.waiting.length || [...this.#ctx.admission.active].some((c) => c.exclusive)) {
      this.#ctx.log.info({ computation: this.name, exclusive: this.exclusive }, 'computation waits for admission');
    }
    await this.#ctx.admission.request(this);
    if (this.state !== 'waiting') {
      this.#ctx.admission.release(this);
      throw new DispyError('DISPY_ERR_CLUSTER_CLOSED', `computation ${this.name} was closed while it waited to be scheduled`);
    }
    try {
      this.#start();
    } catch (err) {
      const e = asDispyError(err);
      this.#ctx.log.error({ computation: this.name, code: e.code, err: e.message }, 'computation could not start');
      void this.close(true, { code: e.code, reason: `it could not start: ${e.message}` });
      throw e;
    }
  }

  #start(): void {
    const relay = computationCluster(
      this.#ctx,
      { name: this.name, dir: this.dir, fileKey: this.fileKey, msg: this.#msg, nodes: this.#nodes },
      // Files jobs send home go to the program (job-file-relay.ts).
      (job, msg) => {
        const uid = this.#uids.get(job._uid);
        if (uid === undefined || this.#away)
          return Promise.resolve({ offset: 0, error: { code: 'DISPY_ERR_CONNECTION', message: 'the client program is away' } });
        return relayJobFile(this.owner.key, job.ipAddr ?? '', (m) => this.owner.send(m), msg, uid);
      },
    );
    const cluster = relay.cluster;
    this.#relay = relay;
    this.cluster = cluster;
    this.state = 'running';
    cluster.on('status', this.#onStatus);
    cluster.on('error', (err) => this.#ctx.log.warn({ cluster: this.name, code: err.code }, err.message));
    this.#ctx.clusterStarted(cluster, this.exclusive);
    this.#ctx.log.info(
      { computation: this.name, computeId: this.computeId, client: this.owner.clientIp, exclusive: this.exclusive },
      'computation scheduled',
    );
    const held = this.#held;
    this.#held = [];
    for (const j of held) this.#submit(j);
  }

  /** A job of this computation; its end (or refusal) is reported with job-end. */
  submit(msg: SchedulerJobMessage): void {
    if (this.ended) {
      this.#refuse(
        msg.uid,
        this.#note?.code ?? 'DISPY_ERR_CLUSTER_CLOSED',
        `computation ${this.name} is closed${this.#note ? ` (${this.#note.reason})` : ''}`,
      );
      return;
    }
    if (this.state !== 'running') {
      this.#held.push(msg);
      return;
    }
    this.#submit(msg);
  }

  #submit(msg: SchedulerJobMessage): void {
    const relay = this.#relay!;
    let job: DispyJob;
    try {
      const files = (msg.files ?? []).map((name) => ({ path: this.#jobFile(msg.uid, name), name: name.slice(name.lastIndexOf('/') + 1) }));
      job = relay.submit(msg.args, {
        id: msg.tag ?? msg.uid,
        ...(msg.node !== undefined ? { node: msg.node } : {}),
        ...(msg.maxRuntime !== undefined ? { maxRuntime: msg.maxRuntime } : {}),
        ...(files.length ? { files } : {}),
        ...(msg.depends?.length ? { depends: msg.depends } : {}),
      });
    } catch (err) {
      const e = asDispyError(err);
      this.#dropJobFiles(msg.uid, msg.files);
      this.#refuse(msg.uid, e.code, e.message);
      return;
    }
    this.#uids.set(job._uid, msg.uid);
    this.#jobs.set(msg.uid, job);
    if (msg.files?.length) this.#jobFiles.set(msg.uid, msg.files);
  }

  /** The path of a per-job file the client sent completely for job `uid`, or an error. */
  #jobFile(uid: number, name: string): string {
    const path = join(this.dir, jobFileName(uid, name));
    if (!isFile(path))
      throw new DispyError(
        'DISPY_ERR_BAD_REQUEST',
        `file \`${name}\` of job ${uid} has not been sent completely (file-begin and file-chunk it, naming the job, before the job)`,
      );
    return path;
  }

  /** Job `uid` ended or was refused: the per-job files kept for it go. */
  #dropJobFiles(uid: number, names: readonly string[] | undefined): void {
    if (!names?.length) return;
    this.#jobFiles.delete(uid);
    // The store deletes them, and the job's folder once empty.
    this.#ctx.files.jobEnded(
      this.fileKey,
      this.computeId,
      uid,
      names.map((n) => jobFileName(uid, n)),
    );
  }

  #refuse(uid: number, code: DispyErrorCode, message: string): void {
    this.#toOwner(refusedJob(uid, code, message));
    this.owner.jobGone(uid);
  }

  /** `cancel`: a queued job ends Cancelled, a running one is terminated on its node. */
  cancel(uid: number, grace?: number): void {
    const i = this.#held.findIndex((j) => j.uid === uid);
    if (i >= 0) {
      const [held] = this.#held.splice(i, 1);
      this.#dropJobFiles(uid, held!.files);
      this.#refuse(uid, 'DISPY_ERR_JOB_CANCELLED', 'job cancelled before its computation was scheduled');
      return;
    }
    const job = this.#jobs.get(uid);
    if (job && this.cluster) void this.cluster.cancel(job, { grace: grace ?? 0 });
  }

  /** The cluster's events, relayed to the client in the order the cluster emits them. */
  readonly #onStatus = (e: ClusterStatusEvent): void => {
    const { status, node, job } = e;
    if (!job) {
      if (node) this.#toOwner({ t: 'node-status', computeId: this.computeId, status, node: nodeView(node) });
      return;
    }
    const uid = this.#uids.get(job._uid);
    if (uid === undefined) return;
    switch (status) {
      case JobStatus.Created:
        // Re-queued after its node was lost (reentrant); the first Created is the client's own.
        if (node) this.#toOwner({ t: 'job-status', uid, status, ip: node.ipAddr, startTime: null });
        return;
      case JobStatus.Running:
        this.#toOwner({ t: 'job-status', uid, status, ip: job.ipAddr, startTime: job.startTime });
        return;
      case JobStatus.ProvisionalResult:
        if (!(job.result instanceof Uint8Array)) return;
        // The client takes no message larger than ours.
        if (job.result.byteLength + 1024 > this.#ctx.maxMessageSize) {
          this.#ctx.log.warn(
            { computation: this.name, uid, bytes: job.result.byteLength },
            'provisional result too large for the client: not sent',
          );
          return;
        }
        this.#toOwner({ t: 'provisional', uid, result: job.result, ip: job.ipAddr ?? node?.ipAddr ?? null });
        return;
    }
    if (!isFinal(status)) return;
    this.#uids.delete(job._uid);
    this.#jobs.delete(uid);
    this.#dropJobFiles(uid, this.#jobFiles.get(uid));
    const end = finishedJob(job, uid, status, node?.ipAddr ?? null, this.#note);
    this.#toOwner(fitEnd(end, this.#ctx.maxMessageSize, this.#ctx.log, this.name));
    this.owner.jobGone(uid);
  };

  /** `node-op`: the JobCluster method of the same name; resolves to its return value. */
  async nodeOp(msg: NodeOpMessage): Promise<number | number[]> {
    const cluster = this.cluster;
    if (!cluster || this.state !== 'running') {
      throw new DispyError(
        this.ended ? 'DISPY_ERR_CLUSTER_CLOSED' : 'DISPY_ERR_BAD_REQUEST',
        `computation ${this.name} is ${this.ended ? 'closed' : 'not scheduled yet'}`,
      );
    }
    return runNodeOp(this, cluster, this.#ctx, this.#uids, msg);
  }

  /**
   * Closes the computation: without `terminate`, once its jobs are done; with it, queued jobs
   * end Cancelled and running ones Terminated at once. A later terminating close (the client
   * vanished, the scheduler stops) cuts short a close that waits. `note` is set when the
   * scheduler closes it on its own: the jobs it ends carry its code, and the client gets `closed`.
   */
  close(terminate: boolean, note?: CloseNote): Promise<void> {
    if (note && !this.#note) this.#note = note;
    if (terminate && !this.#terminate) {
      this.#terminate = true;
      this.#escalate?.();
    }
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const was = this.state;
    this.state = 'closing';
    if (this.#zombieTimer) clearTimeout(this.#zombieTimer);
    const cluster = this.cluster;
    if (!cluster) {
      if (was === 'waiting')
        this.#ctx.admission.withdraw(
          this,
          new DispyError('DISPY_ERR_CLUSTER_CLOSED', `computation ${this.name} was closed while it waited to be scheduled`),
        );
      const held = this.#held;
      this.#held = [];
      for (const j of held)
        this.#refuse(
          j.uid,
          this.#note?.code ?? 'DISPY_ERR_CLUSTER_CLOSED',
          `computation ${this.name} was closed before it was scheduled${this.#note ? ` (${this.#note.reason})` : ''}`,
        );
    } else {
      if (!this.#terminate) await Promise.race([cluster.wait(), new Promise<void>((r) => (this.#escalate = r))]);
      // Jobs still there now (a terminating close) end Cancelled or Terminated.
      await cluster.close({ terminate: true });
      cluster.off('status', this.#onStatus);
    }
    this.state = 'closed';
    this.#ctx.files.close(this.fileKey, this.computeId);
    this.#ctx.admission.release(this);
    if (cluster && this.#goneFor !== null)
      this.#ctx.clusterNote(cluster, { text: 'closed: its client was gone' }, `closed: its client was gone for ${this.#goneFor} s`);
    this.#ctx.clusterClosed(cluster, this.name);
    if (this.#note) this.owner.send({ t: 'closed', computeId: this.computeId, reason: this.#note.reason.slice(0, MAX_TEXT) });
    this.#ctx.log.info({ computation: this.name, computeId: this.computeId, reason: this.#note?.reason }, 'computation closed');
  }

  /** Seconds a gone client has to come back: its reconnectTimeout, at most the zombie interval. */
  get #window(): number {
    const zombie = this.#ctx.zombieInterval;
    const wanted = this.#msg.reconnectTimeout;
    return wanted === undefined ? zombie : Math.min(wanted, zombie);
  }

  /**
   * Its client is gone (DESIGN.md §3, "A client that is gone"): nobody can collect results of
   * jobs that start now, so none starts, and the computation never outranks a live one (the
   * dispatcher holds it). Running jobs go on for the client's reconnect window (at most the
   * zombie interval), in case it comes back to them; then the computation is closed: queued jobs
   * dropped, running ones terminated (cutting short a close it asked for that still waits).
   */
  orphan(): void {
    if (this.state === 'closed' || this.#zombieTimer) return;
    if (this.state === 'registered' || this.state === 'waiting') {
      // Nothing runs yet, and nobody can schedule it any more.
      void this.close(true, { code: 'DISPY_ERR_CONNECTION', reason: 'its client left before it was scheduled' });
      return;
    }
    const sec = this.#window;
    const closesAt = Date.now() + sec * 1000;
    const when = new Date(closesAt).toISOString().replace(/\.\d{3}Z$/, 'Z');
    this.#away = { ends: [], bytes: 0 };
    this.#goneFor = sec;
    const cluster = this.cluster;
    if (cluster) {
      this.#relay?.hold(true);
      this.#ctx.clusterNote(
        cluster,
        { text: `client gone; closes at ${when}`, closesAt },
        `client gone; closes at ${when} unless it resumes`,
      );
    }
    this.#ctx.log.warn(
      { computation: this.name, window: sec, zombieInterval: this.#ctx.zombieInterval, closesAt: when },
      `client gone; closes at ${when}: no job of it starts meanwhile, and it is closed then unless the client resumes it`,
    );
    this.#zombieTimer = setTimeout(() => {
      this.#zombieTimer = null;
      this.#away = null;
      void this.close(true, {
        code: 'DISPY_ERR_CONNECTION',
        reason: `its client was gone for ${sec} s (its reconnectTimeout, at most the scheduler's zombie interval)`,
      });
    }, sec * 1000);
  }

  /** Whether a client showing `key` may take it back: it still runs, its client is gone or going. */
  canResume(key: string): boolean {
    const a = Buffer.from(key);
    const b = Buffer.from(this.resumeKey);
    return this.state === 'running' && a.length === b.length && timingSafeEqual(a, b);
  }

  /** Whether job `uid` of its client has not ended here (a running computation holds no jobs back). */
  knows(uid: number): boolean {
    return this.#jobs.has(uid);
  }

  /**
   * Its client came back on connection `owner`: the zombie timer stops, and the job-ends it
   * missed are sent to it (after whatever the caller sends first).
   */
  adopt(owner: ComputationOwner): JobEnd[] {
    if (this.#zombieTimer) clearTimeout(this.#zombieTimer);
    this.#zombieTimer = null;
    if (this.cluster && this.#goneFor !== null) {
      this.#relay?.hold(false);
      this.#ctx.clusterNote(this.cluster, null, 'client back: its computation resumed');
    }
    this.#goneFor = null;
    const missed = this.#away?.ends ?? [];
    this.#away = null;
    this.owner = owner;
    this.#ctx.log.info({ computation: this.name, computeId: this.computeId, missed: missed.length }, 'client resumed its computation');
    return missed;
  }

  /** To the client, or, while it is away, kept if it is a job's end (other news is stale by then). */
  #toOwner(msg: FromScheduler): void {
    const away = this.#away;
    if (!away) {
      this.owner.send(msg);
      return;
    }
    if (msg.t === 'job-end') keepAway(away, msg, this.#ctx.log, this.name);
  }
}
