/**
 * The node's job scheduler: the queue of accepted jobs, which runner takes which job, taking
 * jobs back from busy runners, and the one place where the daemon decides to kill a job
 * (cancelled, its computation closed, its maxRuntime over, shutdown); how a job is killed is
 * runner.ts's. It sees the runners through `RunnerSlots` (the pool, or a fake one in unit tests)
 * and tells the rest of the daemon what happened to a job through `SchedulerHost`.
 */
import type { Logger } from 'pino';
import type { Channel } from '../protocol/channel.js';
import type { ClientMessage, NodeMessage } from '../protocol/messages.js';
import { nextAvgMs } from '../protocol/running-average.js';
import type { Comp } from './computations.js';
import { compSettled } from './computations.js';
import type { RunnerDone } from './runner-protocol.js';
import type { AssignedJob, KillReason, RunnerOutcome } from './runner.js';
import { Errors, jobException } from '../errors.js';

/** Jobs a runner may hold queued behind its running one, for computations of short jobs. */
export const LOOKAHEAD = 64;
/** Jobs per CPU the node accepts (running plus queued): clients keep this many in flight. */
export const WINDOW_PER_CPU = 64;
/** A computation whose jobs average less than this (ms) is "short". */
export const SHORT_JOB_MS = 2;

/** A runner as the scheduler sees it. */
export interface RunnerSlot {
  /** Jobs handed to it, in its queue order; at most the first one is started. */
  readonly jobs: ReadonlyMap<number, AssignedJob>;
  /** It may take a job now. */
  readonly usable: boolean;
  /** It has served no program yet. */
  readonly fresh: boolean;
}

/** The runners, as the scheduler uses them (RunnerPool; a fake pool in unit tests). */
export interface RunnerSlots {
  readonly runners: Iterable<RunnerSlot>;
  /** Whether `runner` may run jobs of computation `computeId`. */
  fits(runner: RunnerSlot, computeId: string): boolean;
  /** Spawns fresh runners until `count` are fresh. */
  ensureFresh(count: number): void;
  /** Hands a job to a runner; it reports through the job's callbacks. */
  assign(runner: RunnerSlot, job: AssignedJob, args: Uint8Array): void;
  /** Asks a runner to drop a job it has not started (answered `dropped` if in time). */
  drop(runner: RunnerSlot, uid: number): void;
  /** Kills a started job through its runner's kill arbiter. */
  kill(runner: RunnerSlot, uid: number, why: KillReason): void;
  /** Kills a whole runner, whatever it runs. */
  terminate(runner: RunnerSlot, why: KillReason): void;
}

/** A job the node accepted. */
export interface NodeJob {
  uid: number;
  comp: Comp;
  args: Uint8Array;
  channel: Channel<ClientMessage, NodeMessage>;
  /** queued here, handed to a runner, or running in it. */
  state: 'queued' | 'assigned' | 'running';
  runner: RunnerSlot | null;
  startTime: number;
  cancelRequested: boolean;
  /** Being taken back from a busy runner's queue for an idle one. */
  rebalancing: boolean;
  /** Seconds the job may run (0 = no limit), and the timer enforcing it. */
  maxRuntime: number;
  timer: NodeJS.Timeout | null;
  /** The client's id for the job, kept with a result that cannot be delivered. */
  tag: string | number | undefined;
  /** Resolves when the job ended (in whatever way). */
  ended: Promise<void>;
  end: () => void;
}

/** Why a job that never started leaves the node. */
export type Unstarted = 'cancelled' | 'closing' | 'draining';

/** What the scheduler needs from the rest of the daemon. */
export interface SchedulerHost {
  readonly log: Logger;
  /** CPUs the node runs jobs on now. */
  readonly cpuLimit: number;
  readonly stopping: boolean;
  readonly draining: boolean;
  /** Its client has no open connection: no job of it starts. */
  readonly clientAway: boolean;
  /** The served client's job `uid`. */
  job(uid: number): NodeJob | undefined;
  /** Job started in its runner. */
  started(job: NodeJob, startTime: number): void;
  provisional(job: NodeJob, result: Uint8Array): void;
  /** Job ended in its runner (its computation's counters are already updated). */
  finished(job: NodeJob, done: RunnerDone): void;
  /** Job leaves the node without having started. */
  unstarted(job: NodeJob, why: Unstarted): void;
  /** Polite cancels (polite-cancel.ts); without them a cancel kills at once. */
  readonly polite?: {
    /** Remembers the grace period a cancel came with. */
    ask(job: NodeJob, grace: number | undefined): void;
    /** Stops a started job as its cancel asked: politely, then `kill` after the grace; or `kill` at once. */
    stop(job: NodeJob, runner: RunnerSlot, uid: number, kill: (exception: string) => void): void;
  };
}

