/**
 * What the HTTP server shows of one cluster, kept up to date event by event (never rebuilt per
 * request): its job counters, every node it has used (closed ones included) serialized once per
 * change, and the jobs running on each node. Finished jobs are not kept.
 *
 * Counters follow DESIGN.md §4: `submitted` counts jobs that started running (a reentrant re-run
 * counts once), `done` those of them that reached a final status (so done <= submitted),
 * `queued` jobs waiting to run (re-queued reentrant jobs included), `running`, and `failed`
 * (done but not Finished). A job cancelled while queued counts in none of them.
 */
import type { DispyCluster } from '../client/dispy-cluster.js';
import type { DispyJob } from '../client/dispy-job.js';
import type { DispyNode } from '../client/dispy-node.js';
import { JobStatus, NodeStatus, isFinal, type DispyStatus } from '../client/status.js';
import type { ChangeLog } from './change-log.js';
import { jobJson, nodeJson, type JobJson, type NodeJson } from './node-json.js';

/** A status event as the server reads it. */
type ViewedEvent = { status: DispyStatus; node: DispyNode | null; job: DispyJob | null };

/**
 * What the server needs of a cluster, taken from DispyCluster (what JobCluster and
 * SharedJobCluster implement): its name and event stream, and (for the actions, each optional
 * so a stand-in may leave it out) the management methods. `shared` says whether its nodes'
 * CPUs are a scheduler's (adding a node then ignores CPUs).
 */
export interface ViewedCluster
  extends Pick<DispyCluster, 'name'>,
    Partial<Pick<DispyCluster, 'cancel' | 'allocateNode' | 'deallocateNode' | 'closeNode' | 'setNodeCpus' | 'closed' | 'shared'>> {
  on(event: 'status', listener: (e: ViewedEvent) => void): unknown;
  off(event: 'status', listener: (e: ViewedEvent) => void): unknown;
  status?(): { nodes: DispyNode[] };
}

/** A note on a cluster the pages show beside its name (with `closes_at`, epoch seconds, when it closes on its own). */
export interface ClusterNote {
  text: string;
  /** ms since epoch. */
  closesAt?: number;
}

export interface JobCounters {
  submitted: number;
  done: number;
  queued: number;
  running: number;
  failed: number;
}

interface NodeEntry {
  data: NodeJson;
  /** `data` serialized, reused by every response until the node changes. */
  json: string;
  /** `json` as UTF-8, made when a full document needs it (null after a change). */
  bytes: Buffer | null;
  /** Sequence number of the node's latest change. */
  seq: number;
  /** Jobs running on the node, by uid. */
  running: Map<number, DispyJob>;
}

const COMMA = Buffer.from(',');

/** A node's change worth an entry in the event log. */
export type NodeChange =
  | { kind: 'arrived'; rejoined: boolean }
  | { kind: 'left' }
  /** Closed while running jobs, which were abandoned or re-queued: the cluster lost it. */
  | { kind: 'died'; jobs: number }
  | { kind: 'cpus'; from: number; to: number };

/** Told of what a view sees beyond counters and nodes: finished jobs and node changes. */
export interface ViewObserver {
  jobEnded(view: ClusterView, status: DispyStatus, node: DispyNode | null, job: DispyJob): void;
  nodeChanged(view: ClusterView, node: NodeJson, change: NodeChange): void;
}

export class ClusterView {
  readonly cluster: ViewedCluster;
  /** Unique among the server's clusters (a clash gets a suffix). */
  readonly name: string;
  /** `name` as a JSON string literal. */
  readonly nameJson: string;
  /** Whether the cluster is a SharedJobCluster (the documents say `"shared": true`). */
  readonly shared: boolean;
  /** `"shared":true,` for a shared cluster, '' otherwise (dispy's shapes stay as they were). */
  readonly sharedJson: string;
  /** What its owner says of the cluster now (a scheduler: its client is gone), or null. */
  #note: ClusterNote | null = null;
  #noteJson = '';
  readonly #log: ChangeLog;
  readonly #nodes = new Map<string, NodeEntry>();
  readonly #counters: JobCounters = { submitted: 0, done: 0, queued: 0, running: 0, failed: 0 };
  #countersJson = JSON.stringify(this.#counters);
  /** Sequence number of the latest change of the counters (or of the view's creation). */
  #countersSeq: number;
  /** Sequence number of the view's latest change of any kind. */
  #seq: number;
  /** Uids of jobs waiting to run. */
  readonly #queued = new Set<number>();
  /** Uids of jobs that ran, were re-queued (reentrant) and have not run again yet. */
  readonly #requeued = new Set<number>();
  /** Running jobs: uid -> the node's address. */
  readonly #running = new Map<number, string>();
  #allNodes: { seq: number; json: string } | null = null;
  readonly #observer: ViewObserver | null;
  /** While recording the nodes a cluster had before it was followed: no node events. */
  #bootstrapping = false;
  /** Per node address: how many of its running jobs were abandoned or re-queued since it was last usable. */
  readonly #lost = new Map<string, number>();

