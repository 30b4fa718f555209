/**
 * The running average of job times, written once for the three places that learn it: a
 * cluster's average job time on a node (the dispatch window sizes by it), a node's per
 * computation (short jobs queue behind a running one), and a runner's per computation.
 * An exponentially weighted moving average: each job weighs 1/5, the first job sets it.
 */

/** The running average (ms) after a job of `ms` ended; `avgMs` is Infinity until a first job ended. */
export function nextAvgMs(avgMs: number, ms: number): number {
  return avgMs === Infinity ? ms : avgMs * 0.8 + ms * 0.2;
}
