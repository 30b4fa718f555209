/**
 * The scheduler's `--httpd`: one DispyHTTPServer showing every client's cluster (the pages add
 * `* Combined`). A cluster is shown from the moment its computation is scheduled; once closed,
 * its last state stays visible until it is among the oldest beyond the scheduler's `keepClosed`.
 */
import { DispyHTTPServer, type DispyHTTPServerOptions, type HttpServerAddress } from '../httpd/dispy-http-server.js';
import type { JobCluster } from '../client/job-cluster.js';
import type { SchedulerDaemon } from './scheduler-daemon.js';

export class SchedulerMonitor {
  readonly server: DispyHTTPServer;
  readonly #daemon: SchedulerDaemon;
  readonly #add = (cluster: JobCluster): void => {
    this.server.addCluster(cluster);
  };
  readonly #remove = (cluster: JobCluster): void => {
    this.server.delCluster(cluster);
  };

  constructor(daemon: SchedulerDaemon, options: DispyHTTPServerOptions) {
    this.#daemon = daemon;
    this.server = new DispyHTTPServer(null, options);
    daemon.on('cluster', this.#add);
    daemon.on('cluster-removed', this.#remove);
  }

  get listening(): Promise<HttpServerAddress> {
    return this.server.listening;
  }

  /** Stops following the scheduler and closes the server (without waiting for browsers). */
  async close(): Promise<void> {
    this.#daemon.off('cluster', this.#add);
    this.#daemon.off('cluster-removed', this.#remove);
    await this.server.shutdown({ wait: false });
  }
}
