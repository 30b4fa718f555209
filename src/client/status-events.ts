/**
 * A cluster's status events and error events, delivered in order, never re-entrantly and off
 * the I/O path: the callbacks (`jobStatus`, `clusterStatus`) and the `status`/`error` listeners
 * of JobCluster and SharedJobCluster all run from one queue drained on a later tick.
 */
import type { Logger } from 'pino';
import type { DispyError } from '../errors.js';
import type { DispyJob } from './dispy-job.js';
import type { DispyNode } from './dispy-node.js';
import { JobStatus, type DispyStatus } from './status.js';

/** One status event, as `cluster.on('status')` delivers it. */
export interface StatusEvent<C> {
  /** Increases by one per event of this cluster. */
  id: number;
  status: DispyStatus;
  node: DispyNode | null;
  job: DispyJob | null;
  cluster: C;
}

/** Where the queue delivers: the cluster's callbacks and its EventEmitter. */
export interface StatusSink<C> {
  jobStatus?: ((job: DispyJob) => void) | undefined;
  clusterStatus?: ((status: DispyStatus, node: DispyNode | null, job: DispyJob | null) => void) | undefined;
  /** Emits `status` to the cluster's listeners. */
  emitStatus(e: StatusEvent<C>): void;
  /** Emits `error` to the cluster's listeners. */
  emitError(err: DispyError): void;
  /** Listeners of an event name. */
  listenerCount(event: 'status' | 'error'): number;
  /** Logs an error nobody listens to, and callbacks that throw. */
  warn(err: DispyError): void;
  callbackThrew(err: unknown): void;
}

/** What a cluster offers its queue: an EventEmitter of `status` and `error`. */
export interface ClusterEmitter {
  emit(event: 'status' | 'error', payload: unknown): boolean;
  listenerCount(event: 'status' | 'error'): number;
}

const FINAL_FOR_JOB_STATUS = new Set<number>([
  JobStatus.ProvisionalResult,
  JobStatus.Finished,
  JobStatus.Terminated,
  JobStatus.Cancelled,
  JobStatus.Abandoned,
]);

type Queued<C> = StatusEvent<C> & { error?: DispyError };

export class StatusEventQueue<C> {
  readonly #cluster: C;
  readonly #sink: StatusSink<C>;
  #eventId = 0;
  #events: Queued<C>[] = [];
  #draining = false;
  #drainWaiters: (() => void)[] = [];

  constructor(cluster: C, sink: StatusSink<C>) {
    this.#cluster = cluster;
    this.#sink = sink;
  }

  /**
   * The queue of a cluster (JobCluster, SharedJobCluster): its `jobStatus`/`clusterStatus`
   * options, its `status`/`error` listeners, its logger for errors nobody hears.
   */
  static ofCluster<C extends ClusterEmitter>(
    cluster: C,
    options: Pick<StatusSink<C>, 'jobStatus' | 'clusterStatus'>,
    log: Logger,
  ): StatusEventQueue<C> {
    return new StatusEventQueue<C>(cluster, {
      jobStatus: options.jobStatus,
      clusterStatus: options.clusterStatus,
      emitStatus: (e) => cluster.emit('status', e),
      emitError: (err) => cluster.emit('error', err),
      listenerCount: (event) => cluster.listenerCount(event),
      warn: (err) => log.warn({ code: err.code }, err.message),
      callbackThrew: (err) => log.error({ err }, 'status callback threw'),
    });
  }

  /** Queues a status event (nothing when no callback or listener would see it). */
  push(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    const s = this.#sink;
    if (!s.clusterStatus && !s.jobStatus && s.listenerCount('status') === 0) return;
    this.#events.push({ id: ++this.#eventId, status, node, job, cluster: this.#cluster });
    this.#schedule();
  }

  /** Queues an `error` event, or logs it when nobody listens. */
  pushError(err: DispyError): void {
    if (this.#sink.listenerCount('error') === 0) {
      this.#sink.warn(err);
      return;
    }
    this.#events.push({ id: -1, status: -1 as DispyStatus, node: null, job: null, cluster: this.#cluster, error: err });
    this.#schedule();
  }

  /** Resolves once every event queued so far (and those its callbacks queued) was delivered. */
  drained(): Promise<void> {
    if (!this.#draining && this.#events.length === 0) return Promise.resolve();
    return new Promise((r) => this.#drainWaiters.push(r));
  }

  #schedule(): void {
    if (this.#draining) return;
    this.#draining = true;
    setImmediate(() => this.#drain());
  }

  #drain(): void {
    const s = this.#sink;
    // Callbacks that submit or cancel append to the queue; they are delivered in this loop,
    // after the current event, never inside it.
    for (let i = 0; i < this.#events.length; i++) {
      const e = this.#events[i]!;
      try {
        if (e.error) {
          s.emitError(e.error);
          continue;
        }
        if (e.job && FINAL_FOR_JOB_STATUS.has(e.status)) s.jobStatus?.(e.job);
        s.clusterStatus?.(e.status, e.node, e.job);
        s.emitStatus(e);
      } catch (cbErr) {
        s.callbackThrew(cbErr);
      }
    }
    this.#events = [];
    this.#draining = false;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }
}
