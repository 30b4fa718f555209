/**
 * Results a node could not deliver, kept for the client that returns (`resume`) or for
 * `recoverJobs` after the client program crashed (`recover`).
 *
 * Two parts:
 * - on disk, under the node's state directory: a result that ended while its client had no open
 *   connection. One file per result (`<hash of computeId>/<uid>.msgpack`, the whole `done`
 *   message with the computation id), bounded in count and bytes (oldest dropped first, with a
 *   warning), and read back at start, so a restarted daemon still hands them out;
 * - in memory, the last results sent on connections: a connection that breaks may take results
 *   with it that the client never read; a client that reconnects asks for them by uid.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { pack, unpack } from 'msgpackr';
import { jobDoneSchema, type JobDone } from '../protocol/messages.js';

export interface UndeliveredLimits {
  /**
   * Results kept on disk at most.
   * @default 10000
   * @example maxResults: 1000
   */
  maxResults?: number;
  /**
   * Bytes kept on disk at most.
   * @default 268435456 (256 MiB)
   * @example maxBytes: 64 * 1024 * 1024   // 64 MiB
   */
  maxBytes?: number;
  /**
   * Results sent recently that are remembered in memory.
   * @default 1024
   * @example recentResults: 256
   */
  recentResults?: number;
  /**
   * Bytes of recently sent results remembered in memory.
   * @default 16777216 (16 MiB)
   * @example recentBytes: 4 * 1024 * 1024   // 4 MiB
   */
  recentBytes?: number;
}

interface Kept {
  computeId: string;
  uid: number;
  file: string;
  bytes: number;
}

interface Recent {
  computeId: string;
  msg: JobDone;
  bytes: number;
}

/** Size of a result as counted against the limits. */
function sizeOf(msg: JobDone): number {
  return (msg.result?.byteLength ?? 0) + msg.stdout.length + msg.stderr.length + (msg.exception?.length ?? 0) + 128;
}

function dirName(computeId: string): string {
  // Computation ids come from clients: hashed, so no id can name a path outside the store.
  return createHash('sha256').update(computeId).digest('hex').slice(0, 32);
}

export class UndeliveredStore {
  readonly #dir: string;
  readonly #log: Logger;
  readonly #maxResults: number;
  readonly #maxBytes: number;
  readonly #recentMax: number;
  readonly #recentMaxBytes: number;
  /** Insertion order = age: the first entries are dropped first. */
  readonly #kept = new Map<string, Kept>();
  #keptBytes = 0;
  #recent: Recent[] = [];
  #recentBytes = 0;

  constructor(dir: string, log: Logger, limits: UndeliveredLimits = {}) {
    this.#dir = dir;
    this.#log = log;
    this.#maxResults = limits.maxResults ?? 10_000;
    this.#maxBytes = limits.maxBytes ?? 256 * 1024 * 1024;
    this.#recentMax = limits.recentResults ?? 1024;
    this.#recentMaxBytes = limits.recentBytes ?? 16 * 1024 * 1024;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#load();
  }

  /** Results on disk. */
  get size(): number {
    return this.#kept.size;
  }

  /** Reads back what an earlier daemon kept (oldest first); unreadable files are removed. */
  #load(): void {
    const found: { kept: Kept; mtime: number }[] = [];
    for (const sub of readdirSync(this.#dir)) {
      const subDir = join(this.#dir, sub);
      let names: string[];
      try {
        names = readdirSync(subDir);
      } catch {
        continue;
      }
      for (const name of names) {
        const file = join(subDir, name);
        try {
          if (!name.endsWith('.msgpack')) throw new Error('not a result file');
          const raw = readFileSync(file);
          const { computeId, msg } = this.#decode(raw);
          found.push({ kept: { computeId, uid: msg.uid, file, bytes: raw.byteLength }, mtime: statSync(file).mtimeMs });
        } catch (err) {
          this.#log.warn({ file, reason: (err as Error).message }, 'unreadable kept result removed');
          rmSync(file, { force: true });
        }
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    for (const { kept } of found) this.#index(kept);
    if (found.length) this.#log.info({ results: found.length }, 'results kept for absent clients');
    this.#enforce();
  }

  #decode(raw: Buffer): { computeId: string; msg: JobDone } {
    const v = unpack(raw) as { computeId?: unknown; msg?: unknown };
    if (typeof v?.computeId !== 'string') throw new Error('no computation id');
    return { computeId: v.computeId, msg: jobDoneSchema.parse(v.msg) };
  }

  #key(computeId: string, uid: number): string {
    return `${computeId}\0${uid}`;
  }

  #index(k: Kept): void {
    const key = this.#key(k.computeId, k.uid);
    const old = this.#kept.get(key);
    if (old) this.#keptBytes -= old.bytes;
    this.#kept.delete(key);
    this.#kept.set(key, k);
    this.#keptBytes += k.bytes;
  }

