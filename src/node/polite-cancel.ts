/**
 * Polite cancels, the daemon's side. A client may cancel a running job with a grace period:
 * the daemon asks the job's runner to fire the job's abort signal (for a program job, SIGINT
 * to its process group) and, if the job has not ended when the grace is over, kills it as a
 * plain cancel does, through the runner's kill arbiter (runner-arbiter.ts). Both steps name
 * the job and the runner decides, so a job that returned in time ends Finished with what it
 * returned and the job after it in that runner is never touched.
 */
import { ExtCommand, type ExtToRunner } from './runner-extensions.js';
import type { Runner } from './runner-pool.js';
import { Errors } from '../errors.js';

export class PoliteCancels {
  /** Grace (s) asked for each job whose cancel came with one, until it is stopped. */
  readonly #grace = new WeakMap<object, number>();
  /** Remembers a cancel's grace period for `job` (0: none, kill at once). */
  ask(job: object, grace: number | undefined): void {
    if (grace && grace > 0) this.#grace.set(job, grace);
  }

  /**
   * Stops job `uid` (started, in `runner`) as its cancel asked: politely and then `kill()`
   * after the grace, or `kill()` at once.
   */
  stop(job: object, runner: Runner, uid: number, kill: (exception: string) => void): void {
    const grace = this.#grace.get(job);
    if (!grace) {
      kill(Errors.jobCancelledByClient());
      return;
    }
    this.#grace.delete(job);
    if (!runner.exited && runner.child.connected) {
      runner.child.send({
        cmd: ExtCommand.Abort,
        uid,
        reason: `job cancelled by its client: it has ${grace} s to return`,
      } satisfies ExtToRunner);
    }
    const t = setTimeout(() => {
      // Nothing if it ended meanwhile: the pool knows the job no more.
      if (runner.jobs.has(uid)) kill(Errors.jobCancelledByClient(` (it did not return within its grace of ${grace} s)`));
    }, grace * 1000);
    t.unref();
    void runner.gone.then(() => clearTimeout(t));
  }
}
