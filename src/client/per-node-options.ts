/**
 * The client's side of per-node setup (`nodeSetup`) and polite cancels (`cancelGrace`,
 * `cancel(job, { grace })`), shared by JobCluster and SharedJobCluster: option checks, the
 * source shipped for `nodeSetup`, and the grace each cancelled job asked for (kept so that a
 * cancel sent again after a reconnection is still polite).
 */
import { invalidOption } from '../errors.js';
import { functionSource, isShippable } from './computation.js';

/** Longest grace period of a polite cancel, in seconds (the wire's bound). */
export const MAX_CANCEL_GRACE = 86_400;

export interface PerNodeOptions {
  nodeSetup?: ((...args: never[]) => unknown) | undefined;
  cancelGrace?: number | undefined;
}

/** What `cancel(job, options)` takes. */
export interface CancelOptions {
  /**
   * Seconds a running job gets to return after its `dispyAbortSignal` fired (a program job:
   * after SIGINT to its process group): returning in time, it ends Finished with that value;
   * after the grace it is killed as with 0 (Terminated).
   * @default the cluster's cancelGrace (0: killed at once)
   * @example { grace: 5 }
   */
  grace?: number;
}

function checkGrace(name: string, v: unknown): void {
  if (v !== undefined && !(typeof v === 'number' && v >= 0 && v <= MAX_CANCEL_GRACE))
    throw invalidOption(name, `a number of seconds from 0 to ${MAX_CANCEL_GRACE}`, v);
}

/** Checks `nodeSetup` and `cancelGrace` (nodeSetup must ship as source, checked now). */
export function validatePerNodeOptions(o: PerNodeOptions): void {
  if (o.nodeSetup !== undefined) {
    if (!isShippable(o.nodeSetup)) throw invalidOption('nodeSetup', 'a function', o.nodeSetup);
    functionSource(o.nodeSetup, 'nodeSetup');
  }
  checkGrace('cancelGrace', o.cancelGrace);
}

/** The source of `nodeSetup` shipped with the computation, or null. */
export function nodeSetupSource(o: PerNodeOptions): string | null {
  return o.nodeSetup ? functionSource(o.nodeSetup, 'nodeSetup') : null;
}

/** The grace each cancelled job asked for, by job. */
const graces = new WeakMap<object, number>();

/** The grace of a cancel of `job` (its options, else the cluster's default), remembered for it. */
export function cancelGrace(job: object, options: CancelOptions | undefined, clusterDefault: number | undefined): number {
  checkGrace('grace', options?.grace);
  const grace = options?.grace ?? clusterDefault ?? 0;
  if (grace > 0) graces.set(job, grace);
  return grace;
}

/** The grace `job`'s cancel asked for (0: none). */
export function graceOf(job: object): number {
  return graces.get(job) ?? 0;
}

/** The cancel message for a job (with its grace only when it has one: older peers take it). */
export function cancelMessage(uid: number, grace: number): { t: 'cancel'; uid: number; grace?: number } {
  return grace > 0 ? { t: 'cancel', uid, grace } : { t: 'cancel', uid };
}
