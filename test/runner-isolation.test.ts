/**
 * Programs never touch each other: a runner only runs jobs of one client program and is retired
 * when that program is done with the node (a fresh one takes its place at once). Within one
 * program computations share runners, but an error thrown asynchronously by a job that ended
 * fails no other job. `isolate: 'job'` gives each job a fresh process.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DispyJob, JobCluster } from '../src/index.js';
import { ROOT, TEST_SECRET, alive, startNode, until, type TestNode } from './helpers/daemon.js';

let node: TestNode;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.42', cpus: 1 });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-isolation-'));
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

function nodes() {
  return [{ host: node.host, port: node.port }];
}

/** What a job sees of what others may have left in its process. */
async function look(sleepMs: number) {
  await new Promise((r) => setTimeout(r, sleepMs));
  return {
    pid: process.pid,
    leaked: typeof (globalThis as Record<string, unknown>).leaked,
    includes: [1].includes(2),
    tz: process.env.TZ ?? null,
  };
}

test('a program after another one on the same node sees nothing of it: globals, prototypes, env, timers, stray errors', async () => {
  const ticks = join(dir, 'ticks');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'test/fixtures/leaky-program.ts'), node.host, String(node.port), TEST_SECRET, ticks],
    { cwd: ROOT },
  );
  const first = JSON.parse(stdout.trim()) as { pid: number; tz: string | null };
  const c = new JobCluster(look, { nodes: nodes(), secret: TEST_SECRET });
  // Long enough for the leaky program's timer to tick (and throw) many times, were it alive.
  const seen = await c.submit(1500).wait();
  assert.notEqual(seen.pid, first.pid, 'a runner of the other program');
  assert.deepEqual({ leaked: seen.leaked, includes: seen.includes, tz: seen.tz }, { leaked: 'undefined', includes: false, tz: first.tz });
  assert.equal(alive(first.pid), false, "the other program's runner is gone");
  const ticked = existsSync(ticks) ? readFileSync(ticks, 'utf8').length : 0;
  assert.equal(
    await c
      .submit(300)
      .wait()
      .then((r) => r.leaked),
    'undefined',
  );
  assert.equal(existsSync(ticks) ? readFileSync(ticks, 'utf8').length : 0, ticked, 'its timer no longer runs');
  await c.close();
});

/** Leaves a timer that throws a few times after the job ended. */
function leaveStrays(times: number) {
  let n = 0;
  const t = setInterval(() => {
    if (++n >= times) clearInterval(t);
    throw new Error('stray error of cluster X');
  }, 100);
  return process.pid;
}

async function nap(ms: number) {
  await new Promise((r) => setTimeout(r, ms));
  return process.pid;
}

test("a stray error of one cluster's ended job fails no job of another cluster of the same program; it is logged", async () => {
  const x = new JobCluster(leaveStrays, { nodes: nodes(), secret: TEST_SECRET, name: 'x' });
  const y = new JobCluster(nap, { nodes: nodes(), secret: TEST_SECRET, name: 'y' });
  const pidX = await x.submit(8).wait();
  const job = y.submit(1200);
  const pidY = await job.wait();
  assert.equal(pidY, pidX, 'one program: its computations share the runner');
  assert.equal(job.status, DispyJob.Finished);
  await until(() => /stray error of cluster X/.test(node.log()), 5000, 'the stray error in the node log');
  assert.match(node.log(), /thrown asynchronously after its job ended/);
  await x.close();
  await y.close();
});

async function ownStray() {
  setTimeout(() => {
    throw new Error('own stray error');
  }, 50);
  await new Promise((r) => setTimeout(r, 10_000));
}

test("a job's own asynchronous error still fails that job", async () => {
  const c = new JobCluster(ownStray, { nodes: nodes(), secret: TEST_SECRET });
  const job = c.submit();
  await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  assert.match(job.exception!, /own stray error/);
  await c.close();
});

/** Counts jobs in this process; `setup` leaves a mark in it. */
function count() {
  const g = globalThis as unknown as Record<string, number>;
  g.jobs = (g.jobs ?? 0) + 1;
  return { pid: process.pid, jobs: g.jobs, setups: g.setups ?? 0 };
}

test("isolate: 'job' runs every job in a fresh process (setup before each); the node serves on after", async () => {
  const c = new JobCluster(count, {
    nodes: nodes(),
    secret: TEST_SECRET,
    isolate: 'job',
    setup: () => {
      const g = globalThis as unknown as Record<string, number>;
      g.setups = (g.setups ?? 0) + 1;
    },
  });
  const results = await Promise.all(Array.from({ length: 5 }, () => c.submit().wait()));
  assert.equal(new Set(results.map((r) => r.pid)).size, 5, 'five processes');
  for (const r of results) assert.deepEqual({ jobs: r.jobs, setups: r.setups }, { jobs: 1, setups: 1 });
  await until(() => results.every((r) => !alive(r.pid)), 10_000, 'each job process to end after its job');
  await c.close();
  const after = new JobCluster((x: number) => x + 1, { nodes: nodes(), secret: TEST_SECRET });
  assert.equal(await after.submit(1).wait(), 2);
  await after.close();
});

test('an isolated job that keeps its process busy is cancelled; the next one runs in a fresh process', async () => {
  const c = new JobCluster(
    (spin: boolean) => {
      while (spin);
      return process.pid;
    },
    { nodes: nodes(), secret: TEST_SECRET, isolate: 'job' },
  );
  const first = await c.submit(false).wait();
  const busy = c.submit(true);
  await until(() => busy.status === DispyJob.Running, 10_000, 'the busy job to run');
  assert.equal(await c.cancel(busy), 0);
  await assert.rejects(busy.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  assert.match(busy.exception!, /terminated on request of the client/);
  const next = await c.submit(false).wait();
  assert.notEqual(next, first);
  await c.close();
});

test("isolate must be 'job'", () => {
  assert.throws(() => new JobCluster(count, { nodes: nodes(), secret: TEST_SECRET, isolate: 'process' as 'job' }), {
    code: 'DISPY_ERR_INVALID_OPTION',
  });
});
