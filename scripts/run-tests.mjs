#!/usr/bin/env node
// Test runner behind `npm test`.
//
// Node 20's `--test` neither expands globs nor discovers `.ts` files, so the file list is built
// here: every `test/**/*.test.ts` (sorted; `test/helpers/` and any `fixtures/` folder skipped),
// or only the files/directories given on the command line. Arguments starting with `-` are
// passed to node before the file list (e.g. `npm test -- --test-name-pattern=codec`).
//
// The tests run in `process.execPath`, so whichever node started this script runs the tests.
//
// Environment:
//   DISPYTS_TEST_CONCURRENCY   test files run in parallel (default 4)
//   DISPYTS_TEST_TIMEOUT_MS    per-test timeout in ms (default 180000)
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants as osConstants } from 'node:os';

const root = fileURLToPath(new URL('..', import.meta.url));
const testDir = join(root, 'test');
const helpersDir = join(testDir, 'helpers');

function fail(message, code = 2) {
  process.stderr.write(`run-tests: ${message}\n`);
  process.exit(code);
}

function positiveInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) fail(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

function isTestFile(name) {
  return name.endsWith('.test.ts');
}

function collect(dir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === 'fixtures' || entry.name === 'node_modules' || p === helpersDir) continue;
      collect(p, out);
    } else if (entry.isFile() && isTestFile(entry.name)) {
      out.push(p);
    }
  }
  return out;
}

const nodeFlags = [];
const paths = [];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith('-')) nodeFlags.push(arg);
  else paths.push(arg);
}

let files = [];
if (paths.length === 0) {
  if (existsSync(testDir)) collect(testDir, files);
} else {
  for (const arg of paths) {
    const p = resolve(process.cwd(), arg);
    if (!existsSync(p)) fail(`no such file or directory: ${arg}`);
    if (statSync(p).isDirectory()) collect(p, files);
    else files.push(p);
  }
}
files = [...new Set(files)].sort();

if (files.length === 0) {
  fail(
    paths.length === 0 ? `no test files found (expected test/**/*.test.ts under ${testDir})` : `no test files found in: ${paths.join(' ')}`,
    1,
  );
}

const concurrency = positiveInt('DISPYTS_TEST_CONCURRENCY', 4);
const timeoutMs = positiveInt('DISPYTS_TEST_TIMEOUT_MS', 180000);
const shown = files.map((f) => {
  const r = relative(root, f);
  return r.startsWith('..') ? f : r.split(sep).join('/');
});
process.stderr.write(
  `run-tests: node ${process.version}, concurrency ${concurrency}, timeout ${timeoutMs}ms, ` +
    `${files.length} file(s): ${shown.join(' ')}\n`,
);

const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${concurrency}`,
    `--test-timeout=${timeoutMs}`,
    // A file whose tests are done exits even if a failed test left a handle open (a cluster
    // retrying a stopped node): the run reports the failure instead of waiting forever.
    '--test-force-exit',
    ...nodeFlags,
    ...files,
  ],
  { cwd: root, stdio: 'inherit' },
);

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

child.on('error', (err) => fail(`cannot start ${process.execPath}: ${err.message}`, 1));
child.on('exit', (code, signal) => {
  if (signal) {
    process.stderr.write(`run-tests: test process killed by ${signal}\n`);
    process.exit(128 + (osConstants.signals[signal] ?? 0));
  }
  process.exit(code ?? 1);
});
