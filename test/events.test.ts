/**
 * The status event sequence of dispy-reference §3.4's scenario: 4 jobs on a 2-CPU node, one
 * cancelled while queued and one while running, then close.
 */
import { after, before, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob, DispyNode, type ClusterStatusEvent, type DispyStatus } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.22', cpus: 2 });
});
after(async () => {
  await node.stop();
});

test('Initialized, 4 Created, 2 Running, Cancelled, Terminated, Running, 2 Finished, Closed', async () => {
  const seen: { status: DispyStatus; job: unknown; node: string | null; id: number }[] = [];
  const callbacks: [DispyStatus, unknown][] = [];
  const jobStatuses: [unknown, DispyStatus][] = [];
  let inCallback = false;
  // Job 2 runs until the test creates its release file, so the order of the last events does
  // not depend on how loaded the machine is.
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-events-'));
  const release = join(dir, 'release');
  const cluster = new JobCluster(
    async (ms: number, waitFor?: string) => {
      if (waitFor) {
        const { existsSync } = require('node:fs');
        // Bounded: a release that never comes fails the job (after 60 s) rather than hanging it.
        for (let i = 0; !existsSync(waitFor); i++) {
          if (i > 6000) throw new Error(`${waitFor} never appeared`);
          await new Promise((r) => setTimeout(r, 10));
        }
      } else await new Promise((r) => setTimeout(r, ms));
      return ms;
    },
    {
      nodes: [{ host: node.host, port: node.port }],
      secret: TEST_SECRET,
      clusterStatus: (status, n, job) => {
        assert.equal(inCallback, false, 'callbacks are never re-entered');
        inCallback = true;
        callbacks.push([status, job?.id ?? n?.ipAddr]);
        inCallback = false;
      },
      jobStatus: (job) => jobStatuses.push([job.id, job.status]),
    },
  );
  cluster.on('status', (e: ClusterStatusEvent) =>
    seen.push({ status: e.status, job: e.job?.id ?? null, node: e.node?.ipAddr ?? null, id: e.id }),
  );
  await until(() => seen.some((e) => e.status === DispyNode.Initialized), 10_000, 'node initialized');
  const j1 = cluster.submit(10_000);
  const j2 = cluster.submit(3000, release);
  const j3 = cluster.submit(10_000);
  const j4 = cluster.submit(300);
  await until(() => seen.filter((e) => e.status === DispyJob.Running).length === 2, 10_000, 'two jobs running');
  assert.equal(await cluster.cancel(j3), 0);
  await assert.rejects(j3.wait());
  assert.equal(await cluster.cancel(j1), 0);
  await assert.rejects(j1.wait());
  assert.equal(await j4.wait(), 300);
  await until(() => seen.some((e) => e.status === DispyJob.Finished && e.job === 4), 10_000, 'job 4 reported');
  writeFileSync(release, '');
  assert.equal(await j2.wait(), 3000);
  rmSync(dir, { recursive: true, force: true });
  await cluster.close();

  const expected: [DispyStatus, unknown][] = [
    [DispyNode.Initialized, null],
    [DispyJob.Created, 1],
    [DispyJob.Created, 2],
    [DispyJob.Created, 3],
    [DispyJob.Created, 4],
    [DispyJob.Running, 1],
    [DispyJob.Running, 2],
    [DispyJob.Cancelled, 3],
    [DispyJob.Terminated, 1],
    [DispyJob.Running, 4],
    [DispyJob.Finished, 4],
    [DispyJob.Finished, 2],
    [DispyNode.Closed, null],
  ];
  const actual = seen.map((e) => [e.status, e.job]);
  // Jobs 1 and 2 start at the same moment on two runners: either may report first.
  if (actual[5]?.[1] === 2) [actual[5], actual[6]] = [actual[6]!, actual[5]!];
  assert.deepEqual(actual, expected);
  assert.deepEqual(
    seen.map((e) => e.id),
    seen.map((_, i) => i + 1),
    'event ids count up by one',
  );
  assert.ok(seen.filter((e) => e.status !== DispyJob.Created).every((e) => e.node === node.host || e.status === DispyJob.Cancelled));
  assert.deepEqual(
    callbacks.map(([s]) => s),
    expected.map(([s]) => s),
    'clusterStatus sees the same sequence',
  );
  assert.deepEqual(jobStatuses, [
    [3, DispyJob.Cancelled],
    [1, DispyJob.Terminated],
    [4, DispyJob.Finished],
    [2, DispyJob.Finished],
  ]);
});
