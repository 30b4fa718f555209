/**
 * Loads a module computation inside a job runner: the bundle the client built
 * (src/client/module-bundle.ts) is written into the computation's directory and imported; the
 * named export is what jobs call. Never used by the daemon itself.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DispyError } from '../errors.js';
import type { Computation } from '../protocol/messages.js';
import { formatException, type LoadContext, type LoadedComputation } from './function-loader.js';

/** A DispyError reported as its message alone (the runner's own frames say nothing to the user). */
function loadError(message: string): DispyError {
  const err = new DispyError('DISPY_ERR_COMPUTATION', message);
  err.stack = `${err.name}: ${err.message}`;
  return err;
}

function isClass(v: unknown): v is abstract new (...args: never[]) => object {
  return typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v).trim());
}

export async function loadModuleComputation(c: Extract<Computation, { kind: 'module' }>, ctx: LoadContext): Promise<LoadedComputation> {
  // Named by content: the runners of a node load the same computation at once and may share a
  // directory with other computations (destPath).
  const hash = createHash('sha256').update(c.code).digest('hex').slice(0, 16);
  const file = join(ctx.dir, `dispyts-module-${hash}.mjs`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, c.code);
    await rename(tmp, file);
  }
  // The bundle carries a source map: its stack frames name the client's files and lines. Enabled
  // for module computations only, since it makes every later compile in the runner look for one.
  process.setSourceMapsEnabled(true);
  let ns: Record<string, unknown>;
  try {
    ns = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (err) {
    // The user's frames (in the bundle) are kept; Node's loader and the runner's are not.
    const text = formatException(err)
      .split('\n')
      .filter((l) => !/^\s+at .*(node:internal\/|\/(module-loader|computation-loader|runner-main)\.[jt]s)/.test(l))
      .join('\n');
    throw loadError(`module computation: importing the bundled module failed: ${text}`);
  }
  const fn = ns[c.exportName];
  if (!Object.hasOwn(ns, c.exportName)) {
    const names = Object.keys(ns);
    throw loadError(
      `module computation: the module has no export \`${c.exportName}\` (its exports: ${names.length ? names.map((n) => `\`${n}\``).join(', ') : 'none'})`,
    );
  }
  if (typeof fn !== 'function') {
    throw loadError(`module computation: export \`${c.exportName}\` is ${fn === null ? 'null' : `a ${typeof fn}`}, not a function`);
  }
  // Exported classes rebuild instances the client encodes with the same class name (depends).
  const classes: LoadedComputation['classes'] = new Map();
  for (const [key, value] of Object.entries(ns)) if (isClass(value)) classes.set(value.name || key, value);
  return { fn: fn as (...args: unknown[]) => unknown, classes };
}
