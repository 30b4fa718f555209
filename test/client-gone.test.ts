/**
 * A program's death frees its nodes (the client-gone rule): a program interrupted mid-job
 * (Ctrl-C) is run again at once and gets its nodes within 15 s with default options; one with a
 * recover file keeps its running jobs (recoverJobs fetches them) and frees the nodes once they
 * ended; a script that forgets close() exits by itself and the next program gets the nodes.
 * Real daemons on 127.0.0.120 and 127.0.0.121, client programs as processes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyJob, DispyNode, JobCluster, recoverJobs, type DispyError } from '../src/index.js';
import { ROOT, TEST_SECRET, alive, startNodes, until, within, type TestNode } from './helpers/daemon.js';

let nodes: TestNode[] = [];
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dispyts-client-gone-'));
  // Default options (zombie interval 3600 s): only the client-gone rule frees them quickly.
  nodes = await startNodes(2, { first: 120, cpus: 1, logLevel: 'info' });
});

after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(dir, { recursive: true, force: true });
});

const spec = () => nodes.map((n) => ({ host: n.host, port: n.port }));

interface Program {
  proc: ChildProcess;
  out(): string;
  err(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function program(fixture: string, arg: unknown, env: Record<string, string> = {}): Program {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures', fixture), JSON.stringify(arg)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => r({ code, signal })),
  );
  return { proc, out: () => out, err: () => err, exited };
}

/** The runner pid each job of the interrupted program wrote once it ran. */
async function runnerPids(jobDir: string): Promise<number[]> {
  const files = nodes.map((n) => join(jobDir, `${n.host}.pid`));
  await until(() => files.every((f) => existsSync(f) && readFileSync(f, 'utf8') !== ''), 10_000, 'the jobs to write their pids');
  return files.map((f) => Number(readFileSync(f, 'utf8')));
}

function kill(p: Program): void {
  if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
}

/** The next program: a cluster with default options and a job pinned to each node; when was each node set up for it. */
function nextProgram(): { cluster: JobCluster<(x: number) => number>; initialized: Map<string, number>; errors: DispyError[] } {
  const initialized = new Map<string, number>();
  const errors: DispyError[] = [];
  const cluster = new JobCluster((x: number) => x * 2, { nodes: spec(), secret: TEST_SECRET });
  cluster.on('status', (e) => {
    if (e.status === DispyNode.Initialized && e.node) initialized.set(e.node.ipAddr, Date.now());
  });
  cluster.on('error', (e) => errors.push(e));
  return { cluster, initialized, errors };
}

test('Ctrl-C mid-job, run again at once: the nodes serve the new program within 15 s, the old jobs are gone', async () => {
  const jobDir = mkdtempSync(join(dir, 'ctrl-c-'));
  const victim = program('interrupted-client.ts', { nodes: spec(), secret: TEST_SECRET, dir: jobDir, seconds: 60 });
  try {
    await until(() => victim.out().includes('running'), 30_000, `the first program's jobs to run: ${victim.err()}`);
    const runners = await runnerPids(jobDir);
    const t0 = Date.now();
    victim.proc.kill('SIGINT');
    const next = nextProgram();
    try {
      const results = await within(
        Promise.all(nodes.map((n, i) => next.cluster.submitNode(n.host, i + 1).wait())),
        25_000,
        'the new program on both nodes',
      );
      assert.deepEqual(results, [2, 4]);
      const served = Math.max(...next.initialized.values()) - t0;
      process.stdout.write(`# nodes served the new program ${served} ms after Ctrl-C\n`);
      assert.equal(next.initialized.size, 2);
      assert.ok(served <= 15_000, `served ${served} ms after Ctrl-C`);
      assert.ok(
        next.errors.every((e) => e.code === 'DISPY_ERR_NODE_BUSY'),
        next.errors.map((e) => e.message).join('; '),
      );
      // The interrupted program's jobs were terminated, not left running for an hour.
      await until(() => runners.every((pid) => !alive(pid)), 5_000, "the old jobs' runners to be gone");
      for (const n of nodes) assert.match(n.log(), /client did not return: terminating its jobs/);
    } finally {
      await next.cluster.close({ terminate: true });
    }
    assert.equal((await victim.exited).signal, 'SIGINT');
  } finally {
    kill(victim);
  }
});

test('with a recover file the interrupted jobs run on (recoverJobs gets them) and the nodes are free once they ended', async () => {
  const jobDir = mkdtempSync(join(dir, 'recoverable-'));
  const recoverFile = join(jobDir, 'jobs.recover.json');
  // A short reconnect window (test-only): the point is what happens after it.
  const victim = program(
    'interrupted-client.ts',
    { nodes: spec(), secret: TEST_SECRET, dir: jobDir, seconds: 5, recoverFile },
    { DISPYTS_TEST_RECONNECT_WINDOW: '1' },
  );
  try {
    await until(() => victim.out().includes('running'), 30_000, `the first program's jobs to run: ${victim.err()}`);
    const runningAt = Date.now();
    const runners = await runnerPids(jobDir);
    victim.proc.kill('SIGINT');
    await victim.exited;
    const next = nextProgram();
    try {
      const submitted = nodes.map((n, i) => next.cluster.submitNode(n.host, i + 1));
      for (const n of nodes) {
        await until(() => /its running jobs go on for recoverJobs/.test(n.log()), 10_000, `${n.host} to keep the jobs`);
      }
      // Past the window, the jobs still run and the nodes serve nobody else.
      assert.ok(
        runners.every((pid) => alive(pid)),
        'the interrupted jobs run on',
      );
      assert.equal(next.initialized.size, 0, 'the next program waits while they run');
      assert.deepEqual(await within(Promise.all(submitted.map((j) => j.wait())), 20_000, 'the new program'), [2, 4]);
      const served = Math.max(...next.initialized.values()) - runningAt;
      assert.ok(served >= 4_000 && served <= 15_000, `served once the 5 s jobs ended (${served} ms after they ran)`);
    } finally {
      await next.cluster.close({ terminate: true });
    }
    const recovered = await recoverJobs({ recoverFile, secret: TEST_SECRET, timeout: 10 });
    assert.deepEqual(
      recovered.map((j) => [j.id, j.status, j.result]).sort(),
      nodes.map((n, i) => [`job-${i}`, DispyJob.Finished, `slept 5 s on ${n.host}`]),
    );
  } finally {
    kill(victim);
  }
});

test('a script that forgets close() exits when its work is done; the next program gets the nodes', async () => {
  const script = program('forgot-close-client.ts', { nodes: spec(), secret: TEST_SECRET }, { DISPYTS_TEST_RECONNECT_WINDOW: '2' });
  try {
    await until(() => script.out().includes('['), 30_000, `the script's results: ${script.err()}`);
    assert.deepEqual(JSON.parse(script.out().trim()), [2, 4, 6, 8]);
    const printedAt = Date.now();
    const { code } = await within(script.exited, 10_000, 'the script to exit by itself');
    assert.equal(code, 0, script.err());
    process.stdout.write(`# the script exited ${Date.now() - printedAt} ms after its last result\n`);
    const next = nextProgram();
    try {
      assert.deepEqual(
        await within(Promise.all(nodes.map((n, i) => next.cluster.submitNode(n.host, i + 1).wait())), 15_000, 'the next program'),
        [2, 4],
      );
    } finally {
      await next.cluster.close();
    }
  } finally {
    kill(script);
  }
});
