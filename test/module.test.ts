/**
 * Module computations: `{ module, export }` bundled by the client with esbuild (TypeScript, npm
 * packages, relative modules, CommonJS files) and imported by the nodes' job runners.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DispyError, JobCluster, JobStatus } from '../src/index.js';
import { Point } from './fixtures/module-helper.js';
import type { boom, compute, movePoint } from './fixtures/module-work.js';
import { ROOT, TEST_SECRET, startNode, type TestNode, until, within } from './helpers/daemon.js';

const WORK = 'test/fixtures/module-work.ts';
let nodes: TestNode[] = [];
let scratch: string;
let cwd: string;

before(async () => {
  // Module paths resolve against process.cwd(); the test runner starts in the repository root.
  cwd = process.cwd();
  process.chdir(ROOT);
  scratch = mkdtempSync(join(tmpdir(), 'dispyts-module-test-'));
  nodes = await Promise.all([startNode({ host: '127.0.0.70', cpus: 2 }), startNode({ host: '127.0.0.71', cpus: 1 })]);
});

after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(scratch, { recursive: true, force: true });
  process.chdir(cwd);
});

function opts(count = 1): { nodes: { host: string; port: number }[]; secret: string } {
  return { nodes: nodes.slice(0, count).map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET };
}

/** Rejects instead of hanging when `p` does not settle in time. */
/** A module written to a scratch directory (kept out of the typechecked tree). */
function scratchModule(name: string, text: string): string {
  const file = join(scratch, name);
  writeFileSync(file, text);
  return file;
}

/** Expects the cluster to report DISPY_ERR_COMPUTATION and its queued job never to run. */
async function expectComputationError(cluster: JobCluster<(x: number) => unknown>, ...pattern: RegExp[]): Promise<DispyError> {
  const errored = once(cluster, 'error') as Promise<[DispyError]>;
  const job = cluster.submit(1);
  const [err] = await within(errored, 8000, 'the error event');
  assert.ok(err instanceof DispyError);
  assert.equal(err.code, 'DISPY_ERR_COMPUTATION', err.message);
  for (const p of pattern) assert.match(err.message, p);
  assert.equal(job.status, JobStatus.Created, 'the job was not run');
  assert.equal(await cluster.close({ terminate: true }), true);
  assert.equal(job.status, JobStatus.Cancelled);
  await assert.rejects(job.wait(), (e: DispyError) => e.code === 'DISPY_ERR_JOB_CANCELLED');
  return err;
}

test('a TypeScript module with npm, relative TypeScript and CommonJS imports runs jobs on two nodes', async () => {
  const cluster = new JobCluster<typeof compute>({ module: WORK, export: 'compute' }, opts(2));
  assert.equal(cluster.name, 'compute');
  // Both nodes set up (each runner writes and imports the bundle) before the jobs go out.
  await until(() => cluster.status().nodes.length >= 2, 10_000, 'both nodes set up');
  const jobs = Array.from({ length: 12 }, (_, i) => cluster.submit({ x: i, ...(i % 2 ? { label: `l${i}` } : {}) }));
  const results = await within(Promise.all(jobs.map((j) => j.wait())), 15_000, 'the jobs');
  for (const [i, r] of results.entries()) {
    assert.equal(r.doubled, 2 * i);
    assert.equal(r.label, i % 2 ? `l${i}` : 'none');
    assert.deepEqual(r.roundTrip, { x: i, list: [i, i + 1] });
    // The CommonJS file's require (a built-in and a dynamic one), __filename and __dirname.
    assert.equal(r.cjs.tag, `cjs:${i}`);
    assert.match(r.cjs.file, /^dispyts-module-[0-9a-f]{16}\.mjs$/);
    assert.equal(r.cjs.dirIsAbsolute, true);
    assert.equal(r.cjs.hasEol, true);
    assert.equal(jobs[i]!.stdout, `computing ${i}\n`);
  }
  assert.deepEqual(new Set(jobs.map((j) => j.ipAddr)).size, 2, 'both nodes ran jobs');
  // Arguments that fail the module's own validation (zod) terminate the job with its error.
  const bad = cluster.submit({ x: 1.5 });
  await assert.rejects(
    bad.wait(),
    (e: DispyError) => e.code === 'DISPY_ERR_JOB_TERMINATED' && /ZodError|invalid/i.test(String(bad.exception)),
  );
  await cluster.close();
});

