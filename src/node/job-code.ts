/**
 * The daemon's side of a job's own functions and classes (`depends` of a job message): kept with
 * the job's argument bytes, the object that travels unchanged from the job message to the
 * runner the job is handed to, and sent there with the job. The daemon never evaluates them.
 */
import type { Depend } from '../protocol/messages.js';

const code = new WeakMap<Uint8Array, Depend[]>();

/** Keeps a job's depends with its argument bytes (nothing for a job without them). */
export function keepJobCode(args: Uint8Array, depends: Depend[] | undefined): void {
  if (depends?.length) code.set(args, depends);
}

/** The job's own depends, if it has any (a RunnerJob carries them beside its arguments). */
export function jobCode(args: Uint8Array): Depend[] | undefined {
  return code.get(args);
}