  /** Keeps a result its client could not be given (written to disk before this returns). */
  keep(computeId: string, msg: JobDone): void {
    const sub = join(this.#dir, dirName(computeId));
    const file = join(sub, `${msg.uid}.msgpack`);
    try {
      mkdirSync(sub, { recursive: true, mode: 0o700 });
      const raw = pack({ computeId, msg: { ...msg, result: msg.result ? Buffer.from(msg.result) : null } });
      if (raw.byteLength > this.#maxBytes) {
        this.#log.warn({ computeId, uid: msg.uid, bytes: raw.byteLength }, 'result larger than the store for absent clients: dropped');
        return;
      }
      writeFileSync(`${file}.tmp`, raw, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
      this.#index({ computeId, uid: msg.uid, file, bytes: raw.byteLength });
      this.#log.debug({ computeId, uid: msg.uid }, 'result kept for an absent client');
    } catch (err) {
      this.#log.error({ computeId, uid: msg.uid, err }, 'cannot keep a result for an absent client');
    }
    this.#enforce();
  }

  #enforce(): void {
    let dropped = 0;
    for (const [key, k] of this.#kept) {
      if (this.#kept.size <= this.#maxResults && this.#keptBytes <= this.#maxBytes) break;
      this.#kept.delete(key);
      this.#keptBytes -= k.bytes;
      rmSync(k.file, { force: true });
      dropped++;
    }
    if (dropped)
      this.#log.warn(
        { dropped, kept: this.#kept.size, maxResults: this.#maxResults, maxBytes: this.#maxBytes },
        'store for absent clients full: oldest results dropped',
      );
  }

  /** Remembers a result just sent on a connection (it may not have arrived). */
  sent(computeId: string, msg: JobDone): void {
    const bytes = sizeOf(msg);
    if (bytes > this.#recentMaxBytes) return;
    this.#recent.push({ computeId, msg, bytes });
    this.#recentBytes += bytes;
    if (this.#recent.length > this.#recentMax * 2 || this.#recentBytes > this.#recentMaxBytes) this.#trimRecent();
  }

  #trimRecent(): void {
    let drop = Math.max(0, this.#recent.length - this.#recentMax);
    let bytes = this.#recentBytes;
    for (let i = 0; i < drop; i++) bytes -= this.#recent[i]!.bytes;
    while (drop < this.#recent.length && bytes > this.#recentMaxBytes) bytes -= this.#recent[drop++]!.bytes;
    this.#recent = this.#recent.slice(drop);
    this.#recentBytes = bytes;
  }

  /**
   * Hands out (and forgets) the results of `computeId`: those of `uids`, or all of them when
   * `uids` is null. Results kept on disk come first, then ones remembered as sent.
   */
  take(computeId: string, uids: ReadonlySet<number> | null): JobDone[] {
    const out = new Map<number, JobDone>();
    for (const [key, k] of [...this.#kept]) {
      if (k.computeId !== computeId || (uids && !uids.has(k.uid))) continue;
      try {
        out.set(k.uid, this.#decode(readFileSync(k.file)).msg);
      } catch (err) {
        this.#log.warn({ file: k.file, reason: (err as Error).message }, 'unreadable kept result removed');
      }
      this.#kept.delete(key);
      this.#keptBytes -= k.bytes;
      rmSync(k.file, { force: true });
    }
    if (uids) {
      for (const r of this.#recent) if (r.computeId === computeId && uids.has(r.msg.uid) && !out.has(r.msg.uid)) out.set(r.msg.uid, r.msg);
    }
    this.#recent = this.#recent.filter((r) => r.computeId !== computeId || !out.has(r.msg.uid));
    this.#recentBytes = this.#recent.reduce((n, r) => n + r.bytes, 0);
    return [...out.values()];
  }

  /** Forgets every kept result of `computeId` (its client does not want them). */
  forget(computeId: string): number {
    let n = 0;
    for (const [key, k] of [...this.#kept]) {
      if (k.computeId !== computeId) continue;
      this.#kept.delete(key);
      this.#keptBytes -= k.bytes;
      rmSync(k.file, { force: true });
      n++;
    }
    this.#recent = this.#recent.filter((r) => r.computeId !== computeId);
    this.#recentBytes = this.#recent.reduce((n2, r) => n2 + r.bytes, 0);
    return n;
  }
}
