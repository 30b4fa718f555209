/**
 * A job's own functions and classes (`submitWith({ depends: [fn] })`, dispy's
 * `dispy_job_depends`): shipped as source with the job, and put by the runner in the scope of
 * that job alone (src/node/job-depends.ts). The cluster's `globals` are in globals.ts.
 */
import { DispyError, invalidOption } from '../errors.js';
import type { Computation, Depend } from '../protocol/messages.js';
import { buildFunctionComputation, isShippable } from './computation.js';
import { isInterpretedForm } from './interpreter.js';

/** A job's `depends` split into files (paths) and code (functions and classes, as source). */
export function splitJobDepends(depends: readonly unknown[], kind: Computation['kind'] | null): { files: string[]; code: Depend[] } {
  const files: string[] = [];
  const shippable: unknown[] = [];
  for (const [i, d] of depends.entries()) {
    if (typeof d === 'string') files.push(d);
    else if (isShippable(d)) {
      // Functions go into a function computation's scope; nothing else has one.
      if (kind !== null && kind !== 'function')
        throw new DispyError(
          'DISPY_ERR_INVALID_OPTION',
          `depends[${i}]: a ${kind} computation takes only file paths in a job's depends (functions and classes need a function computation)`,
        );
      shippable.push(d);
    } else throw invalidOption(`depends[${i}]`, 'a file path, a function or a class', d);
  }
  if (shippable.length === 0) return { files, code: [] };
  // Built as a computation's depends are (named, syntax-checked, methods made functions).
  const built = buildFunctionComputation(function job() {}, shippable);
  const code = built.wire.kind === 'function' ? built.wire.depends : [];
  return { files, code };
}

/** The kind of computation a cluster was given (null: not one it takes; its constructor says so). */
export function computationKind(c: unknown): Computation['kind'] | null {
  if (isShippable(c)) return 'function';
  if (typeof c === 'string' || isInterpretedForm(c)) return 'program';
  if (c !== null && typeof c === 'object' && typeof (c as { module?: unknown }).module === 'string') return 'module';
  return null;
}
