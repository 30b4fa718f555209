/**
 * `GET /metrics` in Prometheus' text exposition format (version 0.0.4): nodes by state, CPUs and
 * busy CPUs, jobs queued / running / done / failed per cluster, each node's jobs done, job time
 * and CPU used, and the server's own HTTP requests and logins. Built from the views the server
 * keeps anyway; nothing is sampled or stored for it.
 */
import { NodeStatus } from '../client/status.js';
import type { NodeJson } from './node-json.js';
import type { ViewRegistry } from './view-registry.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Record<string, string>;

/** Counts of the server's own activity, kept by the routes. */
export class ServerCounters {
  readonly startTime = Date.now();
  /** `method route code` -> requests. */
  readonly requests = new Map<string, number>();
  /** `ok` / `failed` / `limited` -> logins (form and HTTP Basic). */
  readonly logins = new Map<string, number>();
  /** Actions by result. */
  readonly actions = new Map<string, number>();

  request(method: string, route: string, code: number): void {
    const k = `${method} ${route} ${code}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  }

  login(result: 'ok' | 'failed' | 'limited'): void {
    this.logins.set(result, (this.logins.get(result) ?? 0) + 1);
  }

  action(action: string, result: string): void {
    const k = `${action} ${result}`;
    this.actions.set(k, (this.actions.get(k) ?? 0) + 1);
  }
}

/** A label value escaped as the format wants: backslash, double quote and line feed. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function value(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** Writes metric families: each `# HELP`, `# TYPE` and its samples together, as the format requires. */
class Writer {
  readonly #lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter', help: string, samples: Iterable<[Labels, number]>): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) {
      const keys = Object.keys(labels);
      const l = keys.length ? `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}` : '';
      this.#lines.push(`${name}${l} ${value(v)}`);
    }
  }

  toString(): string {
    return `${this.#lines.join('\n')}\n`;
  }
}

export type NodeStateName = 'idle' | 'busy' | 'full' | 'closed';
export const NODE_STATES: readonly NodeStateName[] = ['idle', 'busy', 'full', 'closed'];

/** A node's state as the pages show it. */
export function nodeState(n: NodeJson): NodeStateName {
  if (n.status === NodeStatus.Closed) return 'closed';
  if (n.busy <= 0) return 'idle';
  return n.cpus > 0 && n.busy >= n.cpus ? 'full' : 'busy';
}

export interface MetricsSources {
  registry: ViewRegistry;
  counters: ServerCounters;
  sseViewers: number;
  historySize: number;
  historyCapacity: number;
  eventLogSize: number;
}

