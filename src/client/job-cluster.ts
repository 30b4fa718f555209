/**
 * JobCluster: one program owns a set of nodes and farms calls of a computation out to their
 * CPUs. Jobs queue here, go to the node with the lowest load, and come back with their result,
 * output and exception; status events are delivered in order, never re-entrantly. This class is
 * the public surface; the engine behind its private field (job-engine.ts, with job-dispatch.ts,
 * node-sessions.ts, node-session.ts, node-watch.ts and node-admin.ts) does the work.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type DispyError, Errors } from '../errors.js';
import type { JobClusterOptions } from './cluster-options.js';
import type { ModuleComputation } from './computation.js';
import type { AnyFn, ClusterStatus, DispyCluster, SubmitOptions } from './dispy-cluster.js';
import { DispyJob } from './dispy-job.js';
import type { DispyNode } from './dispy-node.js';
import type { ProgramComputation } from './interpreter.js';
import { JobEngine } from './job-engine.js';
import type { NodeSpec } from './node-allocate.js';
import * as admin from './node-admin.js';
import { checkJobClusterOptions, checkSubmitOptions } from './option-rules.js';
import { cancelGrace, type CancelOptions } from './per-node-options.js';
import { formatBytes } from './print-status.js';
import type { StatusEvent } from './status-events.js';
import { JobStatus } from './status.js';

export { formatBytes };

export type { JobClusterOptions } from './cluster-options.js';

/** One status event, as `cluster.on('status')` delivers it (`cluster`: the cluster that emitted it). */
export type ClusterStatusEvent<C = JobCluster> = StatusEvent<C>;

export type { ClusterStatus, DispyCluster, SubmitOptions } from './dispy-cluster.js';

export { RECONNECT_WINDOW } from './timeouts.js';

export { MAX_SEND_ATTEMPTS } from './job-ledger.js';

type ClusterEvents = {
  status: [ClusterStatusEvent];
  error: [DispyError];
};

/** The engine of each cluster, for relay-cluster.ts (set by JobCluster's static block). */
let engineOf: (c: JobCluster) => JobEngine;

export class JobCluster<F extends AnyFn = AnyFn> extends EventEmitter<ClusterEvents> implements DispyCluster<F> {
  readonly name: string;
  /** False: a JobCluster's nodes are its own (see SharedJobCluster). */
  readonly shared = false;
  readonly computeId: string;
  readonly log: Logger;
  /** The engine (job-engine.ts): ledger, node sessions, dispatch, replies. */
  readonly #engine: JobEngine;

  static {
    engineOf = (c) => c.#engine;
  }

  /**
   * @param computation a function (shipped as source with `depends`), a program path (shipped
   *   and spawned per job with the stringified arguments; the result is its exit code), or
   *   `{ module, export }` (the module bundled with its imports by esbuild).
   *   A program that is not a file is looked up on PATH; type it as
   *   `new JobCluster<(...args: unknown[]) => number>('prog')` to submit any arguments.
   *   A script runs with its interpreter: `['python3', 'script.py']` or `{ program, interpreter }`
   *   (a `.js`/`.mjs` file with the node's Node.js, a `#!` line as it says).
   *   Strings in `depends` are files sent to every node before setup, into the computation's
   *   directory, where jobs (whose working directory it is) open them by base name.
   */
  constructor(computation: F | string | string[] | ProgramComputation | ModuleComputation, options: JobClusterOptions = {}) {
    super();
    checkJobClusterOptions(options);
    const engine = new JobEngine(this as JobCluster, computation, options);
    this.#engine = engine;
    this.name = engine.name;
    this.log = engine.log;
    this.computeId = engine.computeId;
    engine.start();
  }

  // ---- submitting ----

  /** Queues a job calling the computation with `args`. */
  submit(...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(undefined, null, args);
  }

  /** Like submit, with the job's `id` set. */
  submitJobId(id: unknown, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(id, null, args);
  }

