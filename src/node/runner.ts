/**
 * One job runner process, and where a job is killed. A runner is forked detached (it leads its
 * own process group, so a job and every process it starts are killed together), with
 * `execArgv: []` so a daemon started under a TypeScript loader does not slow it, and carries a
 * tag in its environment (host/process-tag.ts) that everything its jobs start inherits: killing
 * a runner kills every process with its tag, then their groups, so a job's process that left the
 * group (`setsid`, a double fork) goes too.
 *
 * Killing one job (`kill`) goes through the runner's kill arbiter (runner-arbiter.ts): the daemon
 * names the job, the runner decides, so a job that has just ended keeps its result and the job
 * after it is never hit. Killing the whole runner (`terminate`) is for its one isolated job, a
 * failed arbiter, a finished program and shutdown. The reason a job ended with when its runner
 * died is decided here too (`endedWith`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { TAG_ENV, killTaggedAsync } from '../host/process-tag.js';
import {
  RunnerCommand,
  TERMINATE_GRACE,
  type FromRunner,
  type RunnerDone,
  type RunnerItem,
  type RunnerJob,
  type ToRunner,
} from './runner-protocol.js';
import { RunnerEvent } from './runner-protocol.js';
import { type DispyErrorCode, jobException } from '../errors.js';

/** Why the daemon ends a job (the text and code its client gets). */
export interface KillReason {
  exception: string;
  code: DispyErrorCode;
}

/** How a job handed to a runner ended. `dropped`: it never started (re-queue it). */
export type RunnerOutcome = { kind: 'done'; done: RunnerDone } | { kind: 'dropped' };

/** What the daemon hears about one job it handed to a runner. */
export interface AssignedJob {
  uid: number;
  computeId: string;
  started: boolean;
  onStarted: (startTime: number) => void;
  onProvisional: (result: Uint8Array) => void;
  onEnd: (outcome: RunnerOutcome) => void;
}

/** Seconds a retired runner gets to run its computations' cleanup before it is killed. */
const RETIRE_GRACE = 10;
/**
 * Seconds after a kill request past the arbiter's own SIGKILL by which the job must be gone; if
 * it is not (the arbiter thread failed), the daemon kills the runner itself.
 */
const KILL_BACKUP = 5;
/**
 * Node flags for runners, for diagnosis only (e.g. `--cpu-prof --cpu-prof-dir=DIR`, which Node
 * does not take from NODE_OPTIONS): space-separated. Runners otherwise start with none.
 */
const RUNNER_EXEC_ARGV = (process.env.DISPYTS_RUNNER_EXEC_ARGV ?? '').split(' ').filter(Boolean);
/** Bytes of a runner's own stderr kept to explain its death (V8's out-of-memory report). */
const STDERR_TAIL = 8192;
/** How long (ms) a runner that aborted may take to deliver the rest of its stderr. */
const STDERR_WAIT_MS = 1000;
const OUT_OF_MEMORY = /JavaScript heap out of memory|Reached heap limit/;

/** The runner's entry file (built next to this one, or in dist/ when running from src/). */
export function runnerEntry(): string {
  const sibling = new URL('./runner-main.js', import.meta.url);
  if (existsSync(sibling)) return fileURLToPath(sibling);
  // Running from src/ under a TypeScript loader: runners use the built file.
  const built = new URL('../../dist/node/runner-main.js', import.meta.url);
  if (existsSync(built)) return fileURLToPath(built);
  throw new Error('dist/node/runner-main.js not found: run `npm run build` first');
}

/** How a runner is started, and what its pool hears from it. */
export interface RunnerSpawn {
  entry: string;
  /** Its tag (`<node tag>/r<n>`); empty for none. */
  tag: string;
  /** The node's --max-message-size: the runner refuses larger results. */
  maxMessageSize?: number;
  log: Logger;
  /** Each item of each batch it sends. */
  onItem: (item: RunnerItem) => void;
  /** Once it exited and everything it sent before was read. */
  onExit: (code: number | null, signal: NodeJS.Signals | null) => void;
  /** It is being killed whole: its pool starts a replacement. */
  onTerminating: () => void;
}