/** The texts and codes of the kills the daemon decides. */
export const KILLED = {
  cancel: { exception: Errors.jobCancelledByClient(), code: 'DISPY_ERR_JOB_TERMINATED' },
  closed: { exception: jobException('job terminated as its computation was closed'), code: 'DISPY_ERR_JOB_TERMINATED' },
  maxRuntime: (seconds: number): KillReason => ({
    exception: jobException(`DISPY_ERR_MAX_RUNTIME: job terminated after running for its maxRuntime of ${seconds} s`),
    code: 'DISPY_ERR_MAX_RUNTIME',
  }),
  shutdown: (host: string, reason: string): KillReason => ({
    exception: jobException(`node ${host} is shutting down (${reason})`),
    code: 'DISPY_ERR_JOB_TERMINATED',
  }),
} as const;

export class NodeScheduler {
  /** Accepted jobs waiting for a runner (bounded by cpus: the prefetch window). */
  readonly #queue: NodeJob[] = [];
  /** Jobs handed to runners (running or queued in them). */
  #running = 0;
  readonly #slots: RunnerSlots;
  readonly #host: SchedulerHost;

  constructor(slots: RunnerSlots, host: SchedulerHost) {
    this.#slots = slots;
    this.#host = host;
  }

  /** Jobs handed to runners (running or queued in them). */
  get running(): number {
    return this.#running;
  }

  /** Jobs accepted and waiting for a runner. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Whether the node's window of `cpus` × WINDOW_PER_CPU jobs is full. */
  full(cpus: number): boolean {
    return this.#running + this.#queue.length >= WINDOW_PER_CPU * cpus;
  }

  /** Accepts a job (state 'queued') and starts what can start. */
  submit(job: NodeJob): void {
    job.comp.queued++;
    this.#queue.push(job);
    this.schedule();
  }

