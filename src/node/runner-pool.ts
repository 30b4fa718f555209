/**
 * The daemon's pre-spawned job runners. Each runner is forked detached (it leads its own process
 * group, so a job and every process it starts are killed together), with `execArgv: []` so a
 * daemon started under a TypeScript loader does not slow them, and runs one job at a time from
 * a short queue the daemon keeps filled. Each carries a tag in its environment (process-tag.ts)
 * that everything its jobs start inherits: killing a runner kills every process with its tag,
 * then their groups, so a job's process that left the group (`setsid`, a double fork) goes too.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Computation } from '../protocol/messages.js';
import { TAG_ENV, killTaggedAsync } from './process-tag.js';
import {
  RunnerCommand,
  RunnerEvent,
  type FromRunner,
  type RunnerDone,
  type RunnerItem,
  type RunnerJob,
  type ToRunner,
} from './runner-protocol.js';

export type { RunnerDone } from './runner-protocol.js';

/** What a runner needs to load a computation. */
export interface LoadSpec {
  computation: Computation;
  dir: string;
  setup: string | null;
  cleanup: string | null;
  /** base64 of the encoded setup arguments. */
  setupArgs: string | null;
}

/** Seconds between SIGTERM and SIGKILL when a job is terminated. */
export const TERMINATE_GRACE = 2;

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
}

