/**
 * A daemon's state directory `<prefix>/<address>`: claimed at start (a live daemon of the same
 * kind recorded there stops us), `--clean` wiping what a dead one left, its pid file kept up to
 * date and removed at a clean stop. A node also finds the processes a dead daemon's jobs left
 * behind (`Orphans`): reported, or killed with `--clean`. Used by the node and the scheduler
 * alike; it sits below both (src/host/).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type PidRecord, isDispytsDaemon, isJobRunner, readPidFile, removePidFile, writePidFile } from './pid-file.js';
import { findTagged, killTagged } from './process-tag.js';

export interface StateDirOptions<T extends object> {
  /** The directory under which daemons keep their state (`--dest-path-prefix`). */
  prefix: string;
  /** The daemon's address: its directory's name (`all` when empty). */
  host: string;
  /** The kind of daemon (a live one of that kind recorded there stops us). */
  command: 'node' | 'scheduler';
  /** The pid file's name inside the directory. */
  file: string;
  /**
   * `--clean`: wipe the directory before taking it; `'if-recorded'` only when a dead daemon's
   * record is there (a node keeps the results it stored for absent clients after a clean stop).
   */
  clean: boolean | 'if-recorded';
  /** The error thrown when a live daemon holds the directory. */
  held: (pid: number, dir: string) => Error;
  /** Called with a dead holder's record before `--clean` wipes the directory (or instead). */
  leftBehind?: (previous: PidRecord<T>) => void;
  /** The directory's mode when created. */
  mode?: number;
  log: Logger;
}

export class StateDir<T extends object = object> {
  readonly path: string;
  /** What the previous holder recorded (a daemon that did not stop cleanly), if anything. */
  readonly previous: PidRecord<T> | null;
  readonly #file: string;
  readonly #log: Logger;

  /** Claims the directory; throws `held()` while a live daemon of the same kind holds it. */
  constructor(opts: StateDirOptions<T>) {
    this.path = join(opts.prefix, opts.host || 'all');
    this.#file = join(this.path, opts.file);
    this.#log = opts.log;
    const previous = readPidFile<T>(this.#file);
    this.previous = previous && previous.pid !== process.pid ? previous : null;
    if (this.previous && isDispytsDaemon(this.previous.pid, opts.command)) throw opts.held(this.previous.pid, this.path);
    if (this.previous) opts.leftBehind?.(this.previous);
    if (opts.clean === true || (opts.clean === 'if-recorded' && this.previous)) rmSync(this.path, { recursive: true, force: true });
    mkdirSync(this.path, { recursive: true, ...(opts.mode === undefined ? {} : { mode: opts.mode }) });
  }

  /** Writes this daemon's record (its pid and `record`). */
  record(record: object): void {
    writePidFile(this.#file, record, this.#log);
  }

  /** Removes the record (a daemon that stops cleanly). */
  remove(): void {
    removePidFile(this.#file);
  }
}

/** What a node records about its job processes. */
export interface NodeRecord {
  runners?: number[];
  tag?: unknown;
  orphanTags?: unknown;
}

/**
 * Job processes a dead node at this address left behind, found by the tags it recorded (a
 * runner SIGKILLed with its daemon cannot take its jobs' processes down): killed at once with
 * `--clean`, with their process groups, otherwise reported and remembered in our own record so
 * that a later `--clean` still finds them.
 */
export class Orphans {
  /** Live runners of a previous daemon here, by pid (an older daemon's record without tags). */
  runners: number[] = [];
  /** Tags of previous daemons here whose processes were still alive at start. */
  tags: string[] = [];

  constructor(host: string, previous: PidRecord<NodeRecord> | null, clean: boolean, log: Logger) {
    if (!previous) return;
    // Only tags naming this address count: a record is data, not an order to kill anything.
    const tags = [previous.tag, ...(Array.isArray(previous.orphanTags) ? previous.orphanTags : [])].filter(
      (t): t is string => typeof t === 'string' && t.startsWith(`${host}/`) && t.length > host.length + 1,
    );
    // A record without tags comes from an older daemon: its runners by pid, if they still are.
    const leftovers = (Array.isArray(previous.runners) && tags.length === 0 ? previous.runners : []).filter(
      (pid) => Number.isInteger(pid) && isJobRunner(pid),
    );
    const alive = tags.filter((t) => findTagged(t).length > 0);
    if (clean) {
      const killed = tags.flatMap((t) => killTagged(t, 'SIGKILL'));
      for (const pid of leftovers) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      log.info({ killed: [...killed, ...leftovers] }, 'cleaned up after a previous daemon');
    } else if (leftovers.length || alive.length) {
      this.runners = leftovers;
      this.tags = alive;
      const pids = [...alive.flatMap((t) => findTagged(t).map((p) => p.pid)), ...leftovers];
      log.warn({ pids, tags: alive }, 'job processes of a previous daemon are still alive; start with --clean to kill them');
    }
  }

  /** Forgets those that are gone; true if any is left. */
  prune(): boolean {
    this.runners = this.runners.filter(isJobRunner);
    this.tags = this.tags.filter((t) => findTagged(t).length > 0);
    return this.runners.length > 0 || this.tags.length > 0;
  }
}
