/**
 * What a node daemon tells about itself (`NodeDaemon.status()`): shown by its page
 * (node-page.ts, node-httpd.ts).
 */
import type { ServedClient } from './served-client.js';

/** What `NodeDaemon.status()` tells. */
export interface NodeDaemonStatus {
  host: string;
  port: number;
  name: string;
  nodeId: string;
  platform: string;
  tls: 'off' | 'tls' | 'mutual';
  machineCpus: number;
  /** CPUs the daemon was started with (`--cpus`, resolved). */
  cpus: number;
  /** CPUs it runs jobs on now (setCpuLimit). */
  cpuLimit: number;
  /** Jobs running now. */
  busy: number;
  /** Jobs handed to runners (running or about to). */
  running: number;
  /** Jobs accepted and waiting for a runner. */
  queued: number;
  draining: boolean;
  stopping: boolean;
  /** ms since epoch. */
  startTime: number;
  /** Clients served to the end so far. */
  served: number;
  /** The client program the node serves now, if any. */
  client: null | {
    clientId: string;
    /** Its open connections (address:port). */
    peers: string[];
    since: number;
    computations: { id: string; cluster: string; cap: number; running: number; queued: number; closing: boolean }[];
  };
  jobs: { uid: number; computeId: string; cluster: string; state: 'queued' | 'assigned' | 'running'; startTime: number | null }[];
}

/** The served client's part of the status: its connections, computations and jobs. */
export function clientStatus(owner: ServedClient | null): Pick<NodeDaemonStatus, 'client' | 'jobs'> {
  const jobs: NodeDaemonStatus['jobs'] = [];
  for (const j of owner?.jobs.values() ?? [])
    jobs.push({ uid: j.uid, computeId: j.comp.id, cluster: j.comp.cluster, state: j.state, startTime: j.startTime || null });
  return {
    client: owner
      ? {
          clientId: owner.clientId,
          peers: [...owner.channels].filter((c) => !c.closed).map((c) => c.peer),
          since: owner.since,
          computations: [...owner.comps.values()].map((c) => ({
            id: c.id,
            cluster: c.cluster,
            cap: c.cap,
            running: c.running,
            queued: c.queued,
            closing: c.closing,
          })),
        }
      : null,
    jobs,
  };
}
