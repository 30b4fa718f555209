/**
 * The daemon's pre-spawned job runners. Each runner is forked detached (it leads its own process
 * group, so a job and every process it starts can be killed together), with `execArgv: []` so a
 * daemon started under a TypeScript loader does not slow them, and runs one job at a time.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Computation } from '../protocol/messages.js';
import { RunnerCommand, RunnerEvent, type FromRunner, type ToRunner } from './runner-protocol.js';

export type RunnerDone = Extract<FromRunner, { ev: RunnerEvent.Done }>;

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

interface RunningJob {
  uid: number;
  resolve: (d: RunnerDone) => void;
  onProvisional: (result: Uint8Array) => void;
}

export class Runner {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly loaded = new Set<string>();
  job: RunningJob | null = null;
  /** Why the daemon is killing this runner, if it is. */
  terminating: { exception: string; code: string } | null = null;
  exited = false;
  readonly ready: Promise<void>;

  constructor(child: ChildProcess) {
    this.child = child;
    this.pid = child.pid!;
    this.ready = new Promise((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code, signal) => reject(new Error(`runner exited at start (code ${code}, signal ${signal})`)));
    });
    this.ready.catch(() => undefined);
  }

  send(msg: ToRunner): void {
    if (!this.exited && this.child.connected) this.child.send(msg);
  }

  /** Signals the runner's whole process group. */
  killGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // group already gone
    }
  }
}

export interface RunnerPoolOptions {
  size: number;
  log: Logger;
  nodeName: string;
  nodeIpAddr: string;
}

export class RunnerPool {
  readonly runners = new Set<Runner>();
  readonly #opts: RunnerPoolOptions;
  readonly #entry = runnerEntry();
  readonly #computations = new Map<string, { computation: Computation; dir: string }>();
  readonly #loadWaiters = new Map<string, ((err: { code: string; message: string } | null) => void)[]>();
  #closed = false;
  /** Called when a runner becomes idle (a job ended or a replacement started). */
  onIdle: () => void = () => undefined;

  constructor(opts: RunnerPoolOptions) {
    this.#opts = opts;
  }

  get size(): number {
    return this.#opts.size;
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
    const child = fork(this.#entry, [], {
      execArgv: [],
      detached: true,
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      env: { ...process.env, DISPYTS_RUNNER: '1' },
    });
    const runner = new Runner(child);
    this.runners.add(runner);
    child.on('message', (msg: FromRunner) => this.#onMessage(runner, msg));
    child.on('exit', (code, signal) => this.#onExit(runner, code, signal));
    child.on('error', (err) => this.#opts.log.warn({ err, pid: runner.pid }, 'runner error'));
    runner.ready.then(() => {
      for (const [computeId, c] of this.#computations) this.#load(runner, computeId, c.computation, c.dir);
      if (!this.#closed) this.onIdle();
    }, () => undefined);
    return runner;
  }

  #onMessage(runner: Runner, msg: FromRunner): void {
    switch (msg.ev) {
      case RunnerEvent.Loaded: {
        const waiters = this.#loadWaiters.get(msg.computeId);
        if (waiters) {
          this.#loadWaiters.delete(msg.computeId);
          for (const w of waiters) w(msg.error);
        }
        if (msg.error) runner.loaded.delete(msg.computeId);
        break;
      }
      case RunnerEvent.Done: {
        const job = runner.job;
        if (job && job.uid === msg.uid && !runner.terminating) {
          runner.job = null;
          job.resolve(msg);
          this.onIdle();
        }
        break;
      }
      case RunnerEvent.Provisional:
        if (runner.job && runner.job.uid === msg.uid && !runner.terminating) runner.job.onProvisional(msg.result);
        break;
      default:
        break;
    }
  }

  #onExit(runner: Runner, code: number | null, signal: NodeJS.Signals | null): void {
    runner.exited = true;
    this.runners.delete(runner);
    // Take the rest of the job's process group with it.
    runner.killGroup('SIGKILL');
    const job = runner.job;
    runner.job = null;
    if (job) {
      const why = runner.terminating ?? {
        exception: `DispyError: the job's runner process exited unexpectedly (code ${code}, signal ${signal})`,
        code: 'DISPY_ERR_JOB_TERMINATED',
      };
      job.resolve({ ev: RunnerEvent.Done, uid: job.uid, ok: false, result: null, exception: why.exception, code: why.code, stdout: '', stderr: '', cpuTime: 0 });
    }
    if (!this.#closed && this.runners.size < this.#opts.size) this.#spawn();
  }

  #load(runner: Runner, computeId: string, computation: Computation, dir: string): void {
    runner.loaded.add(computeId);
    runner.send({ cmd: RunnerCommand.Load, computeId, computation, dir, nodeName: this.#opts.nodeName, nodeIpAddr: this.#opts.nodeIpAddr });
  }

  /** Loads a computation into every runner; resolves with the first runner's verdict. */
  load(computeId: string, computation: Computation, dir: string): Promise<{ code: string; message: string } | null> {
    this.#computations.set(computeId, { computation, dir });
    const verdict = new Promise<{ code: string; message: string } | null>((resolve) => {
      const list = this.#loadWaiters.get(computeId) ?? [];
      list.push(resolve);
      this.#loadWaiters.set(computeId, list);
    });
    for (const r of this.runners) if (!r.exited) this.#load(r, computeId, computation, dir);
    return verdict;
  }

  unload(computeId: string): void {
    this.#computations.delete(computeId);
    for (const r of this.runners) {
      if (r.loaded.delete(computeId)) r.send({ cmd: RunnerCommand.Unload, computeId });
    }
  }

  /** An idle runner, if any. */
  idle(): Runner | undefined {
    for (const r of this.runners) if (!r.job && !r.exited && !r.terminating && r.child.connected) return r;
    return undefined;
  }

  /** Runs a job on an idle runner; resolves when it ends, however it ends. */
  run(runner: Runner, uid: number, computeId: string, args: Uint8Array, onProvisional: (r: Uint8Array) => void): Promise<RunnerDone> {
    return new Promise((resolve) => {
      runner.job = { uid, resolve, onProvisional };
      const c = this.#computations.get(computeId);
      if (c && !runner.loaded.has(computeId)) this.#load(runner, computeId, c.computation, c.dir);
      runner.send({ cmd: RunnerCommand.Run, uid, computeId, args });
    });
  }

  /** Kills a runner's job (SIGTERM to its group, SIGKILL after the grace period). */
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
    const exits = [...this.runners].map((r) => (r.exited ? Promise.resolve() : new Promise<void>((res) => r.child.once('exit', () => res()))));
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
