/**
 * Loads a computation of any kind inside a job runner: every kind becomes a function the runner
 * calls with each job's arguments (a program's function spawns it and resolves to its exit code).
 */
import type { Computation } from '../protocol/messages.js';
import { loadModuleComputation } from './module-loader.js';
import { loadProgramComputation } from './program-loader.js';
import { loadFunctionComputation, loadHooks, type HookSources, type LoadContext, type LoadedComputation } from './function-loader.js';

export async function loadComputation(
  c: Computation,
  ctx: LoadContext,
  hooks: HookSources = { setup: null, cleanup: null },
): Promise<LoadedComputation> {
  if (c.kind === 'function') return loadFunctionComputation(c, ctx, hooks);
  const loaded = await loadOther(c, ctx);
  return { ...loaded, ...loadHooks(hooks, ctx) };
}

async function loadOther(c: Exclude<Computation, { kind: 'function' }>, ctx: LoadContext): Promise<LoadedComputation> {
  switch (c.kind) {
    case 'module':
      return loadModuleComputation(c, ctx);
    case 'program':
      return loadProgramComputation(c, ctx);
  }
}