test('the default export, an absolute path, and exported classes in depends', async () => {
  const def = new JobCluster<(x: number) => number>({ module: resolve(WORK) }, opts());
  assert.equal(def.name, 'module-work', 'named after the module for a default export');
  assert.equal(await within(def.submit(5).wait(), 10_000, 'the job'), 105);
  await def.close();

  const moved = new JobCluster<typeof movePoint>({ module: `./${WORK}`, export: 'movePoint' }, { ...opts(), depends: [Point] });
  const p = await within(moved.submit(new Point(1, -2), 3).wait(), 10_000, 'the job');
  assert.ok(p instanceof Point, 'rebuilt with its prototype on both sides');
  assert.equal(p.norm1(), 6);
  await moved.close();
});

test("an error thrown by the module's function terminates the job with its stack, in the module's own lines", async () => {
  const cluster = new JobCluster<typeof boom>({ module: WORK, export: 'boom' }, opts());
  const job = cluster.submit('bang');
  await assert.rejects(within(job.wait(), 10_000, 'the job'), (e: DispyError) => e.code === 'DISPY_ERR_JOB_TERMINATED');
  assert.equal(job.status, JobStatus.Terminated);
  // The bundle's source map names the module's own file and line (the line of the throw).
  const line =
    readFileSync(WORK, 'utf8')
      .split('\n')
      .findIndex((l) => l.includes('throw new RangeError')) + 1;
  assert.ok(line > 0, 'the fixture throws a RangeError');
  assert.match(
    String(job.exception),
    new RegExp(`^RangeError: boom: bang\\n\\s+at boom \\(.*test/fixtures/module-work\\.ts:${line}:\\d+\\)`),
  );
  await cluster.close();
});

test('a missing export or one that is not a function fails the setup: an error event, jobs not run', async () => {
  const missing = new JobCluster({ module: WORK, export: 'nope' }, opts());
  await expectComputationError(missing, /no export `nope`/, /`compute`/, /127\.0\.0\.70/);
  const notFn = new JobCluster({ module: WORK, export: 'notAFunction' }, opts());
  await expectComputationError(notFn, /`notAFunction`.* is a number, not a function/);
});

test('a syntax error or an unresolvable import is reported with esbuild’s message (error event)', async () => {
  const syntax = scratchModule('syntax.ts', 'export function compute(x: number) {\n  return x +;\n}\n');
  await expectComputationError(
    new JobCluster({ module: syntax, export: 'compute' }, opts()),
    /cannot bundle module/,
    /syntax\.ts:2:\d+: Unexpected ";"/,
  );
  const unresolved = scratchModule('unresolved.ts', "import { x } from 'dispyts-no-such-package';\nexport const compute = () => x;\n");
  await expectComputationError(
    new JobCluster({ module: unresolved, export: 'compute' }, opts()),
    /Could not resolve "dispyts-no-such-package"/,
  );
});

test('native addons are refused (error event naming them); a missing module file and bad options throw at construction', async () => {
  const native = scratchModule(
    'native.ts',
    "import addon from './fast-math.node';\nexport const compute = (x: number) => (addon as { f(x: number): number }).f(x);\n",
  );
  await expectComputationError(
    new JobCluster({ module: native, export: 'compute' }, opts()),
    /native addon `.*fast-math\.node`/,
    /native\.ts/,
  );
  // A package loading its addon through node-gyp-build fails when the node imports the bundle.
  const loader = scratchModule(
    'loader.mjs',
    "import load from 'node-gyp-build';\nconst addon = load(import.meta.dirname);\nexport const compute = (x) => addon.f(x);\n",
  );
  await expectComputationError(
    new JobCluster({ module: loader, export: 'compute' }, opts()),
    /native addon of `.*loader\.mjs` \(loaded through `node-gyp-build`\)/,
  );

  assert.throws(
    () => new JobCluster({ module: 'test/fixtures/no-such-module.ts' }, opts()),
    (e: DispyError) => e.code === 'DISPY_ERR_COMPUTATION' && /no-such-module\.ts/.test(e.message) && /ENOENT/.test(e.message),
  );
  assert.throws(
    () => new JobCluster({ module: WORK, export: '' }, opts()),
    (e: DispyError) => e.code === 'DISPY_ERR_INVALID_OPTION',
  );
  assert.throws(
    () => new JobCluster({ module: WORK }, { ...opts(), depends: [(x: number) => x] }),
    (e: DispyError) => e.code === 'DISPY_ERR_INVALID_OPTION' && /depends\[0\]/.test(e.message),
  );
});
