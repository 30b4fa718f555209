/**
 * Turns a shipped function computation (its source text and its `depends`) back into callable
 * code inside a job runner. Never used by the daemon itself.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { inspect, types } from 'node:util';
import type { Computation, Depend } from '../protocol/messages.js';
import { globalsScope, jobFunctionBuilder } from './job-depends.js';

/**
 * Helpers esbuild (and so tsx) may reference from emitted code: `__name` under keepNames,
 * `__publicField` for class fields, and the rest of its small runtime.
 */
const PRELUDE = `
var __defProp = Object.defineProperty;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __name = (target, value) => __defProp(target, "name", { value, configurable: true });
var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);
var __export = (target, all) => { for (var name in all) __defProp(target, name, { get: all[name], enumerable: true }); };
var __accessCheck = (obj, member, msg) => member.has(obj) || __typeError("Cannot " + msg);
var __typeError = (msg) => { throw TypeError(msg); };
var __privateGet = (obj, member, getter) => (__accessCheck(obj, member, "read from private field"), getter ? getter.call(obj) : member.get(obj));
var __privateAdd = (obj, member, value) => member.has(obj) ? __typeError("Cannot add the same private member more than once") : member instanceof WeakSet ? member.add(obj) : member.set(obj, value);
var __privateSet = (obj, member, value, setter) => (__accessCheck(obj, member, "write to private field"), setter ? setter.call(obj, value) : member.set(obj, value), value);
`;

export interface LoadedComputation {
  fn: (...args: unknown[]) => unknown;
  classes: Map<string, abstract new (...args: never[]) => object>;
  /** The cluster's `setup`, run once in this runner before its first job. */
  setup?: ((...args: unknown[]) => unknown) | undefined;
  /** The cluster's `cleanup`, run in this runner when the computation closes (with setup's arguments). */
  cleanup?: ((...args: unknown[]) => unknown) | undefined;
  /** The computation rebuilt with a job's own depends in its scope (job-depends.ts); function computations only. */
  withDepends?: ((depends: readonly Depend[]) => (...args: unknown[]) => unknown) | undefined;
}

/** Sources of the cluster's setup and cleanup functions. */
export interface HookSources {
  setup: string | null;
  cleanup: string | null;
}

export interface LoadContext {
  dir: string;
  /** Made available to the computation as `dispyProvisionalResult(value)`. */
  provisional: (value: unknown) => void;
}

export function loadFunctionComputation(
  c: Extract<Computation, { kind: 'function' }>,
  ctx: LoadContext,
  hooks: HookSources = { setup: null, cleanup: null },
): LoadedComputation {
  const decls = c.depends.map((d) => `const ${d.name} = (${d.source});`).join('\n');
  const classNames = c.depends.filter((d) => d.kind === 'class').map((d) => d.name);
  // The cluster's `globals`, decoded once the classes exist (job-depends.ts).
  const globals = globalsScope(c, classNames);
  const scopeNames = [...c.depends.map((d) => d.name), ...(c.globals?.names ?? [])];
  // setup and cleanup see the same depends as the computation.
  const body = `${PRELUDE}\n${decls}\n${globals.decl}\nreturn { fn: (${c.source}), classes: { ${classNames.join(', ')} }, setup: (${hooks.setup ?? 'undefined'}), cleanup: (${hooks.cleanup ?? 'undefined'}), scope: { ${scopeNames.join(', ')} } };`;
  const require = createRequire(join(ctx.dir, 'computation.js'));
  // biome-ignore lint/nursery/noImpliedEval: evaluating the shipped computation is the runner's job (never done in the daemon)
  const factory = new Function('require', 'dispyProvisionalResult', globals.param, body) as (
    req: NodeRequire,
    p: (v: unknown) => void,
    g: unknown,
  ) => { fn: unknown; classes: Record<string, unknown>; setup: unknown; cleanup: unknown; scope: Record<string, unknown> };
  const out = factory(require, ctx.provisional, globals.decode);
  if (typeof out.fn !== 'function') throw new TypeError(`computation ${c.name} is not a function`);
  const classes = new Map<string, abstract new (...args: never[]) => object>();
  for (const [name, Class] of Object.entries(out.classes)) {
    if (typeof Class === 'function') classes.set(name, Class as abstract new (...args: never[]) => object);
  }
  return {
    fn: out.fn as (...args: unknown[]) => unknown,
    classes,
    setup: typeof out.setup === 'function' ? (out.setup as (...args: unknown[]) => unknown) : undefined,
    cleanup: typeof out.cleanup === 'function' ? (out.cleanup as () => unknown) : undefined,
    withDepends: jobFunctionBuilder(c, out.scope, PRELUDE, (p) => p(require, ctx.provisional)),
  };
}

