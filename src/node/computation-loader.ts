/**
 * Loads a computation of any kind inside a job runner: every kind becomes a function the runner
 * calls with each job's arguments (a program's function spawns it and resolves to its exit code).
 */
import { DispyError } from '../errors.js';
import type { Computation } from '../protocol/messages.js';
import { loadFunctionComputation, type LoadContext, type LoadedComputation } from './function-loader.js';

export async function loadComputation(c: Computation, ctx: LoadContext): Promise<LoadedComputation> {
  switch (c.kind) {
    case 'function':
      return loadFunctionComputation(c, ctx);
    case 'module':
    case 'program':
      throw new DispyError('DISPY_ERR_COMPUTATION', `${c.kind} computations are not supported by this runner yet`);
  }
}
