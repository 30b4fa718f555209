/**
 * The node's controls, set from its page (node-httpd.ts) through NodeDaemon: the CPU limit and
 * draining. With them go the ways a job leaves the node without starting (its client is told
 * why with a `nak`, or it ends Cancelled), used by draining, the scheduler and shutdown.
 */
import type { Logger } from 'pino';
import { invalidOption } from '../errors.js';
import { compSettled } from './computations.js';
import type { NodeJob, NodeScheduler, Unstarted } from './node-scheduler.js';
import type { ResultOutbox } from './result-outbox.js';
import type { ServedClient } from './served-client.js';

/** What the controls use of their daemon. */
export interface ControlsHost {
  readonly host: string;
  readonly cpus: number;
  readonly log: Logger;
  /** The client the node serves now, if any. */
  owner(): ServedClient | null;
  /** The daemon's job scheduler and result outbox, once started. */
  parts(): { scheduler: NodeScheduler; ctx: { outbox: ResultOutbox } } | null;
  /** Tells the served client the node's state at once (a pulse). */
  pulse(): void;
}

export class NodeControls {
  readonly #d: ControlsHost;
  /** Set by setDraining(true): no job starts and no new client is served until cleared. */
  #draining = false;
  /** CPUs the node runs jobs on now (setCpuLimit); null = all of `cpus`. */
  #cpuLimit: number | null = null;

  constructor(host: ControlsHost) {
    this.#d = host;
  }

  /** CPUs the node runs jobs on now (at most `cpus`). */
  get cpuLimit(): number {
    return this.#cpuLimit ?? this.#d.cpus;
  }

  /** Whether the node is draining (see setDraining). */
  get draining(): boolean {
    return this.#draining;
  }

  /** Jobs queued inside runners that have not started come back to the node's queue. */
  #reclaimWaiting(): void {
    const scheduler = this.#d.parts()!.scheduler;
    for (const comp of this.#d.owner()?.comps.values() ?? []) scheduler.reclaim(comp);
  }

  /**
   * Runs jobs on at most `cpus` of the node's CPUs (1 to `cpus`), at once: lowering it lets
   * running jobs finish and starts no more beyond it; raising it starts waiting jobs. Returns
   * the new limit.
   */
  setCpuLimit(cpus: number): number {
    const d = this.#d;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > d.cpus)
      throw invalidOption('cpus', `an integer from 1 to ${d.cpus} (this node's --cpus)`, cpus);
    const lower = cpus < this.cpuLimit;
    this.#cpuLimit = cpus === d.cpus ? null : cpus;
    d.log.info({ cpus }, 'CPU limit changed');
    const parts = d.parts();
    if (parts) {
      if (lower) this.#reclaimWaiting();
      parts.scheduler.schedule();
    }
    // The client shows the node's CPUs and sizes its window by them: it hears at once.
    d.pulse();
    return this.cpuLimit;
  }

  /**
   * Drains the node (`true`): running jobs finish, no job starts and no new client is served;
   * jobs waiting here go back to their client (which runs them elsewhere, or here once the
   * node resumes) and it sends no more until the node resumes (`false`). Returns the new state.
   */
  setDraining(on: boolean): boolean {
    const d = this.#d;
    if (on === this.#draining) return on;
    this.#draining = on;
    d.log.info({ draining: on }, on ? 'node draining: no job starts until it resumes' : 'node resumes serving jobs');
    const parts = d.parts();
    if (parts) {
      if (on) {
        // Jobs queued inside runners come back to the scheduler as dropped, and go back too.
        this.#reclaimWaiting();
        this.returnQueued('draining', this.#drainingMessage());
      } else parts.scheduler.schedule();
    }
    // Clients stop (or resume) sending jobs here at once.
    d.pulse();
    return on;
  }

  /** A job that never started leaves the node, and its client is told why. */
  unstarted(job: NodeJob, why: Unstarted): void {
    const outbox = this.#d.parts()!.ctx.outbox;
    this.#d.owner()?.jobs.delete(job.uid);
    job.end();
    if (why === 'cancelled') outbox.cancelled(job);
    else if (why === 'closing')
      outbox.send(job, {
        t: 'nak',
        uid: job.uid,
        reason: 'unknown-computation',
        message: `computation ${job.comp.id} is closing on ${this.#d.host}`,
      });
    else outbox.send(job, { t: 'nak', uid: job.uid, reason: 'draining', message: this.#drainingMessage() });
    compSettled(job.comp);
  }

  #drainingMessage(): string {
    return `node ${this.#d.host} is draining: it starts no job until it resumes`;
  }

  /** Every job waiting in the node's queue goes back to its client (a `nak` saying why). */
  returnQueued(reason: 'draining' | 'shutdown', message: string): void {
    const parts = this.#d.parts();
    if (!parts) return;
    for (const job of parts.scheduler.takeQueued()) {
      this.#d.owner()?.jobs.delete(job.uid);
      job.end();
      parts.ctx.outbox.send(job, { t: 'nak', uid: job.uid, reason, message });
      compSettled(job.comp);
    }
  }
}