/** The whole exposition. */
export function renderMetrics(s: MetricsSources): string {
  const w = new Writer();
  const views = [...s.registry.views];
  const nodeRows: { cluster: string; n: NodeJson }[] = [];
  for (const v of views) for (const n of v.nodes()) nodeRows.push({ cluster: v.name, n });

  w.family('dispyts_clusters', 'gauge', 'Clusters the server shows.', [[{}, views.length]]);
  w.family(
    'dispyts_nodes',
    'gauge',
    'Nodes of each cluster by state (idle, busy, full, closed).',
    views.flatMap((v) => {
      const by = new Map<NodeStateName, number>(NODE_STATES.map((st) => [st, 0]));
      for (const n of v.nodes()) by.set(nodeState(n), by.get(nodeState(n))! + 1);
      return NODE_STATES.map((st) => [{ cluster: v.name, state: st }, by.get(st)!] as [Labels, number]);
    }),
  );
  const open = (n: NodeJson): boolean => n.status !== NodeStatus.Closed;
  w.family(
    'dispyts_cpus',
    'gauge',
    'CPUs each cluster may use on its usable nodes.',
    views.map((v) => [{ cluster: v.name }, sum(v.nodes(), (n) => (open(n) ? n.cpus : 0))]),
  );
  w.family(
    'dispyts_busy_cpus',
    'gauge',
    "CPUs running each cluster's jobs now.",
    views.map((v) => [{ cluster: v.name }, sum(v.nodes(), (n) => (open(n) ? n.busy : 0))]),
  );
  w.family(
    'dispyts_jobs',
    'gauge',
    'Jobs of each cluster waiting for a CPU (queued) or running.',
    views.flatMap((v) => [
      [{ cluster: v.name, state: 'queued' }, v.counters.queued] as [Labels, number],
      [{ cluster: v.name, state: 'running' }, v.counters.running] as [Labels, number],
    ]),
  );
  // dispy's JSON calls these `submitted`; the metric is named for what it counts.
  w.family(
    'dispyts_jobs_started_total',
    'counter',
    'Jobs of each cluster that started running (a re-run after a lost node counts once).',
    views.map((v) => [{ cluster: v.name }, v.counters.submitted]),
  );
  w.family(
    'dispyts_jobs_done_total',
    'counter',
    'Jobs of each cluster that started and reached a final status.',
    views.map((v) => [{ cluster: v.name }, v.counters.done]),
  );
  w.family(
    'dispyts_jobs_failed_total',
    'counter',
    'Jobs of each cluster that were done but not Finished (terminated, cancelled or abandoned).',
    views.map((v) => [{ cluster: v.name }, v.counters.failed]),
  );

  w.family(
    'dispyts_node_info',
    'gauge',
    "A node's name and platform (always 1).",
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr, name: n.name, platform: n.platform }, 1]),
  );
  w.family(
    'dispyts_node_up',
    'gauge',
    'Whether the cluster can use the node (1) or it is closed (0).',
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, open(n) ? 1 : 0]),
  );
  w.family(
    'dispyts_node_cpus',
    'gauge',
    'CPUs the cluster may use on the node.',
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.cpus]),
  );
  w.family(
    'dispyts_node_available_cpus',
    'gauge',
    'CPUs the node offers.',
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.avail_cpus]),
  );
  w.family(
    'dispyts_node_busy_cpus',
    'gauge',
    "CPUs of the node running the cluster's jobs.",
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.busy]),
  );
  w.family(
    'dispyts_node_jobs_done_total',
    'counter',
    "The cluster's jobs the node ran to an end.",
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.jobs_done]),
  );
  w.family(
    'dispyts_node_job_time_seconds_total',
    'counter',
    "Wall time of the cluster's jobs on the node (dispy's cpu_time).",
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.cpu_time]),
  );
  w.family(
    'dispyts_node_cpu_used_seconds_total',
    'counter',
    "User and system CPU time of the cluster's jobs on the node.",
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.cpu_used]),
  );
  w.family(
    'dispyts_node_sent_bytes_total',
    'counter',
    'Bytes the cluster sent to the node.',
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.tx]),
  );
  w.family(
    'dispyts_node_received_bytes_total',
    'counter',
    'Bytes the cluster received from the node.',
    nodeRows.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.rx]),
  );
  const avail = nodeRows.filter(({ n }) => n.avail_info !== null && open(n));
  // A ratio from 0 to 1, as Prometheus names go; dispy's JSON keeps its percent (`avail_info.cpu`).
  w.family(
    'dispyts_node_available_cpu_ratio',
    'gauge',
    "The node's idle CPU, from 0 to 1.",
    avail.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, Math.min(1, Math.max(0, n.avail_info!.cpu / 100))]),
  );
  w.family(
    'dispyts_node_available_memory_bytes',
    'gauge',
    "The node's available memory.",
    avail.map(({ cluster, n }) => [{ cluster, node: n.ip_addr }, n.avail_info!.memory]),
  );

  const c = s.counters;
  w.family(
    'dispyts_http_requests_total',
    'counter',
    'HTTP requests answered, by method, route and status code.',
    [...c.requests].map(([k, n]) => {
      const [method, route, code] = k.split(' ') as [string, string, string];
      return [{ method, route, code }, n];
    }),
  );
  w.family(
    'dispyts_http_logins_total',
    'counter',
    'Login attempts (form and HTTP Basic) by result: ok, failed, or limited (refused by the rate limit).',
    (['ok', 'failed', 'limited'] as const).map((r) => [{ result: r }, c.logins.get(r) ?? 0]),
  );
  w.family(
    'dispyts_http_actions_total',
    'counter',
    'Actions taken through the API, by endpoint and result (ok, failed, refused).',
    [...c.actions].map(([k, n]) => {
      const [action, result] = k.split(' ') as [string, string];
      return [{ action, result }, n];
    }),
  );
  w.family('dispyts_http_event_stream_viewers', 'gauge', 'Pages following /events now.', [[{}, s.sseViewers]]);
  w.family('dispyts_job_history_records', 'gauge', 'Finished jobs kept for the Jobs page.', [[{}, s.historySize]]);
  w.family('dispyts_job_history_capacity', 'gauge', 'Finished jobs the Jobs page keeps at most.', [[{}, s.historyCapacity]]);
  w.family('dispyts_event_log_entries', 'gauge', 'Entries in the event log.', [[{}, s.eventLogSize]]);
  w.family('dispyts_http_start_time_seconds', 'gauge', 'When the HTTP server started, seconds since the epoch.', [
    [{}, Math.floor(c.startTime / 1000)],
  ]);
  return w.toString();
}

function sum(it: Iterable<NodeJson>, f: (n: NodeJson) => number): number {
  let t = 0;
  for (const n of it) t += f(n);
  return t;
}
