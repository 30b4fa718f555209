/**
 * The page's picture of the clusters, built from the server's snapshot and deltas. Node records
 * are immutable: a changed node gets a new object, so rows compare by identity and only changed
 * rows re-render. `version` ticks once per applied message (never per node). The `* Combined`
 * view (several clusters) is computed here, incrementally, for the addresses a message touched.
 */
import { signal } from '@preact/signals';
import { ipv4Key } from './format.js';
import { History, Series } from './history.js';
import type { AvailInfoJson, ClusterJson, JobsJson, NodeJson, UpdatesJson } from './types.js';

export type NodeState = 'idle' | 'busy' | 'full' | 'closed' | 'unreachable';

/** dispy's node status numbers. */
export const NODE_CLOSED = 16;

export interface NodeRec {
  ip: string;
  /** IPv4 as a number (NaN for others): the default sort key. */
  ipKey: number;
  name: string;
  port: number;
  cpus: number;
  availCpus: number;
  machineCpus: number;
  busy: number;
  jobsDone: number;
  jobTime: number;
  cpuUsed: number;
  tx: number;
  rx: number;
  /** ms since epoch. */
  updateTime: number;
  avail: AvailInfoJson | null;
  platform: string;
  status: number | string;
  state: NodeState;
}

export interface Jobs {
  submitted: number;
  done: number;
  queued: number;
  running: number;
  failed: number;
}

export interface ClusterView {
  /** Key in the store: the cluster's name, or COMBINED. */
  key: string;
  /** What the page shows. */
  label: string;
  jobs: Jobs;
  nodes: Map<string, NodeRec>;
  closed: boolean;
  shared: boolean;
  /** What the server says of the cluster now (the scheduler's "client gone; closes at …"), or null. */
  note: string | null;
}

/** Key of the view that merges every cluster (a name no cluster can have: it holds a NUL). */
export const COMBINED = '\u0000combined';
export const COMBINED_LABEL = '* Combined';

function num(v: unknown, d = 0): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : d;
}

function cpuOf(r: NodeRec): number {
  return r.avail ? r.avail.cpu : Number.NaN;
}

export function nodeState(status: number | string, busy: number, cpus: number): NodeState {
  if (typeof status === 'string') {
    const s = status.toLowerCase();
    if (s === 'closed') return 'closed';
    if (s === 'unreachable' || s === 'dead' || s === 'abandoned') return 'unreachable';
  } else if (status === NODE_CLOSED) return 'closed';
  if (busy <= 0) return 'idle';
  if (cpus > 0 && busy >= cpus) return 'full';
  return 'busy';
}

export function toNodeRec(j: NodeJson): NodeRec {
  const cpus = num(j.cpus);
  const busy = num(j.busy);
  const status = j.status ?? 4;
  const ip = String(j.ip_addr);
  const a = j.avail_info;
  const avail = a && typeof a === 'object' ? { cpu: num(a.cpu), memory: num(a.memory), disk: num(a.disk), swap: num(a.swap) } : null;
  return {
    ip,
    ipKey: ipv4Key(ip),
    name: typeof j.name === 'string' ? j.name : String(j.name ?? ''),
    port: num(j.port),
    cpus,
    availCpus: num(j.avail_cpus),
    machineCpus: num(j.machine_cpus),
    busy,
    jobsDone: num(j.jobs_done),
    jobTime: num(j.cpu_time),
    cpuUsed: num(j.cpu_used),
    tx: num(j.tx),
    rx: num(j.rx),
    updateTime: num(j.update_time) * 1000,
    avail,
    platform: typeof j.platform === 'string' ? j.platform : '',
    status,
    state: nodeState(status, busy, cpus),
  };
}

function toJobs(j: Partial<JobsJson> | undefined): Jobs {
  return {
    submitted: num(j?.submitted),
    done: num(j?.done),
    queued: num(j?.queued),
    running: num(j?.running, Math.max(0, num(j?.submitted) - num(j?.done))),
    failed: num(j?.failed),
  };
}

function sameNode(a: NodeRec, b: NodeRec): boolean {
  for (const k in a) {
    const ka = k as keyof NodeRec;
    if (ka === 'avail') continue;
    if (a[ka] !== b[ka] && !(Number.isNaN(a[ka]) && Number.isNaN(b[ka]))) return false;
  }
  const x = a.avail;
  const y = b.avail;
  if (x === y) return true;
  if (!x || !y) return false;
  return x.cpu === y.cpu && x.memory === y.memory && x.disk === y.disk && x.swap === y.swap;
}