/** setup/cleanup of a module or program computation: plain functions, evaluated on their own. */
export function loadHooks(hooks: HookSources, ctx: LoadContext): Pick<LoadedComputation, 'setup' | 'cleanup'> {
  if (!hooks.setup && !hooks.cleanup) return {};
  const require = createRequire(join(ctx.dir, 'computation.js'));
  // biome-ignore lint/nursery/noImpliedEval: setup/cleanup sources are evaluated in the runner, as the computation is
  const factory = new Function(
    'require',
    'dispyProvisionalResult',
    `${PRELUDE}\nreturn { setup: (${hooks.setup ?? 'undefined'}), cleanup: (${hooks.cleanup ?? 'undefined'}) };`,
  ) as (req: NodeRequire, p: (v: unknown) => void) => { setup: unknown; cleanup: unknown };
  const out = factory(require, ctx.provisional);
  return {
    setup: typeof out.setup === 'function' ? (out.setup as (...args: unknown[]) => unknown) : undefined,
    cleanup: typeof out.cleanup === 'function' ? (out.cleanup as () => unknown) : undefined,
  };
}

/**
 * A remote stack as the user wants to read it: frames of the computation with their line and
 * column in it, without the runner's own frames below them.
 */
export function cleanStack(stack: string): string {
  const lines = stack.split('\n');
  const firstRunnerFrame = lines.findIndex(
    (l) => /^\s+at .*\/(runner-main|function-loader|job-depends)\.[jt]s/.test(l) && !/eval at/.test(l),
  );
  const kept = firstRunnerFrame > 0 ? lines.slice(0, firstRunnerFrame) : lines;
  return kept
    .map((l) =>
      l
        .replace(/\(?eval at (?:loadFunctionComputation|<anonymous>) \([^)]*\), <anonymous>(:\d+:\d+)\)?/, '(<computation>$1)')
        .replace(/ \[as fn\]/, ''),
    )
    .join('\n');
}

/**
 * The name a job's code used without it being defined on the node (a function computation's free
 * variable: `x is not defined`), or null. The one rule that makes a job's error
 * DISPY_ERR_FREE_VARIABLE.
 */
export function freeVariableOf(err: unknown): string | null {
  if (!(err instanceof ReferenceError)) return null;
  const m = /^(\S+) is not defined/.exec(err.message);
  return m ? (m[1] as string) : null;
}

/** `name: message` plus the remote stack, as DispyJob.exception carries it. */
export function formatException(err: unknown): string {
  return formatThrown(err, 0);
}

/** How deep a chain of causes is followed. */
const MAX_CAUSES = 8;

function formatThrown(err: unknown, depth: number): string {
  if (err instanceof Error || types.isNativeError(err)) {
    const e = err as Error;
    const head = `${e.name}: ${e.message}`;
    const stack = typeof e.stack === 'string' ? cleanStack(e.stack) : '';
    let text = stack.startsWith(head) ? stack : stack ? `${head}\n${stack}` : head;
    const free = freeVariableOf(e);
    if (free !== null) {
      text = `${text}\nDISPY_ERR_FREE_VARIABLE: the computation uses \`${free}\`, which was not shipped to the node; pass it in \`depends\` (or as an argument)`;
    }
    // What the error carries besides its message: its code and what caused it.
    const code = (e as { code?: unknown }).code;
    if (code !== undefined && code !== null) text += `\n  code: ${typeof code === 'string' ? code : inspect(code)}`;
    if (Object.hasOwn(e, 'cause')) {
      const cause = depth < MAX_CAUSES ? formatThrown(e.cause, depth + 1) : '...';
      text += `\n  cause: ${cause.split('\n').join('\n  ')}`;
    }
    return text;
  }
  // A throw of something that is not an Error is reported as what it was.
  if (err === null || err === undefined) return `Uncaught ${String(err)}`;
  if (typeof err === 'string') return `Uncaught string: ${err}`;
  return `Uncaught ${typeof err}: ${inspect(err, { depth: 3, breakLength: Number.POSITIVE_INFINITY, maxStringLength: 10_000 })}`;
}