export class Runner {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The tag in its environment, inherited by what its jobs start. */
  readonly tag: string;
  readonly loaded = new Set<string>();
  /** Jobs handed to this runner, in its queue order; at most the first one is started. */
  readonly jobs = new Map<number, AssignedJob>();
  /** The client program it serves; null while fresh (it has loaded nothing). */
  program: string | null = null;
  /** The `isolate: 'job'` computation it runs one job of, if it is such a runner. */
  isolatedFor: string | null = null;
  /** It took its one job (isolated runners): it takes no other. */
  spent = false;
  /** Being retired: it runs its cleanups and exits, and takes no job. */
  retiring = false;
  /** Why the daemon is killing the whole runner (shutdown), if it is. */
  terminating: KillReason | null = null;
  /** Kills asked of the arbiter, by job uid. */
  readonly kills = new Map<number, KillReason>();
  /** It sent its ready message. */
  isReady = false;
  exited = false;
  /** The end of its own stderr (not its jobs' output, which it captures itself). */
  stderrTail = '';
  readonly ready: Promise<void>;
  /** Resolves once the runner is gone and its jobs were accounted for. */
  readonly gone: Promise<void>;
  markGone!: () => void;
  outbox: RunnerJob[] = [];
  readonly #log: Logger;
  readonly #onTerminating: () => void;