/** Merges one address's records across clusters (dispy's combined view, made consistent). */
export function combineNodes(recs: NodeRec[]): NodeRec {
  const first = recs[0]!;
  if (recs.length === 1) return first;
  let busy = 0;
  let jobsDone = 0;
  let jobTime = 0;
  let cpuUsed = 0;
  let tx = 0;
  let rx = 0;
  let cpus = 0;
  let updateTime = 0;
  let open = false;
  let availCpus = 0;
  for (const r of recs) {
    busy += r.busy;
    jobsDone += r.jobsDone;
    jobTime += r.jobTime;
    cpuUsed += r.cpuUsed;
    tx += r.tx;
    rx += r.rx;
    if (r.state !== 'closed') {
      cpus += r.cpus;
      open = true;
    }
    updateTime = Math.max(updateTime, r.updateTime);
    availCpus = Math.max(availCpus, r.availCpus);
  }
  // Clusters of one process share a node's CPUs: together they never use more than it offers.
  if (availCpus > 0) cpus = Math.min(cpus, availCpus);
  const latest = recs.reduce((a, b) => (b.updateTime > a.updateTime ? b : a));
  const status = open ? recs.find((r) => r.state !== 'closed')!.status : first.status;
  return {
    ...first,
    availCpus,
    avail: latest.avail ?? first.avail,
    cpus,
    busy,
    jobsDone,
    jobTime,
    cpuUsed,
    tx,
    rx,
    updateTime,
    status,
    state: open ? nodeState(status, busy, cpus) : 'closed',
  };
}

export interface ApplyResult {
  /** Whether the whole picture was replaced. */
  full: boolean;
  /** Addresses whose record changed (in any view). */
  changed: Set<string>;
}

export class ClusterStore {
  /** Ticks once per applied message. Components read it to re-render. */
  readonly version = signal(0);
  /** Real clusters in the server's order. */
  readonly clusters = new Map<string, ClusterView>();
  /** The `* Combined` view (kept while there are two clusters or more). */
  combined: ClusterView | null = null;
  /** Per-view, per-node samples of busy CPUs and available CPU %. */
  readonly history = new History();
  /** Per-view samples of jobs done (for the throughput chart). */
  readonly done = new Map<string, Series>();
  /** What the last message changed. */
  last: ApplyResult = { full: true, changed: new Set() };
  /** ms of the first message applied: where history charts start. */
  since = 0;

  /** A view by key (a cluster's name or COMBINED). */
  view(key: string): ClusterView | undefined {
    return key === COMBINED ? (this.combined ?? undefined) : this.clusters.get(key);
  }

  /** Keys of the views a selector offers: `* Combined` first when there are several clusters. */
  viewKeys(): string[] {
    const keys = [...this.clusters.keys()];
    return keys.length > 1 ? [COMBINED, ...keys] : keys;
  }

  /** Applies a snapshot (`full`) or a delta. */
  apply(u: UpdatesJson, full: boolean, now = Date.now()): ApplyResult {
    const changed = new Set<string>();
    const touchedClusters = new Set<string>();
    if (full) {
      const old = this.clusters;
      const fresh = new Map<string, ClusterView>();
      for (const c of u.clusters ?? []) {
        if (c.removed) continue;
        const prev = old.get(c.name);
        const view: ClusterView = {
          key: c.name,
          label: c.name,
          jobs: toJobs(c.jobs),
          nodes: new Map(),
          closed: !!c.closed,
          shared: !!c.shared,
          note: typeof c.note === 'string' ? c.note : null,
        };
        for (const n of c.nodes ?? []) {
          if (n.removed) continue;
          const rec = toNodeRec(n);
          const p = prev?.nodes.get(rec.ip);
          if (p && sameNode(p, rec)) {
            view.nodes.set(rec.ip, p);
            continue;
          }
          view.nodes.set(rec.ip, rec);
          changed.add(rec.ip);
          if (p) this.#sample(c.name, p, rec, now);
        }
        for (const ip of prev?.nodes.keys() ?? []) if (!view.nodes.has(ip)) changed.add(ip);
        fresh.set(c.name, view);
        touchedClusters.add(c.name);
      }
      for (const [name, v] of old) if (!fresh.has(name)) for (const ip of v.nodes.keys()) changed.add(ip);
      this.clusters.clear();
      for (const [k, v] of fresh) this.clusters.set(k, v);
    } else {
      // Removals first: a cluster removed and added again within one delta comes back fresh.
      for (const name of Array.isArray(u.removed_clusters) ? u.removed_clusters : []) {
        const view = this.clusters.get(String(name));
        if (!view) continue;
        for (const ip of view.nodes.keys()) changed.add(ip);
        this.clusters.delete(String(name));
      }
      for (const c of u.clusters ?? []) {
        let view = this.clusters.get(c.name);
        if (c.removed) {
          if (view) for (const ip of view.nodes.keys()) changed.add(ip);
          this.clusters.delete(c.name);
          continue;
        }
        if (!view) {
          view = { key: c.name, label: c.name, jobs: toJobs(c.jobs), nodes: new Map(), closed: false, shared: false, note: null };
          this.clusters.set(c.name, view);
        }
        touchedClusters.add(c.name);
        if (c.jobs) view.jobs = toJobs(c.jobs);
        if (c.closed !== undefined) view.closed = !!c.closed;
        if (c.shared !== undefined) view.shared = !!c.shared;
        if (c.note !== undefined) view.note = typeof c.note === 'string' ? c.note : null;
        for (const n of c.nodes ?? []) {
          const ip = String(n.ip_addr);
          if (n.removed) {
            if (view.nodes.delete(ip)) changed.add(ip);
            continue;
          }
          const rec = toNodeRec(n);
          const p = view.nodes.get(ip);
          if (p && sameNode(p, rec)) continue;
          view.nodes.set(ip, rec);
          changed.add(ip);
          if (p) this.#sample(c.name, p, rec, now);
        }
        for (const ip of c.removed_nodes ?? []) if (view.nodes.delete(String(ip))) changed.add(String(ip));
      }
    }
    if (!this.since) this.since = now;
    this.#updateCombined(full, changed, now);
    this.#recordDone(now);
    this.last = { full, changed };
    this.version.value++;
    return this.last;
  }

