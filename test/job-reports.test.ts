/**
 * The daemon always knows which job is running: a runner sends a job's Started (and the Done of
 * the job before it) before it calls the job's code. So a crash is blamed on the running job
 * only, jobs queued behind it are re-queued without having run, Running names the job that runs,
 * cancel and maxRuntime act on it, and a cancel that comes after a job ended kills nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyJob, JobCluster } from '../src/index.js';
import { startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.41', cpus: 1 });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-reports-'));
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Appends `id` to `file` (its side effect), then: `exit` ends the runner, `spin` writes
 * `file.long` and keeps the CPU busy (synchronously) for up to 20 s.
 */
function work(file: string | null, id: number, mode = '') {
  const fs = require('node:fs');
  if (file) fs.appendFileSync(file, `${id}\n`);
  if (mode === 'exit') process.exit(1);
  if (mode === 'spin') {
    fs.writeFileSync(`${file}.long`, String(id));
    const end = Date.now() + 20_000;
    while (Date.now() < end);
  }
  return id;
}

/** How many times each id was appended to `file`. */
function runs(file: string): Map<number, number> {
  const counts = new Map<number, number>();
  if (!existsSync(file)) return counts;
  for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) counts.set(Number(line), (counts.get(Number(line)) ?? 0) + 1);
  return counts;
}

/** Resolves once the job reached its final status, whatever it is. */
function ended(job: DispyJob): Promise<unknown> {
  return job.wait().catch(() => undefined);
}

function cluster(opts: { maxRuntime?: number } = {}): JobCluster<typeof work> {
  return new JobCluster(work, { ...clusterOn(node), ...opts });
}

/** Enough short jobs that the runner's average job time falls far below a millisecond. */
async function warmUp(c: JobCluster<typeof work>): Promise<void> {
  const jobs = Array.from({ length: 200 }, (_, i) => c.submit(null, i));
  for (const j of jobs) await j.wait();
}

