/**
 * Polite cancels, the runner's side: every job gets an `AbortSignal` (the global
 * `dispyAbortSignal`, set for the running job) that fires when its client cancels it with a
 * grace period. A job that returns within the grace ends Finished with what it returned; after
 * the grace the daemon kills it through the kill arbiter as usual. A program job gets SIGINT
 * instead (sent to the runner's process group, i.e. the job's, as dispy does): the runner
 * itself ignores SIGINT, so only the program and what it started see it.
 */

/**
 * The running job's controller, made on first use: most jobs never read their signal, and a
 * new AbortController per job would cost every job. Between jobs, `idle` (never fires).
 */
let controller: AbortController | null = null;
let runningUid: number | null = null;
const idle = new AbortController().signal;

function signalOfRunning(): AbortSignal | null {
  if (runningUid === null) return null;
  controller ??= new AbortController();
  return controller.signal;
}

Object.defineProperty(globalThis, 'dispyAbortSignal', {
  configurable: true,
  enumerable: false,
  get: () => signalOfRunning() ?? idle,
});

// Runners lead their process group and have no terminal: the only SIGINT they get is a polite
// stop of a program job, meant for the program.
process.on('SIGINT', () => undefined);

/** Job `uid` starts: its signal is a fresh one (made when first read). */
export function jobBegins(uid: number): void {
  controller = null;
  runningUid = uid;
}

/** The running job ended: nothing fires its signal any more. */
export function jobEnds(): void {
  controller = null;
  runningUid = null;
}

/** The running job's signal (for a program job's SIGINT), or null between jobs. */
export function currentAbortSignal(): AbortSignal | null {
  return signalOfRunning();
}

/**
 * Fires job `uid`'s signal if it is still the one running (the check and the abort happen on
 * this thread, where jobs switch, so a job that already returned is not touched and the job
 * after it is never hit).
 */
export function abortJob(uid: number, reason: string): void {
  const signal = runningUid === uid ? signalOfRunning() : null;
  if (!signal || signal.aborted) return;
  const err = new Error(reason);
  err.name = 'AbortError';
  controller!.abort(err);
}
