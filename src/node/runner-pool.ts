/**
 * The daemon's pre-spawned job runners. Each runner is forked detached (it leads its own process
 * group, so a job and every process it starts are killed together), with `execArgv: []` so a
 * daemon started under a TypeScript loader does not slow them, and runs one job at a time from
 * a short queue the daemon keeps filled. Each carries a tag in its environment (process-tag.ts)
 * that everything its jobs start inherits: killing a runner kills every process with its tag,
 * then their groups, so a job's process that left the group (`setsid`, a double fork) goes too.
 *
 * One program per runner: a fresh runner is bound to the client program of the first
 * computation it loads and only ever runs that program's jobs (its computations share it). When
 * the program is done with the node the daemon retires its runners and starts as many fresh ones
 * at once (the node is idle then), so the next program binds started ones and does not wait for
 * a fork. Fresh runners are not started while a program runs: a start costs a few hundred ms of
 * CPU that the running program's jobs would pay. A computation with `isolate: 'job'` gets a
 * fresh runner for each job, retired after it (the next one is started as it takes its job).
 *
 * Killing one job goes through the runner's kill arbiter (runner-arbiter.ts): the daemon names
 * the job, the runner decides, so a job that has just ended keeps its result and the job after
 * it is never hit.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Computation } from '../protocol/messages.js';
import { TAG_ENV, killTaggedAsync } from './process-tag.js';
import {
  RunnerCommand,
  RunnerEvent,
  TERMINATE_GRACE,
  type FromRunner,
  type RunnerDone,
  type RunnerItem,
  type RunnerJob,
  type ToRunner,
  type RunnerFileAck,
  type RunnerSendFile,
} from './runner-protocol.js';
import { jobCode } from './job-code.js';

export type { RunnerDone } from './runner-protocol.js';
export { TERMINATE_GRACE } from './runner-protocol.js';

/** What a runner needs to load a computation. */
export interface LoadSpec {
  computation: Computation;
  dir: string;
  setup: string | null;
  cleanup: string | null;
  /** base64 of the encoded setup arguments. */
  setupArgs: string | null;
}

/** Whose runners a computation uses. */
export interface Placement {
  /** The client program it belongs to: runners are never shared between programs. */
  program: string;
  /** A fresh runner for each job (`isolate: 'job'`). */
  isolate: boolean;
}

/** Why the daemon ends a job (the text and code its client gets). */
export interface KillReason {
  exception: string;
  code: string;
}

/** Seconds a retired runner gets to run its computations' cleanup before it is killed. */
const RETIRE_GRACE = 10;
/**
 * Seconds after a kill request past the arbiter's own SIGKILL by which the job must be gone; if
 * it is not (the arbiter thread failed), the daemon kills the runner itself.
 */
const KILL_BACKUP = 5;
/** Bytes of a runner's own stderr kept to explain its death (V8's out-of-memory report). */
const STDERR_TAIL = 8192;
/** How long (ms) a runner that aborted may take to deliver the rest of its stderr. */
const STDERR_WAIT_MS = 1000;

