// Bundles the browser interface (src/ui/) into dist/ui/, the HTTP server's default documentRoot:
// one minified ESM script per page plus shared chunks, one stylesheet (uPlot's CSS included), and
// the pages' HTML with the hashed file names written in. No inline script: the server's CSP
// forbids it. Called by scripts/build.mjs; runnable alone (`node scripts/build-ui.mjs`).
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const PAGES = ['monitor', 'node', 'manage', 'jobs', 'events'];
/** Each page's title; every page shares the shell src/ui/pages/page.html. */
const TITLES = { monitor: 'Monitor', node: 'Node', manage: 'Manage', jobs: 'Jobs', events: 'Events' };
/** Browsers whose syntax the bundle keeps to: Safari 15.4 is the oldest that has every API the pages use. */
export const UI_TARGET = ['chrome109', 'edge109', 'firefox115', 'safari15.4'];

export async function buildUi({ srcDir, outDir, minify = true } = {}) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  srcDir ??= join(root, 'src', 'ui');
  outDir ??= join(root, 'dist', 'ui');
  if (!existsSync(join(srcDir, 'pages'))) return null;
  mkdirSync(outDir, { recursive: true });
  const entryPoints = Object.fromEntries(PAGES.map((p) => [p, join(srcDir, 'pages', `${p}.ts`)]));
  entryPoints.ui = join(srcDir, 'styles', 'ui.css');
  const result = await build({
    entryPoints,
    outdir: outDir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: UI_TARGET,
    minify,
    sourcemap: false,
    legalComments: 'none',
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    assetNames: 'asset-[hash]',
    metafile: true,
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  // Map each entry to its hashed output file.
  const outputs = new Set();
  const entryFile = {};
  for (const [file, meta] of Object.entries(result.metafile.outputs)) {
    const name = basename(file);
    outputs.add(name);
    if (meta.entryPoint) {
      const entry = Object.entries(entryPoints).find(
        ([, p]) => relative(root, p) === meta.entryPoint || p === meta.entryPoint || join(root, meta.entryPoint) === p,
      );
      if (entry) entryFile[entry[0]] = name;
    }
  }
  for (const p of PAGES) if (!entryFile[p]) throw new Error(`build-ui: no output for page ${p}`);
  if (!entryFile.ui) throw new Error('build-ui: no output for the stylesheet');
  // The HTML shells, one template: `{{title}}`, and `{{script}}` and `{{style}}` become the
  // hashed names.
  const shell = readFileSync(join(srcDir, 'pages', 'page.html'), 'utf8');
  for (const p of PAGES) {
    const html = shell.replaceAll('{{title}}', TITLES[p]).replaceAll('{{script}}', entryFile[p]).replaceAll('{{style}}', entryFile.ui);
    writeFileSync(join(outDir, `${p}.html`), html);
    outputs.add(`${p}.html`);
  }
  // Files of earlier builds are removed only now, so a server running meanwhile keeps serving.
  for (const name of readdirSync(outDir)) {
    const p = join(outDir, name);
    if (!outputs.has(name) && statSync(p).isFile()) rmSync(p);
  }
  return { outDir, files: [...outputs].sort(), entryFile };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await buildUi();
  if (r) process.stderr.write(`build-ui: ${r.files.length} files in ${r.outDir}\n`);
}
