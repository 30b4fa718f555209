/**
 * DispyCluster: the public surface JobCluster and SharedJobCluster both implement (submitting,
 * cancelling, waiting, closing, managing nodes, status and events), so that code using a
 * cluster (the HTTP server, a program) need not know which kind it has.
 */
import type { DispyError } from '../errors.js';
import type { Shippable } from './computation.js';
import type { DispyJob } from './dispy-job.js';
import type { DispyNode } from './dispy-node.js';
import type { NodeSpec } from './node-allocate.js';
import type { CancelOptions } from './per-node-options.js';
import type { StatusEvent } from './status-events.js';

// `any` on purpose: a program or module computation takes any arguments, while a function's
// own parameter types are inferred in its place.
// biome-ignore lint/suspicious/noExplicitAny: a constraint every function satisfies (unknown[] parameters would reject typed ones)
export type AnyFn = (...args: any[]) => unknown;

/** Options of `submitWith`. */
export interface SubmitOptions {
  /**
   * File paths: sent to the job's node before it (into the computation's directory, the job's
   * working directory) and deleted there after it. Functions and classes (dispy's
   * `dispy_job_depends`): defined in the computation's scope for this job only, as the
   * cluster's `depends` are for every job (function computations).
   * @default []
   * @example depends: ['./input-7.csv', func1]
   */
  depends?: (string | Shippable)[];
  /**
   * The job's id.
   * @default a counter (1, 2, 3, ... per cluster)
   * @example id: 'frame-0042'
   */
  id?: unknown;
  /**
   * Run the job only on this node (a DispyNode, an IP address or a node name).
   * @default any node
   * @example node: '127.0.0.2'
   */
  node?: DispyNode | string;
  /**
   * Seconds after which this job is terminated.
   * @default the cluster's maxRuntime
   * @example maxRuntime: 30
   */
  maxRuntime?: number;
}

/** What `status()` returns. */
export interface ClusterStatus {
  nodes: DispyNode[];
  jobsPending: number;
}

/** What both cluster kinds offer; `F` is the computation's type (its arguments and result). */
export interface DispyCluster<F extends AnyFn = AnyFn> {
  /** The cluster's name (the HTTP server shows it). */
  readonly name: string;
  /** The computation's id (a SharedJobCluster's is null until the scheduler registered it). */
  readonly computeId: string | null;
  /** True for a SharedJobCluster: its nodes and their CPUs are the scheduler's. */
  readonly shared: boolean;
  /** Whether close() completed. */
  readonly closed: boolean;
  /** Queues a job calling the computation with `args`. */
  submit(...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>>;
  /** Like submit, with the job's `id` set. */
  submitJobId(id: unknown, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>>;
  /** Queues a job that runs only on `node` (a DispyNode, an IP address or a node name). */
  submitNode(node: DispyNode | string, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>>;
  /** Queues a job with options (per-job files, id, node, maxRuntime). */
  submitWith(options: SubmitOptions, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>>;
  /** Cancels a job (politely with a grace); resolves to 0, or -1 if it is not this cluster's or already ended. */
  cancel(job: DispyJob, options?: CancelOptions): Promise<number>;
  /** Resolves true once no job is pending and every status callback ran, false after `timeout` s. */
  wait(timeout?: number): Promise<boolean>;
  /** Waits for pending jobs (or ends them with `terminate`), then closes the computation. */
  close(options?: { timeout?: number; terminate?: boolean }): Promise<boolean>;
  /** Looks for nodes now. */
  discoverNodes(): Promise<number>;
  /** Adds nodes at run time. */
  allocateNode(spec: NodeSpec | DispyNode): Promise<number>;
  /** Stops giving this cluster's jobs to `node`; its running jobs finish. */
  deallocateNode(node: DispyNode | string): Promise<number>;
  /** Closes the computation on `node`. */
  closeNode(node: DispyNode | string, options?: { terminatePending?: boolean }): Promise<number>;
  /** Closes the computation on `node` and sets it up again. */
  resetupNode(node: DispyNode | string, options?: { terminatePending?: boolean }): Promise<number>;
  /** Sets the CPUs this cluster uses on `node`. */
  setNodeCpus(node: DispyNode | string, cpus: number): Promise<number>;
  /** This cluster's jobs running on `node`. */
  nodeJobs(node: DispyNode | string, options?: { fromNode?: boolean }): Promise<DispyJob[]>;
  /** Sends a file to `node` into the computation's directory. */
  sendFile(path: string, node: DispyNode | string): Promise<number>;
  /** The cluster's nodes in use and the number of jobs not yet ended. */
  status(): ClusterStatus;
  /** Prints (and returns) dispy's table of nodes, jobs, times and data. */
  printStatus(wallTime?: number): string;
  /** Status events (in order, never re-entrantly) and error events. */
  on(event: 'status', listener: (e: StatusEvent<DispyCluster>) => void): this;
  on(event: 'error', listener: (err: DispyError) => void): this;
  off(event: 'status', listener: (e: StatusEvent<DispyCluster>) => void): this;
  off(event: 'error', listener: (err: DispyError) => void): this;
  [Symbol.asyncDispose](): Promise<void>;
}
