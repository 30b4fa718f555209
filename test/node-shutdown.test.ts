/** A node stopped with SIGTERM mid-job: its running jobs end Terminated, queued ones run elsewhere. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob, DispyNode, type DispyStatus } from '../src/index.js';
import { TEST_SECRET, alive, startNode, until } from './helpers/daemon.js';

test('SIGTERM to a node terminates its jobs, reports them, and the daemon exits', async () => {
  const doomed = await startNode({ host: '127.0.0.26', cpus: 1 });
  const spare = await startNode({ host: '127.0.0.27', cpus: 1 });
  const closed: string[] = [];
  const cluster = new JobCluster(
    async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return process.pid;
    },
    {
      nodes: [doomed, spare].map((n) => ({ host: n.host, port: n.port })),
      secret: TEST_SECRET,
      clusterStatus: (s: DispyStatus, n) => {
        if (s === DispyNode.Closed && n) closed.push(n.ipAddr);
      },
    },
  );
  await until(() => cluster.status().nodes.length === 2, 10_000, 'both nodes');
  const long = [cluster.submit(30_000), cluster.submit(30_000)];
  await until(() => long.every((j) => j.status === DispyJob.Running), 10_000, 'both long jobs running');
  const onDoomed = long.find((j) => j.ipAddr === doomed.host)!;
  const short = Array.from({ length: 4 }, () => cluster.submit(50));
  assert.equal(await doomed.stop('SIGTERM'), 0, 'the daemon exits cleanly');
  await assert.rejects(onDoomed.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  assert.match(onDoomed.exception!, /shutting down/);
  assert.equal(onDoomed.status, DispyJob.Terminated);
  await until(() => closed.includes(doomed.host), 5_000, 'Closed event for the stopped node');
  // The other long job is still running on the spare; after cancelling it the short jobs run there.
  const other = long.find((j) => j !== onDoomed)!;
  assert.equal(other.status, DispyJob.Running);
  await cluster.cancel(other);
  const pids = await Promise.all(short.map((j) => j.wait()));
  assert.ok(short.every((j) => j.ipAddr === spare.host));
  assert.ok(pids.every((p) => typeof p === 'number'));
  await cluster.close();
  await spare.stop();
  assert.equal(alive(doomed.pid), false);
});
