/**
 * The server's event log: node arrivals, departures, deaths and CPU changes, the clusters it
 * follows, and every action, login and logout with who did it and how it ended. Bounded (the
 * oldest entries go first), numbered so a viewer can ask for what came after its cursor, and
 * observable so `/events` streams new entries to open pages at once.
 */
import type { Role } from './users.js';

export type EventKind = 'node-arrived' | 'node-left' | 'node-died' | 'node-cpus' | 'cluster' | 'action' | 'login' | 'logout';

/** How an action or login ended. */
export type EventResult = 'ok' | 'failed' | 'refused';

/** One entry, as `/event_log` and the `log` stream events carry it. */
export interface EventEntry {
  /** Increases by one per entry; the cursor a viewer resumes from. */
  seq: number;
  /** ms since epoch. */
  time_ms: number;
  kind: EventKind;
  cluster: string | null;
  /** The node's address, when the entry is about one. */
  node: string | null;
  /** Who acted (a user name, `token`, `loopback` or `anonymous`); null for cluster events. */
  user: string | null;
  role: Role | null;
  /** The endpoint of an action (`close_node`, `set_cpus`, ...), `login`, `logout`. */
  action: string | null;
  result: EventResult | null;
  /** The entry in a sentence. */
  text: string;
}

export type NewEntry = Partial<Omit<EventEntry, 'seq' | 'time_ms' | 'kind' | 'text'>> & Pick<EventEntry, 'kind' | 'text'>;

/** Entries kept by default. */
export const DEFAULT_EVENT_LOG_SIZE = 1000;

export class EventLog {
  readonly capacity: number;
  readonly #entries: EventEntry[] = [];
  #seq = 0;
  readonly #listeners = new Set<(e: EventEntry) => void>();

  constructor(capacity = DEFAULT_EVENT_LOG_SIZE) {
    this.capacity = Math.max(1, capacity);
  }

  /** The latest entry's number (0 before any). */
  get seq(): number {
    return this.#seq;
  }

  get size(): number {
    return this.#entries.length;
  }

  /** Appends an entry and tells the listeners. */
  add(e: NewEntry, now = Date.now()): EventEntry {
    const entry: EventEntry = {
      cluster: null,
      node: null,
      user: null,
      role: null,
      action: null,
      result: null,
      ...e,
      seq: ++this.#seq,
      time_ms: now,
    };
    this.#entries.push(entry);
    // Trim in batches so appending stays O(1) amortized.
    if (this.#entries.length > this.capacity + Math.max(16, this.capacity >> 3))
      this.#entries.splice(0, this.#entries.length - this.capacity);
    for (const l of this.#listeners) {
      try {
        l(entry);
      } catch {
        // a listener's failure is its own
      }
    }
    return entry;
  }

  /**
   * Entries after `since`, oldest first, at most `limit` (the newest ones when cut). `resync` is
   * true when some entries after `since` are no longer kept, or `since` is ahead of the log.
   */
  since(since: number, limit = this.capacity): { entries: EventEntry[]; cursor: number; resync: boolean } {
    const all = this.#entries.length > this.capacity ? this.#entries.slice(-this.capacity) : this.#entries;
    const oldest = all.length ? all[0]!.seq : this.#seq + 1;
    // A cursor ahead of the log comes from before a restart: everything kept is new to it.
    const ahead = since > this.#seq;
    const resync = ahead || (since + 1 < oldest && since < this.#seq);
    if (ahead) since = 0;
    let lo = 0;
    let hi = all.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (all[mid]!.seq <= since) lo = mid + 1;
      else hi = mid;
    }
    const after = all.slice(lo);
    return { entries: after.length > limit ? after.slice(-limit) : after, cursor: this.#seq, resync };
  }

  /** Calls `listener` with every new entry; returns the unsubscribe function. */
  subscribe(listener: (e: EventEntry) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
