/**
 * Module computations on the client: `{ module: './work.ts', export: 'compute' }` is bundled
 * with its npm imports by esbuild (TypeScript included) into one ES module, shipped as text and
 * imported by job runners (src/node/module-loader.ts). Node built-ins stay external; native
 * addons cannot travel in a bundle and are refused.
 */
import { statSync } from 'node:fs';
import { basename, extname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Message, Plugin } from 'esbuild';
import { DispyError, invalidOption } from '../errors.js';
import type { Computation } from '../protocol/messages.js';
import type { ModuleComputation, ShippedComputation } from './computation.js';

/**
 * Prepended to the bundle: CommonJS dependencies call `require` (Node built-ins, dynamic
 * requires) and read `__filename`/`__dirname`; in an ES module none of them exists. The two
 * paths are reached through esbuild's `define`, which only replaces unbound uses, so a module
 * declaring its own `__dirname` keeps it.
 */
const BANNER = [
  `import { createRequire as __dispytsCreateRequire } from 'node:module';`,
  `import { fileURLToPath as __dispytsFileURLToPath } from 'node:url';`,
  `import { dirname as __dispytsDirname } from 'node:path';`,
  `const require = __dispytsCreateRequire(import.meta.url);`,
  `const __dispyts_filename = __dispytsFileURLToPath(import.meta.url);`,
  `const __dispyts_dirname = __dispytsDirname(__dispyts_filename);`,
].join('\n');

/** Largest bundle shipped: the setup message carrying it must fit a frame (64 MiB by default). */
const MAX_BUNDLE_BYTES = 60 * 1024 * 1024;

/** Packages that find and load a compiled addon at run time (from paths a bundle does not have). */
const ADDON_LOADERS = /^(bindings|node-gyp-build|node-gyp-build-optional-packages|node-pre-gyp|@mapbox\/node-pre-gyp)$/;

/** The npm package a file belongs to (`@scope/name` or `name`), if it is under node_modules. */
function packageOf(file: string): string | null {
  const parts = file.split(sep);
  const i = parts.lastIndexOf('node_modules');
  if (i < 0 || i + 1 >= parts.length) return null;
  const first = parts[i + 1]!;
  return first.startsWith('@') && i + 2 < parts.length ? `${first}/${parts[i + 2]}` : first;
}

function shown(file: string): string {
  if (!file) return '(entry)';
  const r = relative(process.cwd(), file);
  return r && !r.startsWith('..') ? r : file;
}

/**
 * Refuses native addons: a `.node` file fails the bundle; a package loading its addon through
 * `bindings`/`node-gyp-build` gets a stand-in that throws DISPY_ERR_COMPUTATION naming the
 * package when required, so an optional accelerator (required inside try/catch, as msgpackr
 * does with msgpackr-extract) falls back to its JavaScript code while a required one fails the
 * computation's load on the node.
 */
const nativeAddonGuard: Plugin = {
  name: 'dispyts-native-addons',
  setup(build) {
    build.onResolve({ filter: /\.node$/ }, async (args) => {
      if ((args.pluginData as { dispytsProbe?: boolean } | undefined)?.dispytsProbe) return undefined;
      let file = args.path;
      if (!/^(\.{1,2}\/|\/)/.test(args.path)) {
        // A bare specifier such as `pkg.node` may be a package rather than an addon file.
        const r = await build.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: { dispytsProbe: true },
        });
        if (r.errors.length === 0 && !r.path.endsWith('.node'))
          return { path: r.path, external: r.external, namespace: r.namespace, sideEffects: r.sideEffects };
        if (r.errors.length === 0) file = r.path;
      } else {
        file = resolve(args.resolveDir, args.path);
      }
      const pkg = packageOf(file) ?? packageOf(args.importer);
      return {
        errors: [
          {
            text: `native addon \`${shown(file)}\`${pkg ? ` (package \`${pkg}\`)` : ''} imported by \`${shown(args.importer)}\` cannot be shipped in a module computation: a bundle carries JavaScript only. Install the package on the nodes and load it with createRequire in a function computation, or use a pure-JavaScript alternative.`,
          },
        ],
      };
    });
    build.onResolve({ filter: ADDON_LOADERS }, (args) => ({
      path: args.path,
      namespace: 'dispyts-native-addon',
      pluginData: { loader: args.path, pkg: packageOf(args.importer) ?? shown(args.importer) },
    }));
    build.onLoad({ filter: /.*/, namespace: 'dispyts-native-addon' }, (args) => {
      const { loader, pkg } = args.pluginData as { loader: string; pkg: string };
      const message = `the native addon of \`${pkg}\` (loaded through \`${loader}\`) cannot be shipped in a module computation: a bundle carries JavaScript only`;
      return {
        loader: 'js',
        contents: `var e = new Error(${JSON.stringify(message)}); e.name = 'DispyError'; e.code = 'DISPY_ERR_COMPUTATION'; throw e;`,
      };
    });
  },
};

