/**
 * Sequence numbers for everything a viewer can see change. Every change to a node or to a
 * cluster's counters takes the next number; a viewer holding cursor N asks for what changed
 * after N. Removals (a cluster leaving the view) are kept in a bounded log; a cursor older than
 * what the log still holds, or from another epoch (another server, a restart), must resync from a
 * full snapshot.
 */
import { randomBytes } from 'node:crypto';

/** A cluster (or one node of it) that left the view. */
export interface Removal {
  seq: number;
  cluster: string;
  /** The node's address, or null when the whole cluster went. */
  ip: string | null;
}

/** Removals retained by default; older cursors resync. */
export const DEFAULT_MAX_REMOVALS = 4096;

export class ChangeLog {
  /** Identifies this server instance: cursors of another epoch mean nothing here. */
  readonly epoch: string = randomBytes(6).toString('hex');
  #seq = 0;
  readonly #removals: Removal[] = [];
  /** Cursors below this must resync: the removals after them are no longer all retained. */
  #floor = 0;
  readonly #maxRemovals: number;

  constructor(maxRemovals = DEFAULT_MAX_REMOVALS) {
    this.#maxRemovals = Math.max(1, maxRemovals);
  }

  /** The latest sequence number handed out (0 before any change). */
  get seq(): number {
    return this.#seq;
  }

  /** The oldest cursor that can still be answered with a delta. */
  get floor(): number {
    return this.#floor;
  }

  /** Takes the next sequence number for a change. */
  next(): number {
    return ++this.#seq;
  }

  /** Records that a cluster (ip null) or one of its nodes left the view; returns its number. */
  remove(cluster: string, ip: string | null): number {
    const seq = this.next();
    this.#removals.push({ seq, cluster, ip });
    if (this.#removals.length > this.#maxRemovals) {
      // Drop the oldest half at once so trimming stays O(1) amortized.
      const dropped = this.#removals.splice(0, this.#removals.length - Math.floor(this.#maxRemovals / 2));
      this.#floor = dropped[dropped.length - 1]!.seq;
    }
    return seq;
  }

  /** Whether a viewer at `since` (of `epoch`, when it said) must take a full snapshot. */
  needsResync(since: number, epoch?: string | null): boolean {
    if (epoch !== undefined && epoch !== null && epoch !== this.epoch) return true;
    return since <= 0 || since < this.#floor || since > this.#seq;
  }

  /** Removals after `since`, oldest first. */
  removalsSince(since: number): Removal[] {
    const r = this.#removals;
    // Binary search for the first removal after `since` (the log is in sequence order).
    let lo = 0;
    let hi = r.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (r[mid]!.seq <= since) lo = mid + 1;
      else hi = mid;
    }
    return r.slice(lo);
  }

  /** The cursor as `<epoch>:<seq>` (SSE ids and cookies). */
  token(seq = this.#seq): string {
    return `${this.epoch}:${seq}`;
  }

  /** Parses `<epoch>:<seq>`; null when malformed. */
  static parseToken(value: string | null | undefined): { epoch: string; seq: number } | null {
    if (!value || value.length > 64) return null;
    const m = /^([0-9a-f]{1,32}):(\d{1,16})$/.exec(value.trim());
    if (!m) return null;
    const seq = Number(m[2]);
    return Number.isSafeInteger(seq) ? { epoch: m[1]!, seq } : null;
  }
}