  constructor(spawn: RunnerSpawn) {
    const { tag } = spawn;
    const child = fork(spawn.entry, [], {
      execArgv: RUNNER_EXEC_ARGV,
      detached: true,
      serialization: 'json',
      // 2: its own stderr (V8's fatal reports), 3: IPC, 4: its kill pipe (runner-arbiter.ts).
      stdio: ['ignore', 'ignore', 'pipe', 'ipc', 'pipe'],
      env: {
        ...process.env,
        DISPYTS_RUNNER: '1',
        ...(tag ? { [TAG_ENV]: tag } : {}),
        ...(spawn.maxMessageSize ? { DISPYTS_MAX_MESSAGE_SIZE: String(spawn.maxMessageSize) } : {}),
      },
    });
    this.child = child;
    this.pid = child.pid!;
    this.tag = tag;
    this.#log = spawn.log;
    this.#onTerminating = spawn.onTerminating;
    this.ready = new Promise((resolve, reject) => {
      child.once('message', () => {
        this.isReady = true;
        resolve();
      });
      child.once('exit', (code, signal) => reject(new Error(`runner exited at start (code ${code}, signal ${signal})`)));
    });
    this.ready.catch(() => undefined);
    this.gone = new Promise((r) => (this.markGone = r));
    child.on('message', (msg: FromRunner) => {
      if (msg.ev === RunnerEvent.Batch) for (const item of msg.items) spawn.onItem(item);
    });
    this.#watchExit(spawn.onExit);
    child.on('error', (err) => this.#log.warn({ err, pid: this.pid }, 'runner error'));
  }

  /**
   * Calls `onExit` once the process exited AND its IPC channel drained, so every message it sent
   * before dying has been seen (and, after an abort, what it wrote to stderr). What the runner
   * itself writes to stderr goes on to the daemon's; its end is kept.
   */
  #watchExit(onExit: RunnerSpawn['onExit']): void {
    const child = this.child;
    let stderrEnded = false;
    const stderr = child.stderr!;
    stderr.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL);
    });
    stderr.on('error', () => undefined);
    (child.stdio[4] as Writable | null)?.on('error', () => undefined);
    let exitInfo: [number | null, NodeJS.Signals | null] | null = null;
    let disconnected = !child.connected;
    let stderrWait: NodeJS.Timeout | null = null;
    const maybeEnd = (): void => {
      if (!exitInfo || !disconnected || this.exited) return;
      const [code, signal] = exitInfo;
      const aborted = signal === 'SIGABRT' || signal === 'SIGTRAP' || code === 134;
      if (aborted && !stderrEnded && !stderrWait) {
        stderrWait = setTimeout(() => {
          stderrEnded = true;
          maybeEnd();
        }, STDERR_WAIT_MS);
        return;
      }
      if (aborted && !stderrEnded) return;
      if (stderrWait) clearTimeout(stderrWait);
      onExit(code, signal);
    };
    stderr.on('close', () => {
      stderrEnded = true;
      maybeEnd();
    });
    child.on('exit', (code, signal) => {
      exitInfo = [code, signal];
      maybeEnd();
    });
    child.on('disconnect', () => {
      disconnected = true;
      maybeEnd();
    });
  }

  /** Whether the runner may take a job now (one still starting gets it once ready). */
  get usable(): boolean {
    return !this.exited && !this.terminating && !this.retiring && !this.spent && this.child.connected;
  }

  /** Fresh: it has served no program yet. */
  get fresh(): boolean {
    return this.program === null;
  }

  send(msg: ToRunner): void {
    if (!this.exited && this.child.connected) this.child.send(msg);
  }

  /**
   * Kills job `uid`, which the runner reported started: the runner's arbiter kills its process
   * group (SIGTERM, SIGKILL after the grace period) if that job still runs, and does nothing if
   * it ended meanwhile (its Done then arrives and stands). The runner is replaced.
   */
  kill(uid: number, why: KillReason): void {
    const job = this.jobs.get(uid);
    if (!job?.started || this.exited || this.terminating || this.kills.has(uid)) return;
    this.kills.set(uid, why);
    if (this.isolatedFor !== null) {
      // Its one job: even if that job has just ended (its Done is read before the exit is
      // handled, and stands), the kill hits no other.
      this.terminate(why);
      return;
    }
    (this.child.stdio[4] as Writable | null)?.write(`${uid}\n`);
    // The arbiter answers within milliseconds; this only fires if it could not (it failed).
    const t = setTimeout(
      () => {
        if (!this.exited && this.jobs.get(uid) === job) {
          this.#log.warn({ pid: this.pid, uid }, "the runner's kill arbiter did not end the job: killing the runner");
          this.terminate(why);
        }
      },
      (TERMINATE_GRACE + KILL_BACKUP) * 1000,
    );
    t.unref();
    this.child.once('exit', () => clearTimeout(t));
  }

  /** Kills the whole runner, whatever it runs (SIGTERM to its group, SIGKILL after the grace period). */
  terminate(why: KillReason): void {
    if (this.exited || this.terminating) return;
    this.terminating = why;
    this.killGroup('SIGTERM');
    const t = setTimeout(() => this.killGroup('SIGKILL'), TERMINATE_GRACE * 1000);
    t.unref();
    this.child.once('exit', () => clearTimeout(t));
    this.#onTerminating();
  }

  /** Asks the runner to run its cleanups and exit; it is killed if it has not after a grace period. */
  retire(): boolean {
    if (this.retiring || this.exited) return false;
    this.retiring = true;
    this.send({ cmd: RunnerCommand.Retire });
    const t = setTimeout(() => this.killGroup('SIGKILL'), RETIRE_GRACE * 1000);
    t.unref();
    this.child.once('exit', () => clearTimeout(t));
    return true;
  }

  /**
   * Signals the runner's process group at once (by its number only while the runner is alive
   * or was just reaped, so that number cannot belong to another group yet), then every process
   * carrying the runner's tag (what its jobs started, wherever it went) and their groups, once
   * /proc has been read without blocking the daemon.
   */
  killGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // group already gone
    }
    if (this.tag) void killTaggedAsync(this.tag, signal).catch(() => undefined);
  }

  /** Whether its death looks like an unasked one (logged by the pool when no job ran). */
  get diedUnasked(): boolean {
    return !this.retiring && !this.terminating && this.kills.size === 0;
  }

  /**
   * What job `uid`, running when the runner exited, ended with: the kill the daemon asked for,
   * unless the runner ran out of memory first, or why it died unasked.
   */
  endedWith(uid: number, code: number | null, signal: NodeJS.Signals | null): KillReason {
    const oom = OUT_OF_MEMORY.test(this.stderrTail);
    return (!oom && (this.kills.get(uid) ?? this.terminating)) || this.#unexpected(code, signal);
  }

  /** Why a runner that nobody asked to die died, as its running job's exception. */
  #unexpected(code: number | null, signal: NodeJS.Signals | null): KillReason {
    if (OUT_OF_MEMORY.test(this.stderrTail)) {
      return {
        exception: jobException(
          "DISPY_ERR_OUT_OF_MEMORY: the job ran out of memory: its runner process reached V8's heap limit (JavaScript heap out of memory) and was aborted",
        ),
        code: 'DISPY_ERR_OUT_OF_MEMORY',
      };
    }
    const hint = signal === 'SIGKILL' ? " (not by dispyts: the system's out-of-memory killer does this, see `dmesg`)" : '';
    return {
      exception: jobException(`the job's runner process exited unexpectedly (code ${code}, signal ${signal})${hint}`),
      code: 'DISPY_ERR_JOB_TERMINATED',
    };
  }
}
