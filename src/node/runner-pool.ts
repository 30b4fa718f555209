/**
 * The daemon's pre-spawned job runners (runner.ts): which runner serves which program, loading
 * and unloading computations in them, handing them jobs, and replacing those that retire or die.
 * The daemon's job scheduler sees the pool through `RunnerSlots` (node-scheduler.ts).
 *
 * One program per runner: a fresh runner is bound to the client program of the first
 * computation it loads and only ever runs that program's jobs (its computations share it). When
 * the program is done with the node the daemon retires its runners and starts as many fresh ones
 * at once (the node is idle then), so the next program binds started ones and does not wait for
 * a fork. Fresh runners are not started while a program runs: a start costs a few hundred ms of
 * CPU that the running program's jobs would pay. A computation with `isolate: 'job'` gets a
 * fresh runner for each job, retired after it (the next one is started as it takes its job).
 *
 * Killing one job goes through its runner (runner.ts), which asks the runner's kill arbiter.
 */
import type { Logger } from 'pino';
import type { Computation } from '../protocol/messages.js';
import { jobCode } from './job-code.js';
import type { ExtItem } from './runner-extensions.js';
import {
  RunnerCommand,
  RunnerEvent,
  TERMINATE_GRACE,
  type RunnerFileAck,
  type RunnerItem,
  type RunnerJob,
  type RunnerSendFile,
} from './runner-protocol.js';
import { Runner, runnerEntry, type AssignedJob, type KillReason } from './runner.js';
import { jobException, type DispyErrorCode } from '../errors.js';

export type { RunnerDone } from './runner-protocol.js';
export { TERMINATE_GRACE } from './runner-protocol.js';
export { Runner, type AssignedJob, type KillReason, type RunnerOutcome } from './runner.js';

/** What a runner needs to load a computation. */
export interface LoadSpec {
  computation: Computation;
  dir: string;
  setup: string | null;
  cleanup: string | null;
  /** base64 of the encoded setup arguments. */
  setupArgs: string | null;
  /** base64 of what the computation's nodeSetup returned on this node (node-setup-once.ts). */
  nodeValue?: string | null;
}

/** Whose runners a computation uses. */
export interface Placement {
  /** The client program it belongs to: runners are never shared between programs. */
  program: string;
  /** A fresh runner for each job (`isolate: 'job'`). */
  isolate: boolean;
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
  readonly #loadWaiters = new Map<string, (runner: Runner, err: { code: DispyErrorCode; message: string } | null) => void>();
  readonly #toFlush = new Set<Runner>();
  #flushScheduled = false;
  #closed = false;
  /** Runners forked so far (numbers their tags). */
  #forked = 0;
  /** Called when a runner has room again (jobs ended or a replacement started). */
  onIdle: () => void = () => undefined;
  /** Called when a runner failed to load a computation after its first load succeeded. */
  onLoadFailed: (computeId: string, error: { code: DispyErrorCode; message: string }) => void = () => undefined;
  /** Called when the set of runner pids changes. */
  onPidsChanged: () => void = () => undefined;
  /**
   * Called with a part of a file the job `item.uid` of a runner sends home (send-file-relay.ts);
   * false if nobody takes it (the runner is told the job is not running).
   */
  onSendFile: (item: RunnerSendFile, reply: (ack: RunnerFileAck) => void) => boolean = () => false;
  /** Called with a runner's messages of runner-extensions.ts (node-extras.ts routes them). */
  onExtension: (runner: Runner, item: ExtItem) => void = () => undefined;

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
    const runner: Runner = new Runner({
      entry: this.#entry,
      tag,
      maxMessageSize: this.#opts.maxMessageSize,
      log: this.#opts.log,
      onItem: (item) => this.#onItem(runner, item),
      onExit: (code, signal) => this.#onExit(runner, code, signal),
      onTerminating: () => this.#topUp(),
    });
    runner.program = program;
    runner.isolatedFor = isolatedFor;
    this.runners.add(runner);
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
        const reply = (ack: RunnerFileAck): void => runner.send(ack);
        if (runner.jobs.has(item.uid) && !runner.terminating && this.onSendFile(item, reply)) return;
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
      default:
        this.onExtension(runner, item as unknown as ExtItem);
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
    // A runner reports Started before it calls a job's code, so the one started job (if any) is
    // the one that was running; the ones behind it never started and go back to the daemon's
    // queue.
    const running = jobs.find((j) => j.started) ?? null;
    for (const job of jobs) {
      if (job !== running) {
        job.onEnd({ kind: 'dropped' });
        continue;
      }
      const why = runner.endedWith(job.uid, code, signal);
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
    if (!running && runner.diedUnasked && (code !== 0 || signal)) {
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
  load(computeId: string, spec: LoadSpec, placement: Placement): Promise<{ code: DispyErrorCode; message: string } | null> {
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
    const verdict = new Promise<{ code: DispyErrorCode; message: string } | null>((resolve) => {
      const settle = (err: { code: DispyErrorCode; message: string } | null): void => {
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

  /**
   * A runner of `placement`'s program for work before the computation `computeId` is loaded
   * (its per-node setup): an idle one of the program, a fresh one bound to it, or a new one.
   */
  claimFor(placement: Placement, computeId: string): Runner {
    const usable = [...this.runners].filter((r) => r.usable);
    const runner =
      (placement.isolate ? undefined : usable.find((r) => this.#ofProgram(r, placement) && r.jobs.size === 0)) ??
      usable.find((r) => r.fresh) ??
      (placement.isolate ? undefined : usable.find((r) => this.#ofProgram(r, placement))) ??
      this.#spawn(placement.program, placement.isolate ? computeId : null);
    runner.program = placement.program;
    // Under `isolate: 'job'` it then runs one job of the computation, as the others do.
    if (placement.isolate) runner.isolatedFor = computeId;
    this.#topUp();
    return runner;
  }

  #ofProgram(r: Runner, placement: Placement): boolean {
    return r.program === placement.program && r.isolatedFor === null;
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
        r.terminate({ exception: jobException('job terminated: its program is done with this node'), code: 'DISPY_ERR_JOB_TERMINATED' });
        continue;
      }
      this.#retire(r);
    }
    this.#topUp();
  }

  #retire(runner: Runner): void {
    if (runner.retire()) this.#topUp();
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
    const sent: RunnerJob = {
      uid: job.uid,
      computeId: job.computeId,
      args: Buffer.from(args.buffer, args.byteOffset, args.byteLength).toString('base64'),
    };
    // A job's own functions travel with it (job-code.ts); most jobs have none.
    const depends = jobCode(args);
    if (depends) sent.depends = depends;
    runner.outbox.push(sent);
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

  /** Kills job `uid` through its runner's kill arbiter (runner.ts). */
  kill(runner: Runner, uid: number, why: KillReason): void {
    runner.kill(uid, why);
  }

  /** Kills a whole runner, whatever it runs (runner.ts). */
  terminate(runner: Runner, why: KillReason): void {
    runner.terminate(why);
  }

  /** Stops every runner; resolves once all have exited. */
  async close(): Promise<void> {
    this.#closed = true;
    const exits = [...this.runners].map((r) => r.gone);
    for (const r of this.runners) {
      r.terminating ??= { exception: jobException('the node is shutting down'), code: 'DISPY_ERR_JOB_TERMINATED' };
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
