/** A node as one cluster sees it: its resources, this cluster's share of it and its counters. */
import type { AvailInfo } from '../protocol/messages.js';
import type { DispyCluster } from './dispy-cluster.js';
import { NodeStatus, type NodeStatusCode } from './status.js';

export class DispyNode {
  static readonly Initialized = NodeStatus.Initialized;
  static readonly Closed = NodeStatus.Closed;
  static readonly AvailInfo = NodeStatus.AvailInfo;

  ipAddr: string;
  port: number;
  name: string;
  /** CPUs this cluster may use on the node. */
  cpus = 0;
  /** CPUs the daemon offers (its `--cpus`). */
  availCpus = 0;
  /** CPUs of the machine. */
  machineCpus = 0;
  /** This cluster's jobs running on the node now. */
  busy = 0;
  jobsDone = 0;
  /** Sum of job wall seconds (dispy's `cpu_time`). */
  jobTime = 0;
  /** Real user + system CPU seconds of the jobs. */
  cpuUsed = 0;
  /** Bytes sent to and received from the node for this cluster. */
  tx = 0;
  rx = 0;
  /** ms since epoch of the latest change. */
  updateTime = Date.now();
  /** Available CPU %, free memory bytes, free disk bytes, available swap %; null if unknown. */
  availInfo: AvailInfo | null = null;
  platform = '';
  /** `DispyNode.Initialized` while usable, `DispyNode.Closed` once gone. */
  status: NodeStatusCode = NodeStatus.Initialized;
  /** The cluster this view of the node belongs to (not enumerable). */
  declare readonly cluster: DispyCluster;

  constructor(ipAddr: string, port: number, name: string, cluster: DispyCluster) {
    this.ipAddr = ipAddr;
    this.port = port;
    this.name = name;
    Object.defineProperty(this, 'cluster', { value: cluster, enumerable: false });
  }
}
