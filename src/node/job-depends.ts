/**
 * Code and values a function computation gets besides its own `depends`, inside a job runner:
 * the cluster's `globals` (msgpack values, `const`s in the computation's scope, decoded once its
 * classes exist), and the functions and classes one job brings (`submitWith({ depends })`,
 * dispy's `dispy_job_depends`): for that job, the computation is compiled again with them in its
 * scope next to the cluster's depends and globals, so they are gone for the next job.
 */
import type { Computation, Depend } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';

type FunctionComputation = Extract<Computation, { kind: 'function' }>;
type AnyClass = abstract new (...args: never[]) => object;

/** Name of the factory parameter that decodes the globals. */
const GLOBALS_PARAM = '__dispyGlobals';

/**
 * What declares the cluster's globals in the computation's scope: `decl` (placed after the
 * depends), the factory parameter it calls, and that parameter's value.
 */
export function globalsScope(
  c: FunctionComputation,
  classNames: readonly string[],
): { decl: string; param: string; decode: (classes: Record<string, unknown>) => unknown[] } {
  const g = c.globals;
  if (!g || g.names.length === 0) return { decl: '', param: GLOBALS_PARAM, decode: () => [] };
  return {
    decl: `const [${g.names.join(', ')}] = ${GLOBALS_PARAM}({ ${classNames.join(', ')} });`,
    param: GLOBALS_PARAM,
    decode: (classes) => {
      const codec = new PayloadCodec(Object.entries(classes).filter((e): e is [string, AnyClass] => typeof e[1] === 'function'));
      const values = codec.decode(Buffer.from(g.values, 'base64'));
      if (!Array.isArray(values) || values.length !== g.names.length)
        throw new TypeError(`globals: expected ${g.names.length} values for ${g.names.join(', ')}`);
      return values;
    },
  };
}

type Factory = (...args: unknown[]) => unknown;

/**
 * Builds a job's own computation function: the computation's source compiled again with the
 * job's depends declared before it and the cluster's depends and globals (`scope`, the values
 * the computation was loaded with, so class identities hold) as parameters. A job's depend of
 * the same name as one of the cluster's takes its place for that job.
 */
export function jobFunctionBuilder(
  c: FunctionComputation,
  scope: Record<string, unknown>,
  /** The runner's prelude (esbuild's helpers), as the computation has it. */
  prelude: string,
  invoke: (call: (require: NodeRequire, provisional: (v: unknown) => void) => unknown) => unknown,
): (depends: readonly Depend[]) => (...args: unknown[]) => unknown {
  return (depends) => {
    const own = new Set(depends.map((d) => d.name));
    const names = Object.keys(scope).filter((n) => !own.has(n));
    const decls = depends.map((d) => `const ${d.name} = (${d.source});`).join('\n');
    // biome-ignore lint/nursery/noImpliedEval: a job's shipped code is evaluated in the runner, as the computation is
    const factory = new Function('require', 'dispyProvisionalResult', ...names, `${prelude}\n${decls}\nreturn (${c.source});`) as Factory;
    const fn = invoke((req, provisional) => factory(req, provisional, ...names.map((n) => scope[n])));
    if (typeof fn !== 'function') throw new TypeError(`computation ${c.name} is not a function`);
    return fn as (...args: unknown[]) => unknown;
  };
}
