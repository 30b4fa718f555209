/**
 * What a node daemon tells about itself: `NodeDaemon.status()`, shown by its page
 * (node-page.ts, node-httpd.ts), and the `info` and `pulse` messages its clients get.
 */
import type { AvailInfo, NodeMessage } from '../protocol/messages.js';
import { platformString } from './host-metrics.js';
import type { NodeScheduler } from './node-scheduler.js';
import type { ServedClient } from './served-client.js';

/** The daemon's facts its status and messages tell (NodeDaemon has them). */
export interface NodeFacts {
  readonly host: string;
  readonly port: number;
  readonly name: string;
  readonly nodeId: string;
  readonly tls: 'off' | 'tls' | 'mutual';
  readonly machineCpus: number;
  readonly cpus: number;
  readonly cpuLimit: number;
  readonly draining: boolean;
  readonly startTime: number;
  readonly maxMessageSize: number;
}

/** What the daemon knows besides its facts: its scheduler (once started) and its client. */
export interface NodeNow {
  scheduler: NodeScheduler | undefined;
  owner: ServedClient | null;
  served: number;
  stopping: boolean;
}

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

/** A read-only picture of the node for its page: CPUs, its client, running jobs, uptime. */
export function nodeStatus(d: NodeFacts, now: NodeNow): NodeDaemonStatus {
  const scheduler = now.scheduler;
  return {
    host: d.host,
    port: d.port,
    name: d.name,
    nodeId: d.nodeId,
    platform: platformString(),
    tls: d.tls,
    machineCpus: d.machineCpus,
    cpus: d.cpus,
    cpuLimit: d.cpuLimit,
    busy: scheduler?.busyJobs() ?? 0,
    running: scheduler?.running ?? 0,
    queued: scheduler?.queued ?? 0,
    draining: d.draining,
    stopping: now.stopping,
    startTime: d.startTime,
    served: now.served,
    ...clientStatus(now.owner),
  };
}

/** The `info` a client gets on each new connection. */
export function infoMessage(d: NodeFacts, availInfo: AvailInfo, busy: boolean): NodeMessage {
  return {
    t: 'info',
    nodeId: d.nodeId,
    name: d.name,
    ipAddr: d.host,
    port: d.port,
    machineCpus: d.machineCpus,
    cpus: d.cpus,
    cpuLimit: d.cpuLimit,
    draining: d.draining,
    platform: platformString(),
    availInfo,
    busy,
    maxMessageSize: d.maxMessageSize,
  };
}

/** The heartbeat the served client gets: the node's load and CPUs, whether it drains. */
export function pulseMessage(d: NodeFacts, availInfo: AvailInfo, busy: number): NodeMessage {
  return {
    t: 'pulse',
    availInfo,
    busy,
    cpus: d.cpus,
    cpuLimit: d.cpuLimit,
    draining: d.draining,
  };
}
