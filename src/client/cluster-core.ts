/**
 * The core both cluster kinds hold in a private field and delegate to: job uids and ids, the
 * count of pending jobs, the status-event queue, decoding results and settling jobs, the
 * waiters of `wait()` and `close()`, the close-once skeleton and `printStatus`. What differs
 * (nodes of its own, or a scheduler) stays in each cluster; what a job's end does to the
 * cluster is decided here once.
 */
import type { Logger } from 'pino';
import { DispyError, Errors, jobException } from '../errors.js';
import { DEFAULT_MAX_FRAME } from '../protocol/constants.js';
import type { PayloadCodec } from '../protocol/payload.js';
import { CloseOnce } from './close-once.js';
import type { DispyCluster } from './dispy-cluster.js';
import { DispyJob } from './dispy-job.js';
import type { DispyNode } from './dispy-node.js';
import { IdleWaiters } from './idle-waiters.js';
import { statusTable } from './print-status.js';
import { type ClusterEmitter, StatusEventQueue, type StatusSink } from './status-events.js';
import { JobStatus, type DispyStatus, type FinalJobStatus } from './status.js';

let uidCounter = 0;

/** @internal A new process-wide uid (jobs, attempts and computations of every cluster share the sequence). */
export function nextJobUid(): number {
  return ++uidCounter;
}

/** What the core needs of its cluster at construction. */
export interface CoreOptions {
  /** The cluster's status callbacks (its options). */
  callbacks: Pick<StatusSink<unknown>, 'jobStatus' | 'clusterStatus'>;
  log: Logger;
  /** Decodes results; null leaves them as the node's bytes (a cluster relaying for the scheduler). */
  codec: PayloadCodec | null;
  /** Told when the first job becomes pending (true) and when the last one ended (false). */
  onActive?: (on: boolean) => void;
}

export class ClusterCore<C extends ClusterEmitter & DispyCluster> {
  readonly #cluster: C;
  readonly log: Logger;
  readonly #codec: PayloadCodec | null;
  readonly #events: StatusEventQueue<C>;
  readonly #idle = new IdleWaiters();
  readonly #closeOnce = new CloseOnce();
  readonly #onActive: ((on: boolean) => void) | undefined;
  /** Every node the cluster used, closed ones included (printStatus), by address. */
  readonly everyNode = new Map<string, DispyNode>();
  /** Jobs not yet ended. */
  pending = 0;
  #jobIds = 0;

  constructor(cluster: C, o: CoreOptions) {
    this.#cluster = cluster;
    this.log = o.log;
    this.#codec = o.codec;
    this.#onActive = o.onActive;
    this.#events = StatusEventQueue.ofCluster<C>(cluster, o.callbacks, o.log);
  }

  // ---- jobs ----

  /** A new pending job (Created event): `id` or the cluster's next counter value. */
  newJob<R>(id: unknown, args: unknown[]): DispyJob<R> {
    const job = new DispyJob<R>(++uidCounter, id === undefined || id === null || id === '' ? ++this.#jobIds : id, args, this.#cluster);
    if (++this.pending === 1) this.#onActive?.(true);
    this.#events.push(JobStatus.Created, null, job as DispyJob);
    return job;
  }

  /** Refuses arguments larger than `maxArgsSize` (DISPY_ERR_MESSAGE_TOO_LARGE, naming both sizes). */
  checkArgs(bytes: Uint8Array, maxArgsSize: number | undefined): Uint8Array {
    const max = maxArgsSize ?? DEFAULT_MAX_FRAME;
    if (bytes.length > max) {
      throw new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `the job's arguments encode to ${bytes.length} bytes, more than cluster ${this.#cluster.name}'s maxArgsSize of ${max} bytes`,
      );
    }
    return bytes;
  }

  /** Ends `job` with `status` (once: a settled job stays as it is); the last one wakes `wait()`. */
  settle(job: DispyJob, status: FinalJobStatus, node: DispyNode | null): void {
    if (job.settled) return;
    job._settle(status);
    this.#events.push(status, node, job);
    if (--this.pending === 0) {
      this.#onActive?.(false);
      this.#idle.wake();
    }
  }

  /** Ends `job` Cancelled here, before any node ran it, saying why. */
  cancelLocal(job: DispyJob, why: string): void {
    if (job.settled) return;
    job.exception = jobException(`job cancelled: ${why}`);
    job.endTime = Date.now();
    this.settle(job, JobStatus.Cancelled, null);
  }

  /** A result from a node: decoded (or left as bytes without a codec). Throws when it cannot be decoded. */
  decode(bytes: Uint8Array): unknown {
    return this.#codec ? this.#codec.decode(bytes) : bytes;
  }

  /**
   * A job's end as its node (or the scheduler) reported it: output, exception, result. A result
   * that cannot be decoded ends the job Terminated, saying so. Returns the status to settle with.
   */
  ended(
    job: DispyJob,
    end: { stdout: string; stderr: string; exception: string | null; result: Uint8Array | null; code: string | null | undefined },
    status: FinalJobStatus,
  ): FinalJobStatus {
    job.stdout = end.stdout;
    job.stderr = end.stderr;
    job.exception = end.exception;
    if (end.result) {
      try {
        job.result = this.decode(end.result) as never;
      } catch (err) {
        job.exception = Errors.jobUndecodable(err);
        job._errorCode = end.code ?? null;
        return JobStatus.Terminated;
      }
    }
    job._errorCode = end.code ?? null;
    return status;
  }

  /** A provisional result: the job's result for now (false, logged, if it cannot be decoded). */
  provisional(job: DispyJob, bytes: Uint8Array, uid: number): boolean {
    try {
      job.result = this.decode(bytes) as never;
    } catch (err) {
      this.log.warn({ uid, err: (err as Error).message }, 'undecodable provisional result ignored');
      return false;
    }
    job.status = JobStatus.ProvisionalResult;
    return true;
  }

  // ---- events ----

  emit(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    this.#events.push(status, node, job);
  }

  emitError(err: DispyError): void {
    this.#events.pushError(err);
  }

  drained(): Promise<void> {
    return this.#events.drained();
  }

  // ---- waiting and closing ----

  /** `wait()`: true once nothing is pending and every callback ran, false after `timeout` s. */
  wait(timeout?: number, rejectable = true): Promise<boolean> {
    return this.#idle.wait(this.pending === 0, () => this.#events.drained(), timeout, rejectable);
  }

  /** Rejects the waiters of `wait()` (not those of `close()`) with `err`. */
  failWaiters(err: Error): void {
    this.#idle.fail(err);
  }

  /** `close()`: concurrent calls share one attempt; one that resolved false may be made again. */
  close(attempt: () => Promise<boolean>): Promise<boolean> {
    return this.#closeOnce.run(attempt);
  }

  /** Prints (and returns) dispy's table of every node used (closed ones included), pending jobs and times. */
  printStatus(wallTime?: number): string {
    const text = statusTable([...this.everyNode.values()], this.pending, wallTime);
    process.stdout.write(text);
    return text;
  }
}