  /**
   * Hands queued jobs to runners: an empty runner takes any job whose computation is under its
   * cap; a runner already holding a computation of short jobs takes more of them (up to
   * LOOKAHEAD) so they run back to back without a round trip each.
   */
  schedule(): void {
    const host = this.#host;
    // A client that is away gets no new job started until it returns.
    if (host.stopping || host.draining || host.clientAway) return;
    let i = 0;
    let isolatedWaiting = 0;
    while (i < this.#queue.length) {
      const job = this.#queue[i]!;
      const runner = this.#runnerFor(job.comp);
      if (!runner) {
        if (job.comp.isolate) isolatedWaiting++;
        i++;
        continue;
      }
      this.#queue.splice(i, 1);
      this.#assign(job, runner);
    }
    // Jobs that each need a fresh process get them spawned, as many as CPUs are free.
    if (isolatedWaiting) this.#slots.ensureFresh(Math.min(isolatedWaiting, host.cpuLimit - this.busyRunners()));
    if (this.#queue.length === 0) this.#rebalance();
  }

  /** Runners holding a job (running or about to). */
  busyRunners(): number {
    let busy = 0;
    for (const r of this.#slots.runners) if (r.jobs.size > 0) busy++;
    return busy;
  }

  /** Jobs running now (reported started by their runner). */
  busyJobs(): number {
    let busy = 0;
    for (const r of this.#slots.runners) for (const a of r.jobs.values()) if (a.started) busy++;
    return busy;
  }

  /** Whether one more runner may take a job under the CPU limit (runners may outnumber CPUs). */
  #belowCpuLimit(): boolean {
    return this.busyRunners() < this.#host.cpuLimit;
  }

  /**
   * An empty runner if the computation's cap allows one more; otherwise a runner busy with the
   * same computation that may queue it: up to LOOKAHEAD jobs for short jobs, one behind the
   * running job for long ones (so the runner starts it without waiting for the daemon).
   */
  #runnerFor(comp: Comp): RunnerSlot | undefined {
    const slots = this.#slots;
    const limit = comp.avgMs < SHORT_JOB_MS ? LOOKAHEAD : 2;
    let behind: RunnerSlot | undefined;
    let empty: RunnerSlot | undefined;
    for (const r of slots.runners) {
      if (!r.usable || !slots.fits(r, comp.id)) continue;
      if (r.jobs.size === 0) {
        // One that already set the computation up before a fresh one.
        if (!empty || (empty.fresh && !r.fresh)) empty = r;
        continue;
      }
      // An isolated job never waits behind another one: its runner runs it alone.
      if (comp.isolate || r.jobs.size >= limit || (behind && behind.jobs.size <= r.jobs.size)) continue;
      let same = true;
      for (const j of r.jobs.values()) if (j.computeId !== comp.id) same = false;
      if (same) behind = r;
    }
    const holding = this.#runnersHolding(comp);
    if (empty && holding < comp.cap && this.#belowCpuLimit()) return empty;
    // Queueing behind a running job is no new concurrency, but not above a lowered cap.
    return holding <= comp.cap ? behind : undefined;
  }

  /**
   * When a runner sits empty with nothing queued here, a long job waiting behind another
   * runner's running job is taken back (if it has not started) and runs on the empty one.
   */
  #rebalance(): void {
    const slots = this.#slots;
    const runners = [...slots.runners].filter((r) => r.usable);
    const emptyOnes = runners.filter((r) => r.jobs.size === 0);
    let empty = emptyOnes.length;
    for (const r of runners) {
      if (empty === 0) return;
      if (r.jobs.size < 2) continue;
      const waiting = [...r.jobs.values()].reverse().find((j) => !j.started);
      const job = waiting && this.#host.job(waiting.uid);
      if (!job || job.cancelRequested || job.rebalancing || job.comp.avgMs < SHORT_JOB_MS) continue;
      // Only to an empty runner that may run it (the same program's, or a fresh one).
      if (!emptyOnes.some((e) => slots.fits(e, job.comp.id))) continue;
      // Only if an empty runner may take it (the computation's cap counts runners).
      if (this.#runnersHolding(job.comp) >= job.comp.cap || !this.#belowCpuLimit()) continue;
      job.rebalancing = true;
      slots.drop(r, job.uid);
      empty--;
    }
  }

  /**
   * After a computation's cap was lowered (or its client went away, or the node drains): jobs
   * of it queued inside runners that have not started come back here, so running jobs finish
   * and no more start beyond the cap.
   */
  reclaim(comp: Comp): void {
    const waiting: [RunnerSlot, number][] = [];
    for (const r of this.#slots.runners) for (const a of r.jobs.values()) if (!a.started) waiting.push([r, a.uid]);
    for (const [r, uid] of waiting) {
      const job = this.#host.job(uid);
      if (job && job.comp === comp && !job.rebalancing && !job.cancelRequested) {
        job.rebalancing = true;
        this.#slots.drop(r, uid);
      }
    }
  }

  #runnersHolding(comp: Comp): number {
    let n = 0;
    for (const r of this.#slots.runners) {
      for (const j of r.jobs.values()) {
        if (j.computeId === comp.id) {
          n++;
          break;
        }
      }
    }
    return n;
  }

  #assign(job: NodeJob, runner: RunnerSlot): void {
    job.comp.queued--;
    job.comp.running++;
    this.#running++;
    job.state = 'assigned';
    job.runner = runner;
    const assigned: AssignedJob = {
      uid: job.uid,
      computeId: job.comp.id,
      started: false,
      onStarted: (startTime) => {
        job.state = 'running';
        job.startTime = startTime;
        if (job.maxRuntime > 0) {
          job.timer = setTimeout(() => {
            this.#host.log.info({ uid: job.uid, maxRuntime: job.maxRuntime }, 'job exceeded its maxRuntime');
            this.#kill(job, KILLED.maxRuntime(job.maxRuntime));
          }, job.maxRuntime * 1000);
          job.timer.unref();
        }
        this.#host.started(job, startTime);
        // Cancelled (or its computation closed with terminate) while it was on its way to start.
        if (job.cancelRequested) this.#stopCancelled(job);
        else if (job.comp.terminating) this.#kill(job, KILLED.closed);
      },
      onProvisional: (result) => this.#host.provisional(job, result),
      onEnd: (outcome) => this.#ended(job, outcome),
    };
    this.#slots.assign(runner, assigned, job.args);
  }

  /** A cancelled job that started: stopped politely if its cancel gave a grace period, else killed. */
  #stopCancelled(job: NodeJob): void {
    const polite = this.#host.polite;
    if (polite && job.runner) {
      polite.stop(job, job.runner, job.uid, (exception) => this.#kill(job, { exception, code: KILLED.cancel.code }));
    } else this.#kill(job, KILLED.cancel);
  }

  /** The daemon's decision to kill a started job: its runner's arbiter carries it out. */
  #kill(job: NodeJob, why: KillReason): void {
    if (job.runner) this.#slots.kill(job.runner, job.uid, why);
  }

