/**
 * The clusters a server shows, under unique names, and the JSON documents built from them:
 * dispy's full status and node lists, dispy-shaped updates for a cookie cursor, and our
 * `{ epoch, cursor, resync, clusters }` deltas. Documents are assembled from each node's cached
 * serialization, and the assembled text is reused until the next change.
 */
import { ChangeLog } from './change-log.js';
import { ClusterView, type ViewedCluster, type ViewObserver } from './cluster-view.js';

/** A delta or snapshot for a viewer with a cursor. */
export interface Delta {
  /** The JSON text `{ epoch, cursor, resync, clusters, removed_clusters }`. */
  json: string;
  cursor: number;
  resync: boolean;
  /** Whether anything changed after the viewer's cursor (always true for a resync). */
  changed: boolean;
}

const MAX_CACHED = 64;
const OPEN = Buffer.from('[');
const CLOSE = Buffer.from(']');
const CLOSE_VIEW = Buffer.from(']}');

export class ViewRegistry {
  readonly log: ChangeLog;
  readonly #views = new Map<ViewedCluster, ClusterView>();
  readonly #byName = new Map<string, ClusterView>();
  #cache = new Map<string, unknown>();
  #cacheSeq = -1;
  readonly #observer: ViewObserver | null;

  constructor(log = new ChangeLog(), observer: ViewObserver | null = null) {
    this.log = log;
    this.#observer = observer;
  }

  get views(): IterableIterator<ClusterView> {
    return this.#views.values();
  }

  get size(): number {
    return this.#views.size;
  }

  has(cluster: ViewedCluster): boolean {
    return this.#views.has(cluster);
  }

  get(cluster: ViewedCluster): ClusterView | undefined {
    return this.#views.get(cluster);
  }

  byName(name: string): ClusterView | undefined {
    return this.#byName.get(name);
  }

  /** Adds a view of `cluster` under its name, or the name with a suffix if taken. */
  add(cluster: ViewedCluster): ClusterView {
    const existing = this.#views.get(cluster);
    if (existing) return existing;
    const base = typeof cluster.name === 'string' && cluster.name.length ? cluster.name : 'cluster';
    let name = base;
    for (let i = 2; this.#byName.has(name); i++) name = `${base} (${i})`;
    const view = new ClusterView(cluster, name, this.log, this.#observer);
    this.#views.set(cluster, view);
    this.#byName.set(name, view);
    return view;
  }

  /** Removes the view of `cluster`; viewers with cursors see it as a removal. */
  remove(cluster: ViewedCluster): ClusterView | undefined {
    const view = this.#views.get(cluster);
    if (!view) return undefined;
    this.#views.delete(cluster);
    this.#byName.delete(view.name);
    this.log.remove(view.name, null);
    return view;
  }

  /** Views a form's `cluster` field selects: all for '', '*' or absent; else the one named. */
  select(name: string | undefined): ClusterView[] {
    if (name === undefined || name === '' || name === '*') return [...this.#views.values()];
    const v = this.#byName.get(name);
    return v ? [v] : [];
  }

  #cached<T>(key: string, build: () => T): T {
    if (this.#cacheSeq !== this.log.seq) {
      this.#cache = new Map();
      this.#cacheSeq = this.log.seq;
    }
    if (this.#cache.has(key)) return this.#cache.get(key) as T;
    const v = build();
    if (this.#cache.size < MAX_CACHED) this.#cache.set(key, v);
    return v;
  }

  /** A document as UTF-8 bytes, encoded once per change. */
  bytes(key: string, text: () => string): Buffer {
    return this.#cached(`bytes:${key}`, () => Buffer.from(text(), 'utf8'));
  }

  /**
   * `GET /cluster_status`: `[{ name, jobs, nodes }]` with every node. Built as bytes from each
   * node's cached serialization (@hono/node-server sends a Buffer in one write; a large string
   * body, or one built and encoded per change, costs several times more).
   */
  statusBytes(): Buffer {
    return this.#cached('status', () => this.#document(true));
  }

  /** `GET /nodes`: `[{ name, nodes }]`. */
  nodesBytes(): Buffer {
    return this.#cached('nodes', () => this.#document(false));
  }

  #document(withJobs: boolean): Buffer {
    const parts: Buffer[] = [OPEN];
    let first = true;
    for (const v of this.#views.values()) {
      parts.push(
        Buffer.from(
          `${first ? '' : ','}{"name":${v.nameJson},${v.flagsJson}${withJobs ? `"jobs":${v.countersJson},` : ''}"nodes":[`,
          'utf8',
        ),
      );
      first = false;
      v.pushNodeBytes(parts);
      parts.push(CLOSE_VIEW);
    }
    parts.push(CLOSE);
    return Buffer.concat(parts);
  }

  /**
   * `GET /cluster_updates` for dispy's pages (a cookie cursor): dispy's shape, every cluster
   * with its counters, the nodes changed after `since` (a stale cursor gets statusBytes()).
   */
  dispyUpdatesJson(since: number): string {
    return this.#cached(`dispy:${since}`, () => {
      let out = '[';
      for (const v of this.#views.values())
        out += `${out.length > 1 ? ',' : ''}{"name":${v.nameJson},${v.flagsJson}"jobs":${v.countersJson},"nodes":[${v.nodesJsonSince(since)}]}`;
      return `${out}]`;
    });
  }

  /**
   * What changed after cursor `since` (of `epoch`, when the viewer said): clusters whose
   * counters or nodes changed, with only the changed nodes, and the clusters removed; or a
   * full snapshot with `resync: true` when the cursor is stale, from another epoch, or 0.
   */
  delta(since: number, epoch?: string | null): Delta {
    const resync = this.log.needsResync(since, epoch);
    return this.#cached(resync ? 'delta:full' : `delta:${since}`, () => (resync ? this.#snapshot() : this.#delta(since)));
  }

  #snapshot(): Delta {
    const cursor = this.log.seq;
    let clusters = '';
    for (const v of this.#views.values()) {
      clusters += `${clusters ? ',' : ''}{"name":${v.nameJson},${v.flagsJson}"jobs":${v.countersJson},"nodes":[${v.allNodesJson()}],"removed_nodes":[]}`;
    }
    return {
      json: `{"epoch":${JSON.stringify(this.log.epoch)},"cursor":${cursor},"resync":true,"clusters":[${clusters}],"removed_clusters":[]}`,
      cursor,
      resync: true,
      changed: true,
    };
  }

  #delta(since: number): Delta {
    const cursor = this.log.seq;
    const removedClusters: string[] = [];
    const removedNodes = new Map<string, string[]>();
    for (const r of this.log.removalsSince(since)) {
      if (r.ip === null) removedClusters.push(r.cluster);
      else {
        let l = removedNodes.get(r.cluster);
        if (!l) {
          l = [];
          removedNodes.set(r.cluster, l);
        }
        l.push(r.ip);
      }
    }
    let clusters = '';
    for (const v of this.#views.values()) {
      const rn = removedNodes.get(v.name);
      if (v.seq <= since && !rn) continue;
      clusters += `${clusters ? ',' : ''}{"name":${v.nameJson},${v.flagsJson}"jobs":${v.countersJson},"nodes":[${v.nodesJsonSince(since)}],"removed_nodes":${JSON.stringify(rn ?? [])}}`;
    }
    return {
      json: `{"epoch":${JSON.stringify(this.log.epoch)},"cursor":${cursor},"resync":false,"clusters":[${clusters}],"removed_clusters":${JSON.stringify(removedClusters)}}`,
      cursor,
      resync: false,
      changed: cursor > since,
    };
  }
}
