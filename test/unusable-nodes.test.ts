/**
 * Never silent, never hanging: a program whose every node refuses its secret warns on stderr
 * (naming the node and why) and stays alive, and once the node's admin fixes the secret it is
 * retried and the program ends normally; `nodeTimeout` gives up instead; a wildcard on a
 * loopback host is a warning at construction; a node stopped (SIGSTOP) without pulseInterval is
 * declared dead after the default silence (shortened here to 2 s, test-only), so its jobs, a
 * cancel and `close({ timeout })` all settle in bounded time. Real daemons on 127.0.0.130-133.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { DispyJob, JobCluster, type DispyError } from '../src/index.js';
import { ROOT, TEST_SECRET, alive, startNode, until, within } from './helpers/daemon.js';

process.env.DISPYTS_TEST_DEFAULT_SILENCE = '2';

const WRONG = 'not-the-secret-of-these-nodes-0123';

/** A pino logger whose lines the test can read. */
function capture(): { logger: pino.Logger; text: () => string } {
  let out = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), text: () => out };
}

test('every node refuses the secret: a warning on stderr, the program stays alive, and is served once the node is fixed', async () => {
  let node = await startNode({ host: '127.0.0.130', cpus: 1, secret: WRONG, logLevel: 'info' });
  const port = node.port;
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'test/fixtures/unusable-nodes-client.ts'),
      JSON.stringify({ node: { host: node.host, port }, secret: TEST_SECRET }),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  try {
    await until(() => out.includes('submitted'), 30_000, `the program to start (stderr so far: ${err})`);
    const submitted = Date.now();
    await until(() => /no usable node/.test(err), 10_000, `the warning (stderr so far: ${err})`);
    process.stdout.write(`# warned ${Date.now() - submitted} ms after the job was submitted\n`);
    const warning = err.split('\n').find((l) => /no usable node/.test(l))!;
    assert.match(warning, /127\.0\.0\.130/);
    assert.match(warning, /DISPY_ERR_AUTH/);
    assert.equal(proc.exitCode, null, `the program waits for a node instead of exiting (stderr: ${err})`);
    assert.ok(alive(proc.pid!));
    // The admin gives the node the right secret (same address and port): the program is served.
    await node.stop();
    node = await startNode({ host: '127.0.0.130', cpus: 1, logLevel: 'info', args: ['--port', String(port)] });
    assert.equal(await within(exited, 45_000, 'the program to end'), 0, err);
    assert.match(out, /result 42/);
  } finally {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    await node.stop();
  }
});

test('nodeTimeout: with no usable node for that long, pending jobs end Abandoned and wait() rejects', async () => {
  const node = await startNode({ host: '127.0.0.131', cpus: 1, secret: WRONG, logLevel: 'info' });
  const { logger, text } = capture();
  const cluster = new JobCluster((x: number) => x, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    nodeTimeout: 1.5,
    logger,
  });
  const errors: DispyError[] = [];
  cluster.on('error', (e) => errors.push(e));
  try {
    const job = cluster.submit(1);
    await assert.rejects(within(cluster.wait(), 10_000, 'wait()'), (e: DispyError) => {
      assert.equal(e.code, 'DISPY_ERR_NO_NODE');
      assert.match(e.message, /127\.0\.0\.131.*DISPY_ERR_AUTH/);
      return true;
    });
    assert.equal(job.status, DispyJob.Abandoned);
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_ABANDONED' });
    assert.match(job.exception ?? '', /DISPY_ERR_NO_NODE/);
    await until(() => errors.some((e) => e.code === 'DISPY_ERR_NO_NODE'), 2_000, 'the error event');
    assert.match(text(), /no usable node for nodeTimeout/);
    assert.equal(await cluster.wait(), true, 'nothing pending any more');
  } finally {
    await cluster.close({ terminate: true });
    await node.stop();
  }
});

test('a wildcard on a loopback host is a warning at construction', async () => {
  const { logger, text } = capture();
  const cluster = new JobCluster((x: number) => x, { nodes: ['127.0.0.*'], secret: TEST_SECRET, logger });
  try {
    assert.match(text(), /127\.0\.0\.\*.*nothing will be discovered.*loopback/);
  } finally {
    await cluster.close();
  }
});

test('a node stopped (SIGSTOP) without pulseInterval: its jobs, a cancel and close({ timeout }) settle in bounded time', async () => {
  const [a, b] = await Promise.all([
    startNode({ host: '127.0.0.132', cpus: 2, logLevel: 'info' }),
    startNode({ host: '127.0.0.133', cpus: 1, logLevel: 'info' }),
  ]);
  const { logger, text } = capture();
  const cluster = new JobCluster(
    async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    },
    { nodes: [{ host: a.host, port: a.port }], secret: TEST_SECRET, logger },
  );
  const other = new JobCluster(
    async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    },
    { nodes: [{ host: b.host, port: b.port }], secret: TEST_SECRET },
  );
  try {
    const jobs = [30_000, 30_001].map((ms) => cluster.submit(ms));
    await until(() => jobs.every((j) => j.status === DispyJob.Running), 15_000, 'both jobs to run');
    const held = other.submit(30_000);
    await until(() => held.status === DispyJob.Running, 15_000, 'the other job to run');
    process.kill(a.pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    const cancelled = cluster.cancel(jobs[1]!);
    // Declared dead after 5 silent pulses (2 s here), checked every pulse: within ~3 s.
    const outcomes = await within(Promise.allSettled(jobs.map((j) => j.wait())), 10_000, 'the jobs of the stopped node');
    const settledIn = Date.now() - stoppedAt;
    assert.ok(settledIn <= 6_000, `settled ${settledIn} ms after the node stopped`);
    for (const o of outcomes) assert.equal((o as PromiseRejectedResult).reason?.code, 'DISPY_ERR_JOB_ABANDONED');
    assert.equal(await within(cancelled, 1_000, 'cancel()'), 0);
    assert.match(text(), /missed its heartbeats: declared dead/);
    // close({ timeout }) does not wait the request timeout (30 s) for a node that says nothing.
    process.kill(b.pid, 'SIGSTOP');
    const t0 = Date.now();
    assert.equal(await within(other.close({ terminate: true, timeout: 1 }), 10_000, 'close({ terminate, timeout: 1 })'), true);
    const closeMs = Date.now() - t0;
    assert.ok(closeMs <= 3_000, `close took ${closeMs} ms`);
    await assert.rejects(held.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  } finally {
    for (const n of [a, b]) if (alive(n.pid)) process.kill(n.pid, 'SIGCONT');
    await cluster.close({ terminate: true });
    await other.close({ terminate: true });
    await Promise.all([a.stop(), b.stop()]);
  }
});
