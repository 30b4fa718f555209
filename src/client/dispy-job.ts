/** A job: one call of the computation with its arguments, as the client program sees it. */
import { DispyError } from '../errors.js';
import type { DispyCluster } from './dispy-cluster.js';
import type { JobStatusCode } from './status.js';
import { JobStatus, statusName } from './status.js';

/** Rejection of `job.wait()` for a job that did not finish normally. */
export class DispyJobError extends DispyError {
  /** The job, for its exception, stdout and stderr (not enumerable). */
  declare readonly job: DispyJob;

  constructor(job: DispyJob) {
    const code =
      job.status === JobStatus.Cancelled
        ? 'DISPY_ERR_JOB_CANCELLED'
        : job.status === JobStatus.Abandoned
          ? 'DISPY_ERR_JOB_ABANDONED'
          : 'DISPY_ERR_JOB_TERMINATED';
    super(code, job.exception ?? `job ${String(job.id)} ${statusName(job.status)}`);
    this.name = 'DispyJobError';
    Object.defineProperty(this, 'job', { value: job, enumerable: false });
  }
}

// Method syntax keeps DispyJob<number> assignable to DispyJob<unknown>.
interface Waiter<R> {
  resolve(v: R): void;
  reject(e: unknown): void;
}

export class DispyJob<R = unknown> {
  static readonly Created = JobStatus.Created;
  static readonly Running = JobStatus.Running;
  static readonly ProvisionalResult = JobStatus.ProvisionalResult;
  static readonly Cancelled = JobStatus.Cancelled;
  static readonly Terminated = JobStatus.Terminated;
  static readonly Abandoned = JobStatus.Abandoned;
  static readonly Finished = JobStatus.Finished;

  /** The user's label for the job: set it freely; an auto-incremented number by default. */
  id: unknown;
  status: JobStatusCode = JobStatus.Created;
  /** Return value once Finished (or the latest provisional result). */
  result: R | null = null;
  /** `name: message` and the remote stack when the job threw or was killed. */
  exception: string | null = null;
  stdout = '';
  stderr = '';
  /** Paths of the files the job sent home with `dispySendFile` (under the cluster's resultsDir). */
  files: string[] = [];
  /** Address of the node that ran the job. */
  ipAddr: string | null = null;
  /** ms since epoch. */
  submitTime: number;
  startTime: number | null = null;
  endTime: number | null = null;
  /** The arguments the job was submitted with. */
  args: unknown[];
  /** The cluster the job belongs to (not enumerable); null for a job recovered by recoverJobs. */
  declare readonly cluster: DispyCluster | null;

  /** @internal */
  declare readonly _uid: number;
  /** @internal */
  declare _settled: boolean;
  /** @internal */
  declare _waiters: Waiter<R>[] | null;
  /** @internal */
  declare _errorCode: string | null;
  /** @internal Wire id of the job's current attempt: a re-run after its node died gets a new one. */
  declare _attempt: number;

  constructor(uid: number, id: unknown, args: unknown[], cluster: DispyCluster | null) {
    this.id = id;
    this.args = args;
    this.submitTime = Date.now();
    Object.defineProperties(this, {
      cluster: { value: cluster, enumerable: false },
      _uid: { value: uid, enumerable: false },
      _settled: { value: false, enumerable: false, writable: true },
      _waiters: { value: null, enumerable: false, writable: true },
      _errorCode: { value: null, enumerable: false, writable: true },
      _attempt: { value: 0, enumerable: false, writable: true },
    });
  }

  /** Whether the job reached its final status. */
  get settled(): boolean {
    return this._settled;
  }

  /**
   * Waits for the job's final status: resolves to the result when it Finished, rejects with a
   * DispyJobError (code `DISPY_ERR_JOB_TERMINATED`, `_CANCELLED` or `_ABANDONED`) otherwise.
   */
  wait(): Promise<R> {
    if (this._settled) {
      return this.status === JobStatus.Finished ? Promise.resolve(this.result as R) : Promise.reject(new DispyJobError(this as DispyJob));
    }
    return new Promise<R>((resolve, reject) => {
      this._waiters ??= [];
      this._waiters.push({ resolve, reject });
    });
  }

  /** @internal Marks the job final and wakes its waiters. */
  _settle(status: JobStatusCode): void {
    if (this._settled) return;
    this.status = status;
    this._settled = true;
    const waiters = this._waiters;
    this._waiters = null;
    if (!waiters) return;
    if (status === JobStatus.Finished) for (const w of waiters) w.resolve(this.result as R);
    else {
      const err = new DispyJobError(this as DispyJob);
      for (const w of waiters) w.reject(err);
    }
  }

  /**
   * @internal A copy of the job as it is now, for events that describe a moment (a provisional
   * result) rather than an end: callbacks delivered later still see that moment's status and
   * result. Its `wait()` waits for the job itself.
   */
  _snapshot(): DispyJob<R> {
    const copy = Object.assign(Object.create(DispyJob.prototype) as DispyJob<R>, this);
    Object.defineProperties(copy, {
      cluster: { value: this.cluster, enumerable: false },
      _uid: { value: this._uid, enumerable: false },
      _settled: { value: this._settled, enumerable: false, writable: true },
      _waiters: { value: null, enumerable: false, writable: true },
      _errorCode: { value: this._errorCode, enumerable: false, writable: true },
      _attempt: { value: this._attempt, enumerable: false, writable: true },
      wait: { value: () => this.wait(), enumerable: false },
    });
    return copy;
  }

  toString(): string {
    return `DispyJob(${String(this.id)}, ${statusName(this.status)})`;
  }
}