  #ended(job: NodeJob, outcome: RunnerOutcome): void {
    const comp = job.comp;
    const host = this.#host;
    if (job.timer) clearTimeout(job.timer);
    job.timer = null;
    comp.running--;
    this.#running--;
    job.runner = null;
    if (outcome.kind === 'dropped') {
      if (job.cancelRequested) {
        host.unstarted(job, 'cancelled');
      } else if (comp.closing) {
        host.unstarted(job, 'closing');
      } else if (host.draining && !host.stopping) {
        host.unstarted(job, 'draining');
      } else {
        // Taken back, or its runner died before starting it: back to the front of the queue
        // (a stopping daemon hands it back to the client instead).
        job.rebalancing = false;
        job.state = 'queued';
        comp.queued++;
        this.#queue.unshift(job);
      }
      this.schedule();
      return;
    }
    const d = outcome.done;
    job.args = new Uint8Array(0);
    if (job.startTime) comp.avgMs = nextAvgMs(comp.avgMs, d.endTime - job.startTime);
    host.finished(job, d);
    compSettled(comp);
    this.schedule();
  }

  /**
   * The client cancels a job: not started ones leave at once, started ones are killed (or, with
   * a grace period, asked to return first).
   */
  cancel(job: NodeJob, grace?: number): void {
    if (job.cancelRequested) return;
    job.cancelRequested = true;
    this.#host.polite?.ask(job, grace);
    if (job.state === 'queued') {
      const i = this.#queue.indexOf(job);
      if (i >= 0) this.#queue.splice(i, 1);
      job.comp.queued--;
      this.#host.unstarted(job, 'cancelled');
    } else if (job.state === 'assigned' && job.runner) this.#slots.drop(job.runner, job.uid);
    else this.#stopCancelled(job);
  }

  /**
   * A computation closes: its jobs waiting here leave (handed back to the client); those handed
   * to runners are dropped if not started, and killed if `terminate`, else waited for.
   */
  close(comp: Comp, jobs: Iterable<NodeJob>, terminate: boolean): void {
    for (const job of [...this.#queue]) {
      if (job.comp !== comp) continue;
      this.#queue.splice(this.#queue.indexOf(job), 1);
      comp.queued--;
      this.#host.unstarted(job, 'closing');
    }
    for (const job of [...jobs]) {
      if (job.comp !== comp || !job.runner) continue;
      if (job.state === 'running') {
        if (terminate) this.#kill(job, KILLED.closed);
      } else this.#slots.drop(job.runner, job.uid);
    }
  }

  /** Takes every job waiting here out of the queue (the caller returns them to their client). */
  takeQueued(): NodeJob[] {
    const jobs = this.#queue.splice(0);
    for (const job of jobs) job.comp.queued--;
    return jobs;
  }

  /** Shutdown: every runner holding a job is killed whole (its running job ends Terminated). */
  terminateAll(why: KillReason): void {
    for (const r of this.#slots.runners) if (r.jobs.size) this.#slots.terminate(r, why);
  }
}
