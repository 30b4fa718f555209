/** The JSON the pages read: dispy's shapes (dispy-reference §7.3) plus dispyts' extensions. */

// The server's own declarations (types only: nothing of the server reaches the bundle).
import type { AvailInfoJson } from '../../httpd/node-json.js';
import type { EventEntry } from '../../httpd/event-log.js';
import type { JobRecordJson } from '../../httpd/job-history.js';
export type { AvailInfoJson, EventEntry, JobRecordJson };

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
  /** Whether its nodes' CPUs are not its to set (a SharedJobCluster, or a scheduler's non-exclusive computation). */
  shared?: boolean;
  /** What the server says of the cluster now, e.g. "client gone; closes at …" (null once cleared). */
  note?: string | null;
  /** When the cluster closes on its own, epoch seconds. */
  closes_at?: number;
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

/** `GET /whoami`. */
export interface WhoAmIJson {
  user: string;
  role: 'admin' | 'viewer';
  via: 'session' | 'basic' | 'token' | 'loopback' | 'open';
  can_act: boolean;
  /** Whether users sign in on this server (sign-out makes sense). */
  login: boolean;
  session_expires_ms: number | null;
}

/** `GET /event_log` and each `log` event of `/events`. */
export interface EventLogJson {
  cursor: number;
  resync: boolean;
  entries: EventEntry[];
  capacity?: number;
  size?: number;
}

/** `GET /job_history`. */
export interface JobHistoryJson {
  seq: number;
  capacity: number;
  size: number;
  matched: number;
  more: boolean;
  jobs: JobRecordJson[];
}