export class Runner {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The tag in its environment, inherited by what its jobs start. */
  readonly tag: string;
  readonly loaded = new Set<string>();
  /** Jobs handed to this runner, in its queue order; the first started one is running. */
  readonly jobs = new Map<number, AssignedJob>();
  /** Why the daemon is killing this runner, if it is. */
  terminating: { exception: string; code: string } | null = null;
  exited = false;
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
      child.once('message', () => resolve());
      child.once('exit', (code, signal) => reject(new Error(`runner exited at start (code ${code}, signal ${signal})`)));
    });
    this.ready.catch(() => undefined);
    this.gone = new Promise((r) => (this.markGone = r));
  }

  /** Whether the runner may take a job now. */
  get usable(): boolean {
    return !this.exited && !this.terminating && this.child.connected;
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

export class RunnerPool {
  readonly runners = new Set<Runner>();
  readonly #opts: RunnerPoolOptions;
  readonly #entry = runnerEntry();
  readonly #computations = new Map<string, LoadSpec>();
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

  #spawn(): Runner {
    const tag = this.#opts.tag ? `${this.#opts.tag}/r${++this.#forked}` : '';
    const child = fork(this.#entry, [], {
      execArgv: [],
      detached: true,
      serialization: 'json',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: {
        ...process.env,
        DISPYTS_RUNNER: '1',
        ...(tag ? { [TAG_ENV]: tag } : {}),
        ...(this.#opts.maxMessageSize ? { DISPYTS_MAX_MESSAGE_SIZE: String(this.#opts.maxMessageSize) } : {}),
      },
    });
    const runner = new Runner(child, tag);
    this.runners.add(runner);
    child.on('message', (msg: FromRunner) => {
      if (msg.ev === RunnerEvent.Batch) for (const item of msg.items) this.#onItem(runner, item);
    });
    // Handle the end once the process exited AND its IPC channel drained, so every message it
    // sent before dying has been seen.
    let exitInfo: [number | null, NodeJS.Signals | null] | null = null;
    let disconnected = !child.connected;
    const maybeEnd = (): void => {
      if (exitInfo && disconnected && !runner.exited) this.#onExit(runner, exitInfo[0], exitInfo[1]);
    };
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
        for (const [computeId, c] of this.#computations) this.#load(runner, computeId, c);
        this.onPidsChanged();
        if (!this.#closed) this.onIdle();
      },
      () => undefined,
    );
    return runner;
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
        if (job && !runner.terminating) {
          job.started = true;
          job.onStarted(item.startTime);
        }
        return;
      }
      case RunnerEvent.Done: {
        const job = runner.jobs.get(item.uid);
        if (job && !runner.terminating) {
          runner.jobs.delete(item.uid);
          job.onEnd({ kind: 'done', done: item });
          this.onIdle();
        }
        return;
      }
      case RunnerEvent.Dropped: {
        const job = runner.jobs.get(item.uid);
        if (job) {
          runner.jobs.delete(item.uid);
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
    }
  }

  #onExit(runner: Runner, code: number | null, signal: NodeJS.Signals | null): void {
    runner.exited = true;
    this.runners.delete(runner);
    this.#toFlush.delete(runner);
    // Take the rest of the job's process group with it.
    runner.killGroup('SIGKILL');
    const jobs = [...runner.jobs.values()];
    runner.jobs.clear();
    // The runner runs its queue in order, so only the first job can have been running; the
    // ones behind it never started and go back to the daemon's queue.
    let running = jobs.find((j) => j.started) ?? null;
    if (!running && runner.terminating && jobs.length) running = jobs[0]!;
    for (const job of jobs) {
      if (job !== running) {
        job.onEnd({ kind: 'dropped' });
        continue;
      }
      const why = runner.terminating ?? {
        exception: `DispyError: the job's runner process exited unexpectedly (code ${code}, signal ${signal})`,
        code: 'DISPY_ERR_JOB_TERMINATED',
      };
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
    for (const computeId of [...this.#unloading.keys()]) this.#unloaded(runner, computeId);
    for (const waiter of [...this.#loadWaiters.values()]) waiter(runner, null);
    runner.markGone();
    if (!this.#closed && this.runners.size < this.#opts.size) this.#spawn();
    this.onPidsChanged();
  }

  #load(runner: Runner, computeId: string, spec: LoadSpec): void {
    runner.loaded.add(computeId);
    runner.send({ cmd: RunnerCommand.Load, computeId, ...spec, nodeName: this.#opts.nodeName, nodeIpAddr: this.#opts.nodeIpAddr });
  }

  /**
   * Loads a computation (and runs its setup) in every runner; resolves with the first runner's
   * verdict. Runners started later load it before their first job of it.
   */
  load(computeId: string, spec: LoadSpec): Promise<{ code: string; message: string } | null> {
    this.#computations.set(computeId, spec);
    const targets = [...this.runners].filter((r) => !r.exited);
    // Resolves once every runner answered (setup ran everywhere), or at the first failure.
    const waiting = new Set(targets);
    const verdict = new Promise<{ code: string; message: string } | null>((resolve) => {
      const settle = (err: { code: string; message: string } | null): void => {
        this.#loadWaiters.delete(computeId);
        resolve(err);
      };
      if (waiting.size === 0) settle(null);
      else {
        this.#loadWaiters.set(computeId, (runner, err) => {
          if (err) settle(err);
          else if (waiting.delete(runner) && waiting.size === 0) settle(null);
        });
      }
    });
    for (const r of targets) this.#load(r, computeId, spec);
    return verdict;
  }

  /** Forgets a computation; resolves once every runner that loaded it ran its cleanup. */
  unload(computeId: string): Promise<void> {
    this.#computations.delete(computeId);
    const pending = new Set<Runner>();
    for (const r of this.runners) {
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

  /** Hands a job to a runner; it is sent with the others handed out in this turn. */
  assign(runner: Runner, job: AssignedJob, args: Uint8Array): void {
    runner.jobs.set(job.uid, job);
    const c = this.#computations.get(job.computeId);
    if (c && !runner.loaded.has(job.computeId)) this.#load(runner, job.computeId, c);
    runner.outbox.push({
      uid: job.uid,
      computeId: job.computeId,
      args: Buffer.from(args.buffer, args.byteOffset, args.byteLength).toString('base64'),
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
      job?.onEnd({ kind: 'dropped' });
      return;
    }
    runner.send({ cmd: RunnerCommand.Drop, uid });
  }

  /** Kills a runner's running job (SIGTERM to its group, SIGKILL after the grace period). */
  terminate(runner: Runner, exception: string, code = 'DISPY_ERR_JOB_TERMINATED'): void {
    if (runner.exited || runner.terminating) return;
    runner.terminating = { exception, code };
    runner.killGroup('SIGTERM');
    const t = setTimeout(() => runner.killGroup('SIGKILL'), TERMINATE_GRACE * 1000);
    t.unref();
    runner.child.once('exit', () => clearTimeout(t));
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