  /** Queues a job that runs only on `node` (a DispyNode, an IP address or a node name). */
  submitNode(node: DispyNode | string, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(undefined, this.#engine.pinTarget(node), args);
  }

  /**
   * Queues a job with options (dispy's `submit(..., dispy_job_depends=...)` and friends):
   * `depends` are files sent to the job's node right before the job, into the computation's
   * directory (the job's working directory: open them by base name), and deleted there after
   * it; `id` sets the job's id; `node` runs it only there (as submitNode); `maxRuntime` limits
   * this job (seconds). Missing or too large files throw here.
   * @example cluster.submitWith({ depends: ['./input-7.csv'], id: 7 }, 'input-7.csv')
   */
  submitWith(options: SubmitOptions, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    const e = this.#engine;
    const { files, maxRuntime, code } = checkSubmitOptions(options, e.opts.maxFileSize ?? 0, e.kind);
    const { node } = options;
    const pinTo = node !== undefined && node !== null ? e.pinTarget(node) : null;
    const job = this.#submit(options.id, pinTo, args);
    // Read when the job is sent (never before the next tick).
    if (files.length || maxRuntime !== undefined || code.length)
      e.jobExtras.set(job as DispyJob, {
        files,
        ...(maxRuntime === undefined ? {} : { maxRuntime }),
        ...(code.length ? { depends: code } : {}),
      });
    return job;
  }

  #submit(id: unknown, pinTo: string | null, args: unknown[]): DispyJob<Awaited<ReturnType<F>>> {
    const e = this.#engine;
    if (e.closing) throw Errors.clusterClosed(this.name);
    return e.enqueue(id, pinTo, args, e.codec.encode(args, 'args'), undefined) as DispyJob<Awaited<ReturnType<F>>>;
  }

  // ---- control ----

  /**
   * Cancels a job: a queued one ends Cancelled at once; one sent to a node is dropped there
   * (Cancelled) or, running, killed with every process it started (Terminated). The cancel
   * holds whatever happens meanwhile: a job handed back by its node, or whose node was lost, is
   * not run again (it ends Cancelled, or Abandoned if it was running), and a connection that
   * broke passes the cancel on once it is back. Resolves once the job ended: 0 if it did not
   * complete, -1 if it is not this cluster's, had already ended, or completed (Finished) before
   * the cancel reached it.
   *
   * With a grace (`options.grace`, or the cluster's `cancelGrace`) a running job is stopped
   * politely: its `dispyAbortSignal` fires (a program job gets SIGINT), and a job that returns
   * within the grace ends Finished with that value (then this resolves 0 too); after the grace
   * it is killed as without one. Code that never yields to the event loop (a synchronous loop)
   * never sees the signal and is killed after the grace.
   */
  async cancel(job: DispyJob, options?: CancelOptions): Promise<number> {
    if (!(job instanceof DispyJob) || job.cluster !== this || job.settled) return -1;
    const e = this.#engine;
    // A grace makes it polite (per-node-options.ts).
    const grace = cancelGrace(job, options, e.opts.cancelGrace);
    const s = e.ledger.sent.get(job._attempt);
    if (s && s.job === job) {
      e.ledger.cancelRequested(job);
      // A suspended node's link is closed: its session passes the cancel on once resumed.
      if (!s.cn.suspended) s.cn.link.cancel(job._attempt, grace);
      await job.wait().then(
        () => undefined,
        () => undefined,
      );
      // A polite cancel's job may return on purpose: Finished is then its answer to the cancel.
      return job.status === JobStatus.Finished && grace === 0 ? -1 : 0;
    }
    job.endTime = Date.now();
    e.core.settle(job, JobStatus.Cancelled, null);
    return 0;
  }

  // ---- managing nodes at run time (node-admin.ts) ----

