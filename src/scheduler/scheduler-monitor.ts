/**
 * The scheduler's `--httpd`: one DispyHTTPServer showing every client's cluster (the pages add
 * `* Combined`). A cluster is shown from the moment its computation is scheduled; once closed,
 * its last state stays visible until it is among the oldest beyond the scheduler's `keepClosed`.
 * The server sees each cluster through a MonitoredCluster, which keeps the scheduler's rules:
 * the nodes' CPUs are the scheduler's, so only an exclusive computation (or any, with
 * `--cooperative`) may change them, and the documents say `"shared": true` otherwise (the Manage
 * page then offers no CPU editing). A computation whose client is gone shows "client gone;
 * closes at …" there and in the event log.
 */
import type { DispyJob } from '../client/dispy-job.js';
import type { DispyNode } from '../client/dispy-node.js';
import type { JobCluster } from '../client/job-cluster.js';
import type { NodeSpec } from '../client/node-allocate.js';
import type { DispyStatus } from '../client/status.js';
import type { ClusterNote, ViewedCluster } from '../httpd/cluster-view.js';
import { DispyHTTPServer, type DispyHTTPServerOptions, type HttpServerAddress } from '../httpd/dispy-http-server.js';
import { DispyError } from '../errors.js';
import type { SchedulerDaemon } from './scheduler-daemon.js';

type StatusListener = (e: { status: DispyStatus; node: DispyNode | null; job: DispyJob | null }) => void;

/** One computation's cluster as the monitor may act on it. */
export class MonitoredCluster implements ViewedCluster {
  readonly cluster: JobCluster;
  /** Whether its nodes' CPUs are not its to change (neither exclusive nor a --cooperative scheduler). */
  readonly shared: boolean;

  constructor(cluster: JobCluster, shared: boolean) {
    this.cluster = cluster;
    this.shared = shared;
  }

  get name(): string {
    return this.cluster.name;
  }

  get closed(): boolean {
    return this.cluster.closed;
  }

  on(event: 'status', listener: StatusListener): this {
    this.cluster.on(event, listener);
    return this;
  }

  off(event: 'status', listener: StatusListener): this {
    this.cluster.off(event, listener);
    return this;
  }

  status(): { nodes: DispyNode[] } {
    return this.cluster.status();
  }

  cancel(job: DispyJob, options?: { grace?: number }): Promise<number> {
    return this.cluster.cancel(job, options);
  }

  allocateNode(spec: unknown): Promise<number> {
    return this.cluster.allocateNode(spec as NodeSpec);
  }

  deallocateNode(node: DispyNode | string): Promise<number> {
    return this.cluster.deallocateNode(node);
  }

  closeNode(node: DispyNode | string, options?: { terminatePending?: boolean }): Promise<number> {
    return this.cluster.closeNode(node, options);
  }

  async setNodeCpus(node: DispyNode | string, cpus: number): Promise<number> {
    if (this.shared)
      throw new DispyError(
        'DISPY_ERR_FORBIDDEN',
        `cluster ${this.name} shares its nodes with other programs: only an exclusive computation, or any with a --cooperative scheduler, may change their CPUs`,
      );
    return this.cluster.setNodeCpus(node, cpus);
  }
}

export class SchedulerMonitor {
  readonly server: DispyHTTPServer;
  readonly #daemon: SchedulerDaemon;
  readonly #shown = new Map<JobCluster, MonitoredCluster>();
  readonly #add = (cluster: JobCluster, exclusive: boolean): void => {
    const m = new MonitoredCluster(cluster, !exclusive && !this.#daemon.cooperative);
    this.#shown.set(cluster, m);
    this.server.addCluster(m);
  };
  readonly #remove = (cluster: JobCluster): void => {
    const m = this.#shown.get(cluster);
    if (!m) return;
    this.#shown.delete(cluster);
    this.server.delCluster(m);
  };
  readonly #note = (cluster: JobCluster, note: ClusterNote | null, text: string): void => {
    const m = this.#shown.get(cluster);
    if (m) this.server._setClusterNote(m, note, text);
  };

  constructor(daemon: SchedulerDaemon, options: DispyHTTPServerOptions) {
    this.#daemon = daemon;
    this.server = new DispyHTTPServer(null, options);
    daemon.on('cluster', this.#add);
    daemon.on('cluster-removed', this.#remove);
    daemon.on('cluster-note', this.#note);
  }

  get listening(): Promise<HttpServerAddress> {
    return this.server.listening;
  }

  /** Stops following the scheduler and closes the server (without waiting for browsers). */
  async close(): Promise<void> {
    this.#daemon.off('cluster', this.#add);
    this.#daemon.off('cluster-removed', this.#remove);
    this.#daemon.off('cluster-note', this.#note);
    await this.server.shutdown({ wait: false });
  }
}