function formatMessages(errors: Message[]): string {
  const lines = errors.slice(0, 10).map((m) => {
    const where = m.location ? `${shown(resolve(process.cwd(), m.location.file))}:${m.location.line}:${m.location.column}: ` : '';
    return `${where}${m.text}`;
  });
  if (errors.length > 10) lines.push(`… and ${errors.length - 10} more`);
  return lines.join('\n');
}

/** Bundles `entry` (an absolute path) into one ES module's text. */
export async function bundleModule(entry: string): Promise<string> {
  const esbuild = await import('esbuild');
  let result: Awaited<ReturnType<typeof esbuild.build>>;
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      absWorkingDir: process.cwd(),
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      keepNames: true,
      logLevel: 'silent',
      banner: { js: BANNER },
      // A map without the sources' text: remote stack traces name the client's files and lines.
      sourcemap: 'external',
      sourcesContent: false,
      sourceRoot: `${pathToFileURL(process.cwd()).href}/`,
      outfile: join(process.cwd(), 'dispyts-module.mjs'),
      define: { __filename: '__dispyts_filename', __dirname: '__dispyts_dirname' },
      plugins: [nativeAddonGuard],
    });
  } catch (err) {
    const errors = (err as { errors?: Message[] }).errors;
    const detail = errors?.length ? formatMessages(errors) : (err as Error).message;
    throw new DispyError('DISPY_ERR_COMPUTATION', `cannot bundle module \`${shown(entry)}\`:\n${detail}`, { cause: err });
  }
  const out = result.outputFiles?.find((f) => f.path.endsWith('.mjs'));
  if (!out) throw new DispyError('DISPY_ERR_COMPUTATION', `cannot bundle module \`${shown(entry)}\`: esbuild produced no output`);
  if (out.contents.byteLength > MAX_BUNDLE_BYTES) {
    throw new DispyError(
      'DISPY_ERR_COMPUTATION',
      `the bundle of module \`${shown(entry)}\` is ${(out.contents.byteLength / 2 ** 20).toFixed(1)} MiB, more than the ${MAX_BUNDLE_BYTES / 2 ** 20} MiB a setup message may carry`,
    );
  }
  // The map goes inline when it fits (the runners read it: stack frames in the user's files).
  const map = result.outputFiles?.find((f) => f.path.endsWith('.map'));
  const code = out.text.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
  if (!map) return code;
  const inline = `//# sourceMappingURL=data:application/json;base64,${Buffer.from(map.contents).toString('base64')}\n`;
  return Buffer.byteLength(code) + inline.length <= MAX_BUNDLE_BYTES ? code + inline : code;
}

/** Absolute path of the module: relative paths against process.cwd(); `file:` URLs accepted. */
function modulePath(spec: string): string {
  return spec.startsWith('file:') ? fileURLToPath(spec) : resolve(process.cwd(), spec);
}

/**
 * What a JobCluster ships for `{ module, export }`. The path and the export name are checked
 * here (a missing file throws at construction); the bundle is built asynchronously and its
 * failures (unresolved imports, syntax errors, native addons) reject `wire`, which the cluster
 * reports as DISPY_ERR_COMPUTATION error events.
 */
export function buildModuleComputation(computation: ModuleComputation, options: { depends?: unknown[] }): ShippedComputation {
  const spec = computation.module;
  if (spec.trim() === '') throw invalidOption('module', 'a path to a module', spec);
  const exportName = computation.export ?? 'default';
  if (typeof exportName !== 'string' || exportName === '') throw invalidOption('export', 'the name of an exported function', exportName);
  const entry = modulePath(spec);
  let isFile = false;
  try {
    isFile = statSync(entry).isFile();
  } catch (err) {
    throw new DispyError(
      'DISPY_ERR_COMPUTATION',
      `module computation: cannot read \`${spec}\` (${entry}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (!isFile) throw new DispyError('DISPY_ERR_COMPUTATION', `module computation: \`${spec}\` (${entry}) is not a file`);

  // Classes in depends give the client's codec their names (instances in arguments and
  // results); on nodes the module's exported classes of those names rebuild them.
  const classes: ShippedComputation['classes'] = [];
  for (const [i, d] of (options.depends ?? []).entries()) {
    const isClass = typeof d === 'function' && /^class\b/.test(Function.prototype.toString.call(d).trim());
    if (!isClass) {
      throw new DispyError(
        'DISPY_ERR_INVALID_OPTION',
        `depends[${i}]: a module computation takes classes (exported by the module, for their instances in arguments and results) and file paths in depends; the module's own imports are bundled with it`,
      );
    }
    classes.push([d.name, d as abstract new (...args: never[]) => object]);
  }

  const name = (exportName !== 'default' ? exportName : basename(entry, extname(entry))).slice(0, 256);
  const wire: Promise<Computation> = bundleModule(entry).then((code) => ({ kind: 'module', name, code, exportName }));
  return { name, wire, classes, files: [] };
}
