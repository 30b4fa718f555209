/**
 * Polite cancels: `cancel(job, { grace })` fires the job's `dispyAbortSignal` (a program job
 * gets SIGINT); a job that returns within the grace ends Finished with its value, one that does
 * not is killed after it (Terminated), and the kill never hits the job after it in that runner.
 * The same through SharedJobCluster and `dispyts scheduler`. Addresses 127.0.0.75-77 only.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyJob, JobCluster, SharedJobCluster } from '../src/index.js';
import { post } from './helpers/http-client.js';
import { startServer } from './helpers/httpd.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';
import { startScheduler, type TestScheduler } from './helpers/scheduler-process.js';

declare const dispyAbortSignal: AbortSignal;
declare function dispyProvisionalResult(value: unknown): void;

const CLUSTER_SECRET = 'polite-cancel-cluster-secret';
let node: TestNode;
let shedNode: TestNode;
let scheduler: TestScheduler;
let dir: string;
before(async () => {
  [node, shedNode] = await Promise.all([startNode({ host: '127.0.0.75', cpus: 1 }), startNode({ host: '127.0.0.77', cpus: 1 })]);
  scheduler = await startScheduler({
    host: '127.0.0.76',
    nodes: [`${shedNode.host}:${shedNode.port}`],
    nodeSecret: TEST_SECRET,
    clusterSecret: CLUSTER_SECRET,
  });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-polite-'));
});
after(async () => {
  await scheduler?.stop();
  await Promise.all([node?.stop(), shedNode?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** Improves its best value until it is cancelled (dispy's longrun), or sleeps `ms` ignoring it. */
async function search(mode: string, ms: number) {
  if (mode === 'sleep') {
    await new Promise((r) => setTimeout(r, ms));
    return process.pid;
  }
  let best = 0;
  while (!dispyAbortSignal.aborted) {
    best++;
    if (best === 3) dispyProvisionalResult(best);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { best, pid: process.pid, reason: String((dispyAbortSignal.reason as Error).message) };
}

async function provisional(job: DispyJob): Promise<void> {
  await until(() => job.status === DispyJob.ProvisionalResult, 10_000, 'the provisional result');
}

test('a function job that returns within the grace ends Finished with its value; the kill after the grace spares the next job', async () => {
  const cluster = new JobCluster(search, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET });
  const job = cluster.submit('search', 0);
  await provisional(job);
  assert.equal(await cluster.cancel(job, { grace: 2 }), 0);
  const value = (await job.wait()) as { best: number; pid: number; reason: string };
  assert.equal(job.status, DispyJob.Finished);
  assert.ok(value.best >= 3);
  assert.match(value.reason, /cancelled by its client: it has 2 s to return/);
  // The next job runs in the same runner (1 CPU) across the end of the grace: untouched.
  const next = cluster.submit('sleep', 3000);
  assert.equal(await next.wait(), value.pid, 'same runner, not killed');
  assert.equal(next.status, DispyJob.Finished);
  await cluster.close();
});

test('a function job that does not return within the grace is killed after it; cancelGrace is the default', async () => {
  const cluster = new JobCluster(search, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET, cancelGrace: 0.5 });
  const job = cluster.submit('sleep', 60_000);
  await until(() => job.status === DispyJob.Running, 10_000, 'the job running');
  const t0 = Date.now();
  assert.equal(await cluster.cancel(job), 0);
  await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  assert.ok(Date.now() - t0 >= 450, 'not before the grace');
  assert.match(job.exception ?? '', /did not return within its grace of 0.5 s/);
  await cluster.close();
});

test('a program job gets SIGINT: exiting within the grace ends Finished with its exit code; ignoring it ends Terminated', async () => {
  const prog = join(dir, 'longrun.sh');
  writeFileSync(
    prog,
    '#!/bin/sh\nif [ "$1" = ignore ]; then trap "" INT; else trap \'echo best 0.97; exit 7\' INT; fi\necho started > "$2"\nwhile true; do sleep 0.1; done\n',
  );
  chmodSync(prog, 0o755);
  const cluster = new JobCluster<(mode: string, ready: string) => number>(prog, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
  });
  // The program says when its trap is set (a SIGINT before that would simply kill it).
  const job = cluster.submit('answer', join(dir, 'ready-1'));
  await until(() => existsSync(join(dir, 'ready-1')), 10_000, 'the program running with its trap');
  await cluster.cancel(job, { grace: 3 });
  assert.equal(await job.wait(), 7);
  assert.equal(job.status, DispyJob.Finished);
  assert.match(job.stdout, /best 0\.97/);
  const stubborn = cluster.submit('ignore', join(dir, 'ready-2'));
  await until(() => existsSync(join(dir, 'ready-2')), 10_000, 'the program running with its trap');
  await cluster.cancel(stubborn, { grace: 0.5 });
  await assert.rejects(stubborn.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  await cluster.close();
});

test('through SharedJobCluster: a polite cancel ends Finished with the value, a plain one Terminated', async () => {
  const cluster = new SharedJobCluster(search, {
    schedulerHost: '127.0.0.76',
    schedulerPort: scheduler.port,
    secret: CLUSTER_SECRET,
    logLevel: 'silent',
  });
  const job = cluster.submit('search', 0);
  await provisional(job);
  await cluster.cancel(job, { grace: 3 });
  const value = (await job.wait()) as { best: number };
  assert.equal(job.status, DispyJob.Finished);
  assert.ok(value.best >= 3);
  const plain = cluster.submit('sleep', 60_000);
  await until(() => plain.status === DispyJob.Running, 10_000, 'the job running');
  await cluster.cancel(plain);
  await assert.rejects(plain.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  await cluster.close();
});

test("the HTTP server's /cancel_jobs kills at once whatever the cluster's cancelGrace, unless the form asks for a grace", async () => {
  const cluster = new JobCluster(search, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET, cancelGrace: 60 });
  const { server, base } = await startServer(cluster);
  try {
    const killed = cluster.submit('search', 0);
    await provisional(killed);
    const t0 = Date.now();
    assert.deepEqual((await post(base, '/cancel_jobs', { uid: [killed._uid] })).json(), [killed._uid]);
    await assert.rejects(killed.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
    assert.ok(Date.now() - t0 < 30_000, 'killed, not given the 60 s grace');
    const polite = cluster.submit('search', 0);
    await provisional(polite);
    assert.deepEqual((await post(base, '/cancel_jobs', { uid: [polite._uid], grace: 5 })).json(), [polite._uid]);
    assert.ok(((await polite.wait()) as { best: number }).best >= 3);
    assert.equal(polite.status, DispyJob.Finished);
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close({ terminate: true });
  }
});
