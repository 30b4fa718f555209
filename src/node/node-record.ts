/**
 * The node daemon's record in its state directory (host/state-dir.ts): the directory, named for
 * the node's address, claimed at start; the record rewritten as its runners change; removed at
 * a clean stop unless job processes a dead daemon here left behind are still alive (`--clean`
 * kills them instead).
 */
import type { Logger } from 'pino';
import { DispyError } from '../errors.js';
import { Orphans, StateDir, type NodeRecord } from '../host/state-dir.js';

/** The daemon's record in its state directory. */
const PID_FILE = 'daemon.json';

export interface NodeRecordOptions {
  /** --dest-path-prefix. */
  prefix: string;
  host: string;
  /** --clean: kill what a dead daemon's jobs left behind. */
  clean: boolean;
  log: Logger;
}

export class NodeStateRecord {
  readonly #dir: StateDir<NodeRecord>;
  /** Job processes of a previous daemon here, not killed (no --clean). */
  #orphans: Orphans | null = null;

  /**
   * A live daemon already recorded there stops us; what a dead one's jobs left behind is
   * reported, or killed with `clean`.
   */
  constructor(opts: NodeRecordOptions) {
    this.#dir = new StateDir<NodeRecord>({
      prefix: opts.prefix,
      host: opts.host,
      command: 'node',
      file: PID_FILE,
      clean: opts.clean ? 'if-recorded' : false,
      log: opts.log,
      held: (pid) =>
        new DispyError(
          'DISPY_ERR_INVALID_OPTION',
          `another dispyts node (pid ${pid}) serves ${opts.host} with prefix ${opts.prefix}; stop it first`,
        ),
      leftBehind: (previous) => (this.#orphans = new Orphans(opts.host, previous, opts.clean, opts.log)),
    });
  }

  /** The node's directory. */
  get path(): string {
    return this.#dir.path;
  }

  /** Records the daemon: its port, tag and runners, and the orphans it still watches. */
  write(port: number, tag: string, runners: number[]): void {
    this.#dir.record({
      port,
      tag,
      runners: [...runners, ...(this.#orphans?.runners ?? [])],
      ...(this.#orphans?.tags.length ? { orphanTags: this.#orphans.tags } : {}),
    });
  }

  /** At stop: whether orphans are still alive (the record must stay); else the record goes. */
  close(): boolean {
    if (this.#orphans?.prune()) return true;
    this.#dir.remove();
    return false;
  }
}