  constructor(cluster: ViewedCluster, name: string, log: ChangeLog, observer: ViewObserver | null = null) {
    this.cluster = cluster;
    this.name = name;
    this.nameJson = JSON.stringify(name);
    this.shared = isSharedCluster(cluster);
    this.sharedJson = this.shared ? '"shared":true,' : '';
    this.#log = log;
    this.#observer = observer;
    this.#countersSeq = this.#seq = log.next();
  }

  /** The fields before `jobs` in the documents: `shared`, and the note while there is one. */
  get flagsJson(): string {
    return this.sharedJson + this.#noteJson;
  }

  get note(): ClusterNote | null {
    return this.#note;
  }

  /** Sets or clears the note; viewers get it with their next delta. */
  setNote(note: ClusterNote | null): void {
    this.#note = note;
    // Once cleared, `"note":null` tells a viewer holding a delta cursor that it is gone.
    this.#noteJson = note
      ? `"note":${JSON.stringify(note.text)},${note.closesAt === undefined ? '' : `"closes_at":${Math.round(note.closesAt / 1000)},`}`
      : this.#noteJson
        ? '"note":null,'
        : '';
    this.#seq = this.#log.next();
  }

  /** Latest change of anything in this view. */
  get seq(): number {
    return this.#seq;
  }

  get counters(): Readonly<JobCounters> {
    return this.#counters;
  }

  get countersJson(): string {
    return this.#countersJson;
  }

  get countersSeq(): number {
    return this.#countersSeq;
  }

  get nodeCount(): number {
    return this.#nodes.size;
  }

  /** Records the nodes a cluster already has when the server starts following it. */
  bootstrap(): void {
    let nodes: DispyNode[] = [];
    try {
      nodes = this.cluster.status?.().nodes ?? [];
    } catch {
      nodes = [];
    }
    this.#bootstrapping = true;
    try {
      for (const n of nodes) this.#touchNode(n);
    } finally {
      this.#bootstrapping = false;
    }
  }

  /** Applies one status event of the cluster. */
  apply(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    if (job && typeof job._uid === 'number') this.#applyJob(status, node, job);
    if (node && typeof node.ipAddr === 'string') this.#touchNode(node);
  }

  #applyJob(status: DispyStatus, node: DispyNode | null, job: DispyJob): void {
    const uid = job._uid;
    const c = this.#counters;
    const before = this.#countersJson;
    if (status === JobStatus.Created) {
      const ip = this.#running.get(uid);
      if (ip !== undefined) {
        // Re-queued after its node died (reentrant): it was counted as submitted already.
        this.#dropRunning(uid, ip);
        this.#requeued.add(uid);
        this.#lostJob(ip);
      }
      if (!this.#queued.has(uid)) {
        this.#queued.add(uid);
        c.queued++;
      }
    } else if (status === JobStatus.Running) {
      if (this.#queued.delete(uid)) c.queued--;
      if (!this.#running.has(uid) && node) {
        if (!this.#requeued.delete(uid)) c.submitted++;
        const ip = node.ipAddr;
        this.#running.set(uid, ip);
        this.#entry(node).running.set(uid, job);
        c.running++;
      }
    } else if (isFinal(status)) {
      if (status === JobStatus.Abandoned && node) this.#lostJob(node.ipAddr);
      this.#observer?.jobEnded(this, status, node, job);
      const ip = this.#running.get(uid);
      if (ip !== undefined) {
        this.#dropRunning(uid, ip);
        c.done++;
        if (status !== JobStatus.Finished) c.failed++;
      } else if (this.#queued.delete(uid)) {
        c.queued--;
        // A re-queued reentrant job that ends before running again was submitted once: done.
        if (this.#requeued.delete(uid)) {
          c.done++;
          c.failed++;
        }
      } else if (node && job.startTime !== null && job.startTime !== undefined) {
        // It started before this server followed the cluster.
        c.submitted++;
        c.done++;
        if (status !== JobStatus.Finished) c.failed++;
      }
    }
    const after = JSON.stringify(c);
    if (after !== before) {
      this.#countersJson = after;
      this.#countersSeq = this.#seq = this.#log.next();
    }
  }

  #lostJob(ip: string): void {
    this.#lost.set(ip, (this.#lost.get(ip) ?? 0) + 1);
  }