function runnerEntry(): string {
  const sibling = new URL('./runner-main.js', import.meta.url);
  if (existsSync(sibling)) return fileURLToPath(sibling);
  // Running from src/ under a TypeScript loader: runners use the built file.
  const built = new URL('../../dist/node/runner-main.js', import.meta.url);
  if (existsSync(built)) return fileURLToPath(built);
  throw new Error('dist/node/runner-main.js not found: run `npm run build` first');
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
  /** A part of a file the job sends home (send-file-relay.ts), and how to answer the runner. */
  onSendFile?: (item: RunnerSendFile, reply: (ack: RunnerFileAck) => void) => void;
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

  constructor(child: ChildProcess, tag = '') {
    this.child = child;
    this.pid = child.pid!;
    this.tag = tag;
    this.ready = new Promise((resolve, reject) => {
      child.once('message', () => {
        this.isReady = true;
        resolve();
      });
      child.once('exit', (code, signal) => reject(new Error(`runner exited at start (code ${code}, signal ${signal})`)));
    });
    this.ready.catch(() => undefined);
    this.gone = new Promise((r) => (this.markGone = r));
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
}

export interface RunnerPoolOptions {
  size: number;
  log: Logger;
  nodeName: string;
  nodeIpAddr: string;
  /** The node's tag (`<host>/<daemon id>`); each runner's is `<tag>/r<n>`. */
  tag?: string;
  /** The node's --max-message-size: runners refuse larger results. */
  maxMessageSize?: number;
}

interface KnownComputation extends Placement {
  spec: LoadSpec;
}

export class RunnerPool {
  readonly runners = new Set<Runner>();
  readonly #opts: RunnerPoolOptions;
  readonly #entry = runnerEntry();
  readonly #computations = new Map<string, KnownComputation>();
  /** Runners still to report Unloaded, per computation being closed. */
  readonly #unloading = new Map<string, { pending: Set<Runner>; done: () => void }>();
  /** Per computation being loaded: called with each runner's answer. */
  readonly #loadWaiters = new Map<string, (runner: Runner, err: { code: string; message: string } | null) => void>();
  readonly #toFlush = new Set<Runner>();
  #flushScheduled = false;
  #closed = false;
  /** Runners forked so far (numbers their tags). */
  #forked = 0;
  /** Called when a runner has room again (jobs ended or a replacement started). */
  onIdle: () => void = () => undefined;
  /** Called when a runner failed to load a computation after its first load succeeded. */
  onLoadFailed: (computeId: string, error: { code: string; message: string }) => void = () => undefined;
  /** Called when the set of runner pids changes. */
  onPidsChanged: () => void = () => undefined;

  constructor(opts: RunnerPoolOptions) {
    this.#opts = opts;
  }

  async start(): Promise<void> {
    const spawned: Promise<void>[] = [];
    for (let i = 0; i < this.#opts.size; i++) spawned.push(this.#spawn().ready);
    await Promise.all(spawned);
  }

  /** Pids of every live runner (for the pid file used by `--clean`). */
  pids(): number[] {
    return [...this.runners].filter((r) => !r.exited).map((r) => r.pid);
  }

  /** Whether `runner` may run jobs of computation `computeId` (fresh runners may run any). */
  fits(runner: Runner, computeId: string): boolean {
    const c = this.#computations.get(computeId);
    if (!c) return false;
    if (runner.fresh) return true;
    if (runner.program !== c.program) return false;
    return c.isolate ? runner.isolatedFor === computeId : runner.isolatedFor === null;
  }

  /** Spawns fresh runners until `count` are fresh (counting those still starting). */
  ensureFresh(count: number): void {
    if (this.#closed) return;
    let fresh = 0;
    for (const r of this.runners) if (r.fresh && !r.exited && !r.retiring) fresh++;
    for (; fresh < count; fresh++) this.#spawn();
  }

  #spawn(program: string | null = null, isolatedFor: string | null = null): Runner {
    const tag = this.#opts.tag ? `${this.#opts.tag}/r${++this.#forked}` : '';
    const child = fork(this.#entry, [], {
      execArgv: [],
      detached: true,
      serialization: 'json',
      // 2: its own stderr (V8's fatal reports), 3: IPC, 4: its kill pipe (runner-arbiter.ts).
      stdio: ['ignore', 'ignore', 'pipe', 'ipc', 'pipe'],
      env: {
        ...process.env,
        DISPYTS_RUNNER: '1',
        ...(tag ? { [TAG_ENV]: tag } : {}),
        ...(this.#opts.maxMessageSize ? { DISPYTS_MAX_MESSAGE_SIZE: String(this.#opts.maxMessageSize) } : {}),
      },
    });
    const runner = new Runner(child, tag);
    runner.program = program;
    runner.isolatedFor = isolatedFor;
    this.runners.add(runner);
    child.on('message', (msg: FromRunner) => {
      if (msg.ev === RunnerEvent.Batch) for (const item of msg.items) this.#onItem(runner, item);
    });
    // What the runner itself writes to stderr goes on to the daemon's; its end is kept.
    let stderrEnded = false;
    const stderr = child.stderr!;
    stderr.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      runner.stderrTail = (runner.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL);
    });
    stderr.on('error', () => undefined);
    (child.stdio[4] as Writable | null)?.on('error', () => undefined);
    // Handle the end once the process exited AND its IPC channel drained, so every message it
    // sent before dying has been seen (and, after an abort, what it wrote to stderr).
    let exitInfo: [number | null, NodeJS.Signals | null] | null = null;
    let disconnected = !child.connected;
    let stderrWait: NodeJS.Timeout | null = null;
    const maybeEnd = (): void => {
      if (!exitInfo || !disconnected || runner.exited) return;
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
      this.#onExit(runner, code, signal);
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
    child.on('error', (err) => this.#opts.log.warn({ err, pid: runner.pid }, 'runner error'));
    runner.ready.then(
      () => {
        // A runner spawned for a program sets up that program's computations now.
        for (const [computeId, c] of this.#computations) {
          if (!runner.fresh && this.fits(runner, computeId) && !runner.loaded.has(computeId)) this.#load(runner, computeId, c.spec);
        }
        this.onPidsChanged();
        if (!this.#closed) this.onIdle();
      },
      () => undefined,
    );
    return runner;
  }

  /**
   * Keeps `size` runners that can take work (fresh ones, or serving a program), spawning fresh
   * ones for those retired or gone.
   */
  #topUp(): void {
    if (this.#closed) return;
    let live = 0;
    for (const r of this.runners) if (!r.exited && !r.retiring && !r.spent && !r.terminating) live++;
    for (; live < this.#opts.size; live++) this.#spawn();
  }

  #onItem(runner: Runner, item: RunnerItem): void {
    switch (item.ev) {
      case RunnerEvent.Loaded: {
        const waiter = this.#loadWaiters.get(item.computeId);
        if (waiter) {
          waiter(runner, item.error);
        } else if (item.error && this.#computations.has(item.computeId)) {
          // A runner started later could not load (or set up) a computation the others have.
          this.onLoadFailed(item.computeId, item.error);
        }
        if (item.error) runner.loaded.delete(item.computeId);
        return;
      }
      case RunnerEvent.Started: {
        const job = runner.jobs.get(item.uid);
        if (job) {
          job.started = true;
          job.onStarted(item.startTime);
        }
        return;
      }
      case RunnerEvent.Done: {
        // Accepted even while a kill of it is on its way: the job ended first, its result stands.
        const job = runner.jobs.get(item.uid);
        if (job) {
          runner.jobs.delete(item.uid);
          runner.kills.delete(item.uid);
          job.onEnd({ kind: 'done', done: item });
          if (runner.spent && runner.jobs.size === 0) this.#retire(runner);
          this.onIdle();
        }
        return;
      }
      case RunnerEvent.Dropped: {
        const job = runner.jobs.get(item.uid);
        if (job) {
          runner.jobs.delete(item.uid);
          // An isolated runner whose job never started is still unused.
          if (runner.spent && runner.jobs.size === 0) runner.spent = false;
          job.onEnd({ kind: 'dropped' });
          this.onIdle();
        }
        return;
      }
      case RunnerEvent.Unloaded:
        if (item.error) this.#opts.log.warn({ pid: runner.pid, computeId: item.computeId, error: item.error }, 'cleanup failed');
        this.#unloaded(runner, item.computeId);
        return;
      case RunnerEvent.Provisional: {
        const job = runner.jobs.get(item.uid);
        if (job && !runner.terminating) job.onProvisional(Buffer.from(item.result, 'base64'));
        return;
      }
      case RunnerEvent.SendFile: {
        const job = runner.jobs.get(item.uid);
        if (job?.onSendFile && !runner.terminating) job.onSendFile(item, (ack) => runner.send(ack));
        else
          runner.send({
            cmd: RunnerCommand.FileAck,
            fid: item.fid,
            offset: 0,
            error: { code: 'DISPY_ERR_NOT_FOUND', message: 'the job is not running' },
          });
        return;
      }
      case RunnerEvent.Stray:
        this.#opts.log.warn(
          { pid: runner.pid, computeId: item.computeId, uid: item.uid, error: item.error },
          'an error was thrown asynchronously after its job ended (or outside any job): logged, no job failed for it',
        );
        return;
    }
  }

  /** Why a runner that nobody asked to die died, as its running job's exception. */
  #unexpected(runner: Runner, code: number | null, signal: NodeJS.Signals | null): KillReason {
    if (/JavaScript heap out of memory|Reached heap limit/.test(runner.stderrTail)) {
      return {
        exception:
          "DispyError: DISPY_ERR_OUT_OF_MEMORY: the job ran out of memory: its runner process reached V8's heap limit (JavaScript heap out of memory) and was aborted",
        code: 'DISPY_ERR_OUT_OF_MEMORY',
      };
    }
    const hint = signal === 'SIGKILL' ? " (not by dispyts: the system's out-of-memory killer does this, see `dmesg`)" : '';
    return {
      exception: `DispyError: the job's runner process exited unexpectedly (code ${code}, signal ${signal})${hint}`,
      code: 'DISPY_ERR_JOB_TERMINATED',
    };
  }

  #onExit(runner: Runner, code: number | null, signal: NodeJS.Signals | null): void {
    runner.exited = true;
    this.runners.delete(runner);
    this.#toFlush.delete(runner);
    // Take the rest of the job's process group with it.
    runner.killGroup('SIGKILL');
    const jobs = [...runner.jobs.values()];
    runner.jobs.clear();
    // A runner reports Started before it calls a job's code, so the one started job (if any) is
    // the one that was running; the ones behind it never started and go back to the daemon's
    // queue.
    const running = jobs.find((j) => j.started) ?? null;
    for (const job of jobs) {
      if (job !== running) {
        job.onEnd({ kind: 'dropped' });
        continue;
      }
      const oom = /JavaScript heap out of memory|Reached heap limit/.test(runner.stderrTail);
      const why = (!oom && (runner.kills.get(job.uid) ?? runner.terminating)) || this.#unexpected(runner, code, signal);
      job.onEnd({
        kind: 'done',
        done: {
          ev: RunnerEvent.Done,
          uid: job.uid,
          ok: false,
          result: null,
          exception: why.exception,
          code: why.code,
          stdout: '',
          stderr: '',
          cpuTime: 0,
          endTime: Date.now(),
        },
      });
    }
    if (!running && !runner.retiring && !runner.terminating && runner.kills.size === 0 && (code !== 0 || signal)) {
      this.#opts.log.warn({ pid: runner.pid, code, signal }, 'a job runner exited while no job was running in it');
    }
    for (const computeId of [...this.#unloading.keys()]) this.#unloaded(runner, computeId);
    for (const waiter of [...this.#loadWaiters.values()]) waiter(runner, null);
    runner.markGone();
    this.#topUp();
    this.onPidsChanged();
  }

  #load(runner: Runner, computeId: string, spec: LoadSpec): void {
    runner.loaded.add(computeId);
    runner.send({ cmd: RunnerCommand.Load, computeId, ...spec, nodeName: this.#opts.nodeName, nodeIpAddr: this.#opts.nodeIpAddr });
  }

  /**
   * Loads a computation (and runs its setup) in the runners of its program, binding fresh ones
   * to it (for `isolate`, in one fresh runner, which runs its first job); resolves with the
   * first runner's verdict. Runners that join later load it before their first job of it.
   */
  load(computeId: string, spec: LoadSpec, placement: Placement): Promise<{ code: string; message: string } | null> {
    this.#computations.set(computeId, { spec, ...placement });
    const usable = [...this.runners].filter((r) => !r.exited && !r.retiring && !r.terminating);
    let targets: Runner[];
    if (placement.isolate) {
      const fresh = usable.find((r) => r.fresh);
      const runner = fresh ?? this.#spawn(placement.program, computeId);
      runner.program = placement.program;
      runner.isolatedFor = computeId;
      targets = [runner];
    } else {
      targets = usable.filter((r) => r.fresh || (r.program === placement.program && r.isolatedFor === null));
      for (const r of targets) r.program = placement.program;
      // Every runner serves another program (through a scheduler): this one gets its own.
      if (targets.length === 0) for (let i = 0; i < this.#opts.size; i++) targets.push(this.#spawn(placement.program));
    }
    this.#topUp();
    // Resolves once every runner answered (setup ran everywhere), or at the first failure.
    const waiting = new Set(targets);
    const verdict = new Promise<{ code: string; message: string } | null>((resolve) => {
      const settle = (err: { code: string; message: string } | null): void => {
        this.#loadWaiters.delete(computeId);
        resolve(err);
      };
      this.#loadWaiters.set(computeId, (runner, err) => {
        if (err) settle(err);
        else if (waiting.delete(runner) && waiting.size === 0) settle(null);
      });
    });
    // Runners still starting load it once ready (see #spawn).
    for (const r of targets) if (r.isReady && !r.loaded.has(computeId)) this.#load(r, computeId, spec);
    return verdict;
  }

  /** Forgets a computation; resolves once every runner that loaded it ran its cleanup. */
  unload(computeId: string): Promise<void> {
    this.#computations.delete(computeId);
    const pending = new Set<Runner>();
    for (const r of this.runners) {
      if (r.isolatedFor === computeId) {
        // A runner kept for one job of it is of no use now: it runs the cleanup as it retires.
        if (r.loaded.delete(computeId) && !r.exited) pending.add(r);
        if (r.jobs.size === 0) this.#retire(r);
        continue;
      }
      if (r.loaded.delete(computeId) && !r.exited) {
        pending.add(r);
        r.send({ cmd: RunnerCommand.Unload, computeId });
      }
    }
    if (pending.size === 0) return Promise.resolve();
    return new Promise((done) => this.#unloading.set(computeId, { pending, done }));
  }

  #unloaded(runner: Runner, computeId: string): void {
    const u = this.#unloading.get(computeId);
    if (!u?.pending.delete(runner) || u.pending.size > 0) return;
    this.#unloading.delete(computeId);
    u.done();
  }

  /**
   * A program is done with this node (its last computation closed, or its client is gone):
   * its runners are retired and fresh ones take their place at once. `program` names one
   * program, or every program of a client with `prefix`.
   */
  retireProgram(program: string, prefix = false): void {
    for (const r of this.runners) {
      if (r.exited || r.retiring || r.program === null) continue;
      if (r.program !== program && !(prefix && r.program.startsWith(`${program}/`))) continue;
      if (r.jobs.size > 0) {
        this.#opts.log.warn({ pid: r.pid, program, jobs: r.jobs.size }, 'a runner of a finished program still has jobs: killed');
        this.terminate(r, 'DispyError: job terminated: its program is done with this node');
        continue;
      }
      this.#retire(r);
    }
    this.#topUp();
  }

  #retire(runner: Runner): void {
    if (runner.retiring || runner.exited) return;
    runner.retiring = true;
    runner.send({ cmd: RunnerCommand.Retire });
    const t = setTimeout(() => runner.killGroup('SIGKILL'), RETIRE_GRACE * 1000);
    t.unref();
    runner.child.once('exit', () => clearTimeout(t));
    this.#topUp();
  }

  /** Hands a job to a runner; it is sent with the others handed out in this turn. */
  assign(runner: Runner, job: AssignedJob, args: Uint8Array): void {
    const c = this.#computations.get(job.computeId);
    if (runner.fresh && c) {
      runner.program = c.program;
      if (c.isolate) runner.isolatedFor = job.computeId;
    }
    if (c?.isolate) {
      // Its one job: a fresh runner is spawned at once for the next one.
      runner.spent = true;
      this.#topUp();
    }
    runner.jobs.set(job.uid, job);
    if (c && !runner.loaded.has(job.computeId)) this.#load(runner, job.computeId, c.spec);
    runner.outbox.push({
      uid: job.uid,
      computeId: job.computeId,
      args: Buffer.from(args.buffer, args.byteOffset, args.byteLength).toString('base64'),
      ...jobCode(args),
    });
    this.#toFlush.add(runner);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    for (const r of this.#toFlush) {
      const jobs = r.outbox;
      r.outbox = [];
      if (jobs.length) r.send({ cmd: RunnerCommand.Run, jobs });
    }
    this.#toFlush.clear();
  }

  /** Asks a runner to drop a job it has not started (answered with `dropped` if in time). */
  drop(runner: Runner, uid: number): void {
    const i = runner.outbox.findIndex((j) => j.uid === uid);
    if (i >= 0) {
      runner.outbox.splice(i, 1);
      const job = runner.jobs.get(uid);
      runner.jobs.delete(uid);
      if (runner.spent && runner.jobs.size === 0) runner.spent = false;
      job?.onEnd({ kind: 'dropped' });
      return;
    }
    runner.send({ cmd: RunnerCommand.Drop, uid });
  }

  /**
   * Kills job `uid`, which the runner reported started: its runner's arbiter kills the runner's
   * process group (SIGTERM, SIGKILL after the grace period) if that job still runs, and does
   * nothing if it ended meanwhile (its Done then arrives and stands). The runner is replaced.
   */
  kill(runner: Runner, uid: number, exception: string, code = 'DISPY_ERR_JOB_TERMINATED'): void {
    const job = runner.jobs.get(uid);
    if (!job?.started || runner.exited || runner.terminating || runner.kills.has(uid)) return;
    runner.kills.set(uid, { exception, code });
    if (runner.isolatedFor !== null) {
      // Its one job: even if that job has just ended (its Done is read before the exit is
      // handled, and stands), the kill hits no other.
      this.terminate(runner, exception, code);
      return;
    }
    (runner.child.stdio[4] as Writable | null)?.write(`${uid}\n`);
    // The arbiter answers within milliseconds; this only fires if it could not (it failed).
    const t = setTimeout(
      () => {
        if (!runner.exited && runner.jobs.get(uid) === job) {
          this.#opts.log.warn({ pid: runner.pid, uid }, "the runner's kill arbiter did not end the job: killing the runner");
          this.terminate(runner, exception, code);
        }
      },
      (TERMINATE_GRACE + KILL_BACKUP) * 1000,
    );
    t.unref();
    runner.child.once('exit', () => clearTimeout(t));
  }

  /** Kills a whole runner, whatever it runs (SIGTERM to its group, SIGKILL after the grace period). */
  terminate(runner: Runner, exception: string, code = 'DISPY_ERR_JOB_TERMINATED'): void {
    if (runner.exited || runner.terminating) return;
    runner.terminating = { exception, code };
    runner.killGroup('SIGTERM');
    const t = setTimeout(() => runner.killGroup('SIGKILL'), TERMINATE_GRACE * 1000);
    t.unref();
    runner.child.once('exit', () => clearTimeout(t));
    this.#topUp();
  }

  /** Stops every runner; resolves once all have exited. */
  async close(): Promise<void> {
    this.#closed = true;
    const exits = [...this.runners].map((r) => r.gone);
    for (const r of this.runners) {
      r.terminating ??= { exception: 'DispyError: the node is shutting down', code: 'DISPY_ERR_JOB_TERMINATED' };
      r.killGroup('SIGTERM');
    }
    const t = setTimeout(() => {
      for (const r of this.runners) r.killGroup('SIGKILL');
    }, TERMINATE_GRACE * 1000);
    t.unref();
    await Promise.all(exits);
    clearTimeout(t);
  }
}
