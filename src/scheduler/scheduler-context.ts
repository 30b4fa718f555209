/**
 * What a client session and its computations need of the scheduler daemon: its settings, its
 * shared bookkeeping (admission, names, files) and the hooks the HTTP server follows.
 */
import type { Logger } from 'pino';
import type { JobCluster, JobClusterOptions } from '../client/job-cluster.js';
import type { ClusterNote } from '../httpd/cluster-view.js';
import type { NodeAllocate } from '../client/node-allocate.js';
import type { FileStore } from '../host/file-store.js';
import type { FromScheduler } from '../protocol/scheduler-messages.js';
import type { Admission, Admittable } from './admission.js';
import type { ClusterNames } from './cluster-names.js';

export interface SchedulerContext {
  readonly log: Logger;
  /** The scheduler's nodes (`--node`). */
  readonly nodes: readonly NodeAllocate[];
  readonly admission: Admission<Admittable>;
  readonly names: ClusterNames;
  /** Files clients send, per client connection (`owner.key`) and computation. */
  readonly files: FileStore;
  /** `--cooperative`: any computation may change its nodes' CPUs. */
  readonly cooperative: boolean;
  /** Largest file a client may send, in bytes (0 = unlimited). */
  readonly maxFileSize: number;
  /** Largest message to or from a client, in bytes (`--max-message-size`). */
  readonly maxMessageSize: number;
  /** Seconds a vanished client's computations are kept before they are closed. */
  readonly zombieInterval: number;
  /** Set once the scheduler is shutting down. */
  readonly stopping: boolean;
  /** Options every internal cluster gets (node credentials, TLS, heartbeats, discovery). */
  clusterOptions(): JobClusterOptions;
  /** An internal cluster started (the HTTP server follows it); `exclusive` as its computation. */
  clusterStarted(cluster: JobCluster, exclusive: boolean): void;
  /** What the monitor shows beside a cluster (null clears it), and the sentence for its event log. */
  clusterNote(cluster: JobCluster, note: ClusterNote | null, logText: string): void;
  /** An internal cluster closed (its name stays taken while the HTTP server still shows it). */
  clusterClosed(cluster: JobCluster | null, name: string): void;
}

/** The client that owns a computation: where its events go. */
export interface ComputationOwner {
  /** Identifies the client connection (file areas are kept per owner). */
  readonly key: string;
  /** The client's address (part of cluster names). */
  readonly clientIp: string;
  send(msg: FromScheduler): void;
  /** Job `uid` of this client ended (or was refused): it may be forgotten. */
  jobGone(uid: number): void;
}