test('a runner that crashes among short jobs: only the running job ends Terminated, every job ran once', async () => {
  const c = cluster();
  await warmUp(c);
  const file = join(dir, 'crash');
  const jobs = Array.from({ length: 400 }, (_, i) => c.submit(file, i + 1, i + 1 === 200 ? 'exit' : ''));
  for (const j of jobs) await ended(j);
  const terminated = jobs.filter((j) => j.status !== DispyJob.Finished);
  assert.deepEqual(
    terminated.map((j) => [j.args[1], j.status]),
    [[200, DispyJob.Terminated]],
    'exactly one job, the one that exited, is not Finished',
  );
  assert.match(jobs[199]!.exception!, /runner process exited unexpectedly \(code 1/);
  for (const j of jobs) if (j.status === DispyJob.Finished) assert.equal(j.result, j.args[1]);
  const counts = runs(file);
  const wrong = [...Array(400).keys()].map((i) => i + 1).filter((id) => counts.get(id) !== 1);
  assert.deepEqual(
    wrong.map((id) => [id, counts.get(id) ?? 0]),
    [],
    'every job ran exactly once',
  );
  await c.close();
});

test('a long synchronous job among short ones: Running names it, cancel ends it, nothing else runs twice', async () => {
  const c = cluster();
  await warmUp(c);
  const file = join(dir, 'long');
  const short = Array.from({ length: 49 }, (_, i) => c.submit(file, i + 1));
  const long = c.submit(file, 50, 'spin');
  // Queued behind it in the same runner.
  const behind = Array.from({ length: 20 }, (_, i) => c.submit(file, 51 + i));
  await until(() => existsSync(`${file}.long`), 20_000, 'the long job to start');
  const seen = Date.now();
  await until(() => long.status === DispyJob.Running, 1000, 'the client to show the long job Running within 1 s');
  for (const j of short) assert.equal(j.status, DispyJob.Finished, `job ${j.args[1]} finished before the long one started`);
  assert.ok(Date.now() - seen <= 1000);
  const t0 = Date.now();
  assert.equal(await c.cancel(long), 0);
  await ended(long);
  assert.ok(Date.now() - t0 < 2000, `cancel took ${Date.now() - t0} ms`);
  assert.equal(long.status, DispyJob.Terminated);
  assert.match(long.exception!, /terminated on request of the client/);
  for (const j of behind) assert.equal(await j.wait(), j.args[1]);
  const counts = runs(file);
  for (let id = 1; id <= 70; id++) assert.equal(counts.get(id), 1, `job ${id} ran once`);
  for (const j of short) assert.equal(j.result, j.args[1]);
  await c.close();
});

test('maxRuntime among short jobs hits only the long one', async () => {
  const c = cluster({ maxRuntime: 2 });
  await warmUp(c);
  const file = join(dir, 'maxruntime');
  const short = Array.from({ length: 49 }, (_, i) => c.submit(file, i + 1));
  const long = c.submit(file, 50, 'spin');
  const behind = Array.from({ length: 20 }, (_, i) => c.submit(file, 51 + i));
  await ended(long);
  assert.equal(long.status, DispyJob.Terminated);
  assert.match(long.exception!, /DISPY_ERR_MAX_RUNTIME/);
  for (const j of [...short, ...behind]) {
    await ended(j);
    assert.equal(j.status, DispyJob.Finished, `job ${j.args[1]}: ${j.exception}`);
    assert.equal(j.result, j.args[1]);
  }
  const counts = runs(file);
  for (let id = 1; id <= 70; id++) assert.equal(counts.get(id), 1, `job ${id} ran once`);
  await c.close();
});

/** `big`: 300 ms of CPU, then a result of `size` bytes (and the runner's pid); else the pid at once. */
function raceJob(kind: string, size: number) {
  if (kind === 'big') {
    const end = Date.now() + 300;
    while (Date.now() < end);
    return { pid: process.pid, blob: Buffer.alloc(size, 7) };
  }
  return { pid: process.pid, blob: null };
}

test('a cancel that reaches the node after its job ended keeps the result and kills nothing', async () => {
  const c = new JobCluster(raceJob, clusterOn(node));
  const first = await c.submit('small', 0).wait();
  // The node queues `late` behind `big` in the same runner; the cancel reaches the runner only
  // once `big` is done. The daemon spends a while on big's large result, and hears of `late`
  // starting only after it ended: the cancel then finds nothing running.
  const big = c.submit('big', 8 * 1024 * 1024);
  const late = c.submit('small', 0);
  await until(() => big.status === DispyJob.Running, 10_000, 'the big job to run');
  await c.cancel(late);
  await ended(late);
  assert.equal(late.status, DispyJob.Finished, `the job that ended keeps its result (${late.exception})`);
  assert.equal(late.result!.pid, first.pid);
  const b = await big.wait();
  assert.equal(b.blob!.length, 8 * 1024 * 1024);
  const next = await c.submit('small', 0).wait();
  assert.equal(next.pid, first.pid, 'the runner was not killed');
  await c.close();
});

/** `big`: a result of 2 MiB; `exit`: appends to `file`, then ends the runner; else nothing. */
function afterBig(kind: string, file: string) {
  if (kind === 'big') return Buffer.alloc(2 * 1024 * 1024, 1);
  if (kind !== 'exit') return null;
  require('node:fs').appendFileSync(file, 'x');
  process.exit(1);
}

test('a job that ends its runner right after a job with a large result: that result stands, the job alone fails, once', async () => {
  const c = new JobCluster(afterBig, clusterOn(node));
  const file = join(dir, 'after-big');
  // Short jobs first, so that client and node queue the next two in the runner together: the
  // large Done is still being written when the next job starts.
  for (const j of Array.from({ length: 50 }, () => c.submit('tiny', file))) await j.wait();
  const big = c.submit('big', file);
  const exit = c.submit('exit', file);
  const result = await big.wait();
  assert.equal((result as Buffer).length, 2 * 1024 * 1024);
  await assert.rejects(exit.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  assert.match(exit.exception!, /exited unexpectedly \(code 1/);
  assert.equal(readFileSync(file, 'utf8'), 'x', 'the job that exited ran once');
  await c.close();
});
