/**
 * Turns the user's function and its `depends` into the text shipped to nodes. Nothing is
 * evaluated here; the runner rebuilds the code on the node.
 */
import { DispyError, invalidOption } from '../errors.js';
import type { Computation, Depend } from '../protocol/messages.js';
import { dependFiles, localFile } from './file-transfer.js';
import { isInterpretedForm, resolveScript } from './interpreter.js';
import { withGlobals } from './globals.js';
import { buildModuleComputation } from './module-bundle.js';

/** Whether `src` parses as an expression (compiled, never run). */
function parsesAsExpression(src: string): boolean {
  try {
    // biome-ignore lint/nursery/noImpliedEval: compiled to check the syntax, never called
    new Function(`return (${src}\n);`);
    return true;
  } catch {
    return false;
  }
}

/** A function or a class: what travels to the nodes as source text. */
export type Shippable = ((...args: never[]) => unknown) | (abstract new (...args: never[]) => unknown);

/** Narrows a value to a function or class (what `typeof v === 'function'` tells, typed). */
export function isShippable(v: unknown): v is Shippable {
  return typeof v === 'function';
}

/** The sources of a cluster's `setup` and `cleanup` functions (null when not given). */
export function hookSources(options: { setup?: Shippable | undefined; cleanup?: Shippable | boolean | undefined }): {
  setup: string | null;
  cleanup: string | null;
} {
  return {
    setup: options.setup ? functionSource(options.setup, 'setup') : null,
    cleanup: typeof options.cleanup === 'function' ? functionSource(options.cleanup, 'cleanup') : null,
  };
}

/**
 * Source text of a function, made into an expression: method shorthand (`m(x) {}`,
 * `async m() {}`, `*gen() {}`) gets a `function` keyword. The text is only compiled here as a
 * syntax check; it runs on nodes alone.
 */
export function functionSource(fn: Shippable, what: string): string {
  const src = Function.prototype.toString.call(fn).trim();
  if (/\{\s*\[native code\]\s*\}$/.test(src)) {
    throw new DispyError('DISPY_ERR_COMPUTATION', `${what} \`${fn.name || 'anonymous'}\` is native or bound; ship a plain function`);
  }
  if (/^(get|set)\s/.test(src) && !parsesAsExpression(src)) {
    throw new DispyError('DISPY_ERR_COMPUTATION', `${what} \`${fn.name}\` is an accessor; ship a plain function`);
  }
  const candidates = [src];
  if (/^async\s*\*/.test(src)) candidates.push(src.replace(/^async\s*\*/, 'async function*'));
  else if (/^async\s/.test(src)) candidates.push(src.replace(/^async\s+/, 'async function '));
  else if (/^\*/.test(src)) candidates.push(`function${src}`);
  else candidates.push(`function ${src}`);
  for (const c of candidates) if (parsesAsExpression(c)) return c;
  throw new DispyError(
    'DISPY_ERR_COMPUTATION',
    `${what} \`${fn.name || 'anonymous'}\` cannot be shipped as source (computed or quoted method names are not supported; use a plain function)`,
  );
}

function isClass(fn: Shippable): boolean {
  return /^class\b/.test(Function.prototype.toString.call(fn).trim());
}

export interface BuiltComputation {
  wire: Computation;
  /** Classes listed in depends, for the payload codec. */
  classes: [string, abstract new (...args: never[]) => object][];
}

/** `{ module: './work.ts', export: 'compute' }`: a module computation. */
export interface ModuleComputation {
  /**
   * Path of the module (TypeScript or JavaScript), relative to the current working directory,
   * or a `file:` URL; its imports (npm packages included) are bundled with it by esbuild.
   * @example module: new URL('./work.ts', import.meta.url).href
   */
  module: string;
  /**
   * The export to call for each job.
   * @default 'default'
   * @example export: 'compute'
   */
  export?: string;
}