  /** Forgets everything (the server's epoch changed and it sent nothing yet). */
  clear(): void {
    this.clusters.clear();
    this.combined = null;
    this.last = { full: true, changed: new Set() };
    this.version.value++;
  }

  #updateCombined(full: boolean, changed: Set<string>, now: number): void {
    if (this.clusters.size < 2) {
      this.combined = null;
      return;
    }
    const jobs: Jobs = { submitted: 0, done: 0, queued: 0, running: 0, failed: 0 };
    let closed = true;
    let shared = false;
    for (const v of this.clusters.values()) {
      jobs.submitted += v.jobs.submitted;
      jobs.done += v.jobs.done;
      jobs.queued += v.jobs.queued;
      jobs.running += v.jobs.running;
      jobs.failed += v.jobs.failed;
      closed &&= v.closed;
      shared ||= v.shared;
    }
    const rebuild = full || !this.combined;
    const c: ClusterView =
      this.combined && !rebuild
        ? this.combined
        : { key: COMBINED, label: COMBINED_LABEL, jobs, nodes: new Map(), closed, shared, note: null };
    c.jobs = jobs;
    c.closed = closed;
    c.shared = shared;
    const ips = rebuild ? this.#allIps() : changed;
    for (const ip of ips) {
      const recs: NodeRec[] = [];
      for (const v of this.clusters.values()) {
        const r = v.nodes.get(ip);
        if (r) recs.push(r);
      }
      if (recs.length === 0) c.nodes.delete(ip);
      else {
        const rec = combineNodes(recs);
        const p = c.nodes.get(ip);
        c.nodes.set(ip, rec);
        if (p) this.#sample(COMBINED, p, rec, now);
      }
    }
    this.combined = c;
  }

  #allIps(): Set<string> {
    const s = new Set<string>();
    for (const v of this.clusters.values()) for (const ip of v.nodes.keys()) s.add(ip);
    return s;
  }

  #recordDone(now: number): void {
    const views = this.combined ? [...this.clusters.values(), this.combined] : [...this.clusters.values()];
    for (const v of views) {
      let s = this.done.get(v.key);
      if (!s) {
        s = new Series();
        this.done.set(v.key, s);
      }
      s.push(now, v.jobs.done);
    }
  }

  /**
   * A history sample for a node whose record changed from `prev` to `rec`. A node's series
   * starts at its first change, seeded with the values it held since its last update (or since
   * the page started): a snapshot of 1,000 nodes costs no sampling at all.
   */
  #sample(view: string, prev: NodeRec, rec: NodeRec, now: number): void {
    if (!this.history.has(view, rec.ip))
      this.history.push(view, rec.ip, Math.min(now, Math.max(this.since, prev.updateTime)), prev.busy, cpuOf(prev));
    this.history.push(view, rec.ip, now, rec.busy, cpuOf(rec));
  }
}

/** Totals of a view's nodes (the table's totals row). */
export function totals(v: ClusterView): {
  nodes: number;
  cpus: number;
  busy: number;
  jobsDone: number;
  jobTime: number;
  cpuUsed: number;
  tx: number;
  rx: number;
} {
  const t = { nodes: 0, cpus: 0, busy: 0, jobsDone: 0, jobTime: 0, cpuUsed: 0, tx: 0, rx: 0 };
  for (const r of v.nodes.values()) {
    t.nodes++;
    if (r.state !== 'closed') t.cpus += r.cpus;
    t.busy += r.busy;
    t.jobsDone += r.jobsDone;
    t.jobTime += r.jobTime;
    t.cpuUsed += r.cpuUsed;
    t.tx += r.tx;
    t.rx += r.rx;
  }
  return t;
}

/** Adapts what the server sent to UpdatesJson (tolerates dispy's plain array). */
export function asUpdates(body: unknown): UpdatesJson | null {
  if (Array.isArray(body)) return { epoch: '', cursor: 0, resync: true, clusters: body as ClusterJson[] };
  if (body && typeof body === 'object' && Array.isArray((body as UpdatesJson).clusters)) return body as UpdatesJson;
  return null;
}
