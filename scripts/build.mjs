// Emits dist/ from src/: every TypeScript file transpiled one-to-one by esbuild (ESM, Node 20),
// so `dist/` mirrors `src/` and the runner entry can be forked without a TypeScript loader.
// Declarations come from `tsc -p tsconfig.build.json` (`npm run build`).
import { build } from 'esbuild';
import { readdirSync, statSync, rmSync, mkdirSync, chmodSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const srcDir = join(root, 'src');
const outDir = join(root, 'dist');

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (relative(srcDir, p) === 'ui') continue;
      out.push(...walk(p));
    } else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

mkdirSync(outDir, { recursive: true });
const entryPoints = walk(srcDir);
await build({
  entryPoints,
  outdir: outDir,
  outbase: srcDir,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  bundle: false,
  keepNames: true,
  logLevel: 'warning',
});
chmodSync(join(outDir, 'cli', 'main.js'), 0o755);

// Files are overwritten in place (a daemon started meanwhile never sees a half-empty dist/);
// then emitted files whose source is gone are removed.
const wanted = new Set(entryPoints.map((p) => join(outDir, relative(srcDir, p)).replace(/\.ts$/, '.js')));
function prune(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (relative(outDir, p) !== 'ui') prune(p);
    } else if (name.endsWith('.js') && !wanted.has(p)) rmSync(p);
  }
}
prune(outDir);

// The browser pages: src/ui/ bundled into dist/ui/ (the HTTP server's default documentRoot).
const { buildUi } = await import('./build-ui.mjs');
await buildUi({ srcDir: join(srcDir, 'ui'), outDir: join(outDir, 'ui') });