export interface ShippedComputation {
  name: string;
  /** The wire form; a module computation resolves once bundled. */
  wire: Promise<Computation>;
  classes: BuiltComputation['classes'];
  /** Local files to send to every node before setup. */
  files: string[];
}

/** Builds what a JobCluster ships for any kind of computation. */
export function buildComputation(
  computation: unknown,
  options: { depends?: unknown[]; maxFileSize?: number; globals?: Record<string, unknown> | undefined },
): ShippedComputation {
  // File paths in depends are sent to nodes as files (checked now), whatever the computation.
  const all = options.depends ?? [];
  if (all.some((d) => typeof d === 'string')) {
    const shipped = buildComputation(computation, { ...options, depends: all.filter((d) => typeof d !== 'string') });
    const taken = shipped.files.map((f) => localFile(f, 'computation'));
    const files = dependFiles(all, 'depends', options.maxFileSize ?? 0, taken);
    return { ...shipped, files: [...shipped.files, ...files.map((f) => f.path)] };
  }
  if (isShippable(computation)) {
    const built = buildFunctionComputation(computation, options.depends ?? []);
    // The cluster's globals: values, consts in the computation's scope (globals.ts).
    if (options.globals !== undefined) built.wire = withGlobals(built.wire, built.classes, options.globals);
    return { name: computation.name || 'compute', wire: Promise.resolve(built.wire), classes: built.classes, files: [] };
  }
  if (options.globals !== undefined)
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      '`globals` are for function computations; a module computation imports or computes its values, a program gets arguments',
    );
  if (typeof computation === 'string' || isInterpretedForm(computation)) {
    const i = all.findIndex((d) => typeof d !== 'string');
    if (i >= 0) throw new DispyError('DISPY_ERR_INVALID_OPTION', `depends[${i}]: a program computation takes only file paths in depends`);
    // A script may come with its interpreter (interpreter.ts).
    const script = resolveScript(computation);
    const program = localFile(script.path, 'program', options.maxFileSize ?? 0);
    const interpreter = script.interpreter ? { interpreter: script.interpreter } : {};
    return {
      name: program.name,
      wire: Promise.resolve({ kind: 'program', name: program.name, file: program.name, ...interpreter }),
      classes: [],
      files: [program.path],
    };
  }
  if (computation && typeof computation === 'object' && typeof (computation as ModuleComputation).module === 'string') {
    return buildModuleComputation(computation as ModuleComputation, options);
  }
  throw invalidOption('computation', 'a function, a program path or { module, export }', computation);
}

export function buildFunctionComputation(fn: Shippable, depends: unknown[]): BuiltComputation {
  const source = functionSource(fn, 'computation');
  const deps: Depend[] = [];
  const classes: BuiltComputation['classes'] = [];
  const seen = new Set<string>();
  for (const [i, d] of depends.entries()) {
    // Strings are file paths, sent as files (see buildComputation).
    if (typeof d === 'string') continue;
    if (!isShippable(d))
      throw new DispyError(
        'DISPY_ERR_INVALID_OPTION',
        `depends[${i}]: expected a function, a class or a file path, got ${typeof d}; a value goes by name in the \`globals\` option (globals: { name: value })`,
      );
    const name = d.name;
    if (!name || !/^[\p{L}_$][\p{L}\p{N}_$]*$/u.test(name))
      throw new DispyError('DISPY_ERR_INVALID_OPTION', `depends[${i}]: functions and classes in depends need a name`);
    if (seen.has(name)) continue;
    seen.add(name);
    if (isClass(d)) {
      deps.push({ kind: 'class', name, source: Function.prototype.toString.call(d) });
      classes.push([name, d as abstract new (...args: never[]) => object]);
    } else {
      deps.push({ kind: 'function', name, source: functionSource(d, `depends[${i}]`) });
    }
  }
  return { wire: { kind: 'function', name: fn.name || 'compute', source, depends: deps }, classes };
}
