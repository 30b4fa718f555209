/** The JSON the pages read: dispy's shapes (dispy-reference §7.3) plus dispyts' extensions. */

// The server's own declaration (a type only: nothing of the server reaches the bundle).
import type { AvailInfoJson } from '../../httpd/node-json.js';
export type { AvailInfoJson };

export interface NodeJson {
  ip_addr: string;
  name: string;
  cpus: number;
  avail_cpus: number;
  busy: number;
  jobs_done: number;
  /** Sum of job wall seconds (dispy's `cpu_time`). */
  cpu_time: number;
  tx: number;
  rx: number;
  /** Epoch seconds. */
  update_time: number;
  avail_info: AvailInfoJson | null;
  port?: number;
  machine_cpus?: number;
  /** Real user + system CPU seconds. */
  cpu_used?: number;
  /** 4 Initialized, 16 Closed (dispy's numbers); a string from servers that say more. */
  status?: number | string;
  platform?: string;
  /** Set on a node that left the view (a removal). */
  removed?: boolean;
}

export interface JobsJson {
  submitted: number;
  done: number;
  queued?: number;
  running?: number;
  failed?: number;
}

export interface ClusterJson {
  name: string;
  jobs: JobsJson;
  nodes: NodeJson[];
  /** Addresses of nodes that left this cluster's view since the cursor. */
  removed_nodes?: string[];
  /** Set when the whole cluster left the view. */
  removed?: boolean;
  /** Whether the cluster was closed (its last state stays visible). */
  closed?: boolean;
  /** Whether it is a SharedJobCluster (its CPUs cannot be set). */
  shared?: boolean;
  [extra: string]: unknown;
}

/** `GET /cluster_updates?since=…`, and each SSE message. */
export interface UpdatesJson {
  epoch: string;
  cursor: string | number;
  resync: boolean;
  clusters: ClusterJson[];
  /** Names of clusters that left the view after the cursor. */
  removed_clusters?: string[];
  poll_sec?: number;
  [extra: string]: unknown;
}

export interface JobJson {
  uid: number;
  job_id: string;
  args: string;
  kwargs: string;
  start_time_ms: number;
  cluster: string;
  submit_time_ms?: number;
  status?: number | string;
}

export interface NodeInfoJson {
  node: NodeJson;
  cluster_jobs: Record<string, JobJson[]>;
}