  #dropRunning(uid: number, ip: string): void {
    this.#running.delete(uid);
    this.#nodes.get(ip)?.running.delete(uid);
    this.#counters.running--;
  }

  #entry(node: DispyNode): NodeEntry {
    let e = this.#nodes.get(node.ipAddr);
    if (!e) {
      const data = nodeJson(node);
      const seq = this.#log.next();
      this.#seq = seq;
      e = { data, json: JSON.stringify(data), bytes: null, seq, running: new Map() };
      this.#nodes.set(node.ipAddr, e);
      if (!this.#bootstrapping)
        this.#observer?.nodeChanged(
          this,
          data,
          data.status === NodeStatus.Closed ? { kind: 'left' } : { kind: 'arrived', rejoined: false },
        );
    }
    return e;
  }

  #touchNode(node: DispyNode): void {
    const existing = this.#nodes.get(node.ipAddr);
    if (!existing) {
      this.#entry(node);
      return;
    }
    const data = nodeJson(node);
    const json = JSON.stringify(data);
    if (json === existing.json) return;
    this.#noteChange(existing.data, data);
    existing.data = data;
    existing.json = json;
    existing.bytes = null;
    existing.seq = this.#seq = this.#log.next();
  }

  /** Tells the observer of arrivals, departures, deaths and CPU changes. */
  #noteChange(before: NodeJson, after: NodeJson): void {
    const o = this.#observer;
    const ip = after.ip_addr;
    const wasClosed = before.status === NodeStatus.Closed;
    const isClosed = after.status === NodeStatus.Closed;
    if (wasClosed && !isClosed) {
      this.#lost.delete(ip);
      o?.nodeChanged(this, after, { kind: 'arrived', rejoined: true });
    } else if (!wasClosed && isClosed) {
      // A lost node's running jobs are abandoned or re-queued as it closes; the first such event
      // arrives with the node closed already, and those of its other jobs follow. (A node
      // deallocated with jobs running keeps them running: that is a departure.)
      const lost = this.#lost.get(ip) ?? 0;
      this.#lost.delete(ip);
      o?.nodeChanged(this, after, lost > 0 ? { kind: 'died', jobs: lost + (this.#nodes.get(ip)?.running.size ?? 0) } : { kind: 'left' });
    } else if (!isClosed && before.cpus !== after.cpus) {
      o?.nodeChanged(this, after, { kind: 'cpus', from: before.cpus, to: after.cpus });
    }
  }

  /** Whether the node at `ip` is one of this view's. */
  hasNode(ip: string): boolean {
    return this.#nodes.has(ip);
  }

  /** Every node of the view (closed ones included) in JSON form. */
  *nodes(): Generator<NodeJson> {
    for (const e of this.#nodes.values()) yield e.data;
  }

  /** The node at `ip` in JSON form. */
  node(ip: string): NodeJson | undefined {
    return this.#nodes.get(ip)?.data;
  }

  /** Addresses of the nodes whose name is `name`. */
  ipsNamed(name: string): string[] {
    const out: string[] = [];
    for (const [ip, e] of this.#nodes) if (e.data.name === name) out.push(ip);
    return out;
  }

  /** Every node, serialized and comma-joined (cached until a node changes). */
  allNodesJson(): string {
    if (this.#allNodes && this.#allNodes.seq === this.#seq) return this.#allNodes.json;
    let json = '';
    for (const e of this.#nodes.values()) json += (json ? ',' : '') + e.json;
    this.#allNodes = { seq: this.#seq, json };
    return json;
  }

  /**
   * Appends every node's serialization as bytes, comma-separated, to `parts` (for one
   * Buffer.concat of the whole document: far cheaper than building and encoding a string).
   */
  pushNodeBytes(parts: Buffer[]): void {
    let first = true;
    for (const e of this.#nodes.values()) {
      if (!first) parts.push(COMMA);
      first = false;
      e.bytes ??= Buffer.from(e.json, 'utf8');
      parts.push(e.bytes);
    }
  }

  /** Nodes changed after `since`, serialized and comma-joined; '' if none. */
  nodesJsonSince(since: number): string {
    if (this.#seq <= since) return '';
    let json = '';
    for (const e of this.#nodes.values()) if (e.seq > since) json += (json ? ',' : '') + e.json;
    return json;
  }

  /** The jobs running on the node at `ip`. */
  runningJobs(ip: string, showArgs: boolean): JobJson[] {
    const e = this.#nodes.get(ip);
    if (!e) return [];
    return [...e.running.values()].map((j) => jobJson(j, this.name, showArgs));
  }

  /** The running job with this uid, if any. */
  runningJob(uid: number): DispyJob | undefined {
    const ip = this.#running.get(uid);
    return ip === undefined ? undefined : this.#nodes.get(ip)?.running.get(uid);
  }
}

/** Whether `cluster` says it is shared (DispyCluster.shared: a SharedJobCluster). */
export function isSharedCluster(cluster: ViewedCluster): boolean {
  return cluster.shared === true;
}