  /**
   * Looks for nodes now (dispy's `discover_nodes`): a discover request for the wildcard specs
   * (see the `discovery` option; nodes that answer are set up as they do), wildcards matched
   * against the nodes this process is connected to, and listed nodes not in use tried again.
   * Resolves to 0 once the requests went out, -1 if the cluster is closed.
   *
   * With `specs` (dispy's `discover_nodes(nodes)`: addresses, host names, wildcards, `{ host,
   * port }`, NodeAllocates), only those are looked for: a wildcard as above, an address or name
   * contacted at its port. As in dispy, a node found is used if the cluster's `nodes` match it.
   * @example await cluster.discoverNodes(['127.0.0.*'])
   */
  async discoverNodes(specs?: NodeSpec | NodeSpec[]): Promise<number> {
    return admin.discoverNodes(this.#engine, specs);
  }

  /**
   * Adds nodes at run time: a host name, IP address, wildcard (matching nodes this process
   * knows, and discovered as the `discovery` option says), `{ host, port, cpus }`, a NodeAllocate
   * or a DispyNode. A node this cluster had deallocated is used again. Resolves to 0 once a
   * matching node is set up (for a wildcard: or once a discover request went out; nodes that
   * answer are set up as they do), -1 otherwise.
   */
  async allocateNode(spec: NodeSpec | DispyNode): Promise<number> {
    return admin.allocateNode(this.#engine, spec);
  }

  /**
   * Stops giving this cluster's jobs to `node` (a DispyNode, IP or name); its running jobs
   * finish, and the computation stays on the node so allocateNode can use it again. Emits
   * Closed. Resolves to 0, or -1 for an unknown node.
   */
  async deallocateNode(node: DispyNode | string): Promise<number> {
    return admin.deallocateNode(this.#engine, node);
  }

  /**
   * Closes the computation on `node` (dispy's `close_node`) and resolves at once: no new job
   * goes there; jobs it holds that have not started come back and run elsewhere; running ones
   * finish there and their results count, or with `terminatePending` are terminated. Jobs
   * pinned to it are cancelled. Emits Closed. Resolves to 0, or -1 for an unknown node.
   */
  async closeNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    return admin.closeNode(this.#engine, node, options.terminatePending ?? false);
  }

  /**
   * Closes the computation on `node` and sets it up again (dispy's `resetup_node`): no new job
   * goes there meanwhile (jobs pinned to it wait), its running jobs finish (or are terminated
   * with `terminatePending`), then its files are sent again to a new directory, setup runs
   * anew and NodeAllocate.allocate is asked again. Resolves to 0 once the new setup has run on
   * the node (which may be after its running jobs ended, however long they take), -1 if it
   * cannot be set up again.
   */
  async resetupNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    return admin.resetupNode(this.#engine, node, options.terminatePending ?? false);
  }

  /**
   * Sets the CPUs this cluster uses on `node` at once: `cpus >= 0` caps it (at most what the
   * node offers), negative leaves that many of the node's CPUs unused. Lowering it below
   * `busy` lets running jobs finish and starts no more; raising it starts queued jobs. Emits
   * AvailInfo. Resolves to the new CPU count, or -1.
   */
  async setNodeCpus(node: DispyNode | string, cpus: number): Promise<number> {
    return admin.setNodeCpus(this.#engine, node, cpus);
  }

  /**
   * This cluster's jobs running on `node`, from local bookkeeping or, with `fromNode`, as the
   * node reports them. Resolves to [] for an unknown node.
   */
  async nodeJobs(node: DispyNode | string, options: { fromNode?: boolean } = {}): Promise<DispyJob[]> {
    return admin.nodeJobs(this.#engine, node, options.fromNode ?? false);
  }

  /**
   * Sends a file to `node` (a DispyNode, an IP address or a node name) into the computation's
   * directory there (or its destPath), where jobs open it by its base name; it is deleted when
   * the computation closes (unless `cleanup: false`). Resolves to 0, or -1 if the node is not
   * this cluster's, the file is missing or too large, or the node refused it (the reason is
   * logged).
   */
  async sendFile(path: string, node: DispyNode | string): Promise<number> {
    return admin.sendFile(this.#engine, path, node);
  }

  /**
   * Resolves true once no job is pending and the status callbacks of every ended job have run,
   * or false if `timeout` seconds pass first. Rejects with `DISPY_ERR_NO_NODE` when the
   * cluster's `nodeTimeout` passes with no usable node.
   */
  wait(timeout?: number): Promise<boolean> {
    return this.#engine.core.wait(timeout);
  }

  /**
   * Waits for pending jobs (up to `timeout` seconds; forever by default), then closes the
   * computation on every node. With `terminate`, it waits only `timeout` seconds (default 0),
   * then jobs still queued end Cancelled and running ones Terminated; without it a timed-out
   * close resolves false and leaves the cluster open. Every job settles.
   */
  close(options: { timeout?: number; terminate?: boolean } = {}): Promise<boolean> {
    return this.#engine.core.close(() => this.#close(options));
  }

  async #close({ timeout, terminate = false }: { timeout?: number; terminate?: boolean }): Promise<boolean> {
    const started = Date.now();
    const idle = await this.#engine.core.wait(terminate ? (timeout ?? 0) : timeout, false);
    if (!idle && !terminate) return false;
    await this.#engine.close(timeout, started);
    return true;
  }

  get closed(): boolean {
    return this.#engine.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close({ terminate: true });
  }

  /** The cluster's nodes and the number of jobs not yet ended. */
  status(): ClusterStatus {
    const e = this.#engine;
    return { nodes: [...e.sessions.nodes.values()].filter((cn) => cn.ready).map((cn) => cn.node), jobsPending: e.core.pending };
  }

  /** Prints (and returns) dispy's table of nodes, jobs, times and data; closed nodes included. */
  printStatus(wallTime?: number): string {
    return this.#engine.core.printStatus(wallTime);
  }
}

/** @internal The engine behind `cluster` (relay-cluster.ts: what only `dispyts scheduler` uses). */
export function clusterEngine(cluster: JobCluster): JobEngine {
  return engineOf(cluster);
}
