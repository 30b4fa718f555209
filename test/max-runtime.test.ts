/** maxRuntime: a job running longer is terminated and ends Terminated, saying why. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob } from '../src/index.js';
import { startNode, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.82', cpus: 2 });
});
after(async () => {
  await node.stop();
});

test('a job over the cluster maxRuntime is terminated; shorter ones finish', async () => {
  const cluster = new JobCluster(
    async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return ms;
    },
    { ...clusterOn(node), maxRuntime: 0.5 },
  );
  const slow = cluster.submit(20_000);
  const quick = cluster.submit(50);
  const t0 = Date.now();
  await assert.rejects(slow.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  const took = Date.now() - t0;
  assert.ok(took >= 450 && took < 5000, `terminated after ${took} ms`);
  assert.equal(slow.status, DispyJob.Terminated);
  assert.match(slow.exception!, /DISPY_ERR_MAX_RUNTIME.*maxRuntime of 0.5 s/);
  assert.equal(await quick.wait(), 50);
  await cluster.close();
});

test('a busy loop is stopped too (SIGKILL after the grace period)', async () => {
  const cluster = new JobCluster(
    () => {
      for (;;);
    },
    { ...clusterOn(node), maxRuntime: 0.3 },
  );
  const job = cluster.submit();
  await assert.rejects(job.wait(), /maxRuntime/);
  await cluster.close();
});
