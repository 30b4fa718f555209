/** dispyProvisionalResult: ProvisionalResult events and job.result updates before the final one. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob } from '../src/index.js';
import { TEST_SECRET, startNode, type TestNode } from './helpers/daemon.js';

declare function dispyProvisionalResult(value: unknown): void;

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.80', cpus: 1 });
});
after(async () => {
  await node.stop();
});

test('provisional results arrive in order, then the final one', async () => {
  const seen: [number, unknown][] = [];
  const statuses: number[] = [];
  const cluster = new JobCluster(
    async (n: number) => {
      for (let i = 1; i <= n; i++) {
        dispyProvisionalResult({ step: i });
        await new Promise((r) => setTimeout(r, 30));
      }
      return { done: n };
    },
    {
      nodes: [{ host: node.host, port: node.port }],
      secret: TEST_SECRET,
      jobStatus: (job) => {
        statuses.push(job.status);
        seen.push([job.status, job.result]);
      },
    },
  );
  const job = cluster.submit(3);
  assert.deepEqual(await job.wait(), { done: 3 });
  await cluster.close();
  assert.deepEqual(statuses, [DispyJob.ProvisionalResult, DispyJob.ProvisionalResult, DispyJob.ProvisionalResult, DispyJob.Finished]);
  // Each provisional event carries the job as it was then, however late it is delivered.
  assert.deepEqual(
    seen.map(([, r]) => r),
    [{ step: 1 }, { step: 2 }, { step: 3 }, { done: 3 }],
  );
  assert.equal(job.status, DispyJob.Finished);
});

test('a provisional result is visible on the job while it still runs', async () => {
  const cluster = new JobCluster(
    async () => {
      dispyProvisionalResult('halfway');
      await new Promise((r) => setTimeout(r, 1500));
      return 'end';
    },
    { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET },
  );
  const job = cluster.submit();
  const t0 = Date.now();
  while (job.result !== 'halfway' && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  assert.equal(job.result, 'halfway');
  assert.equal(job.status, DispyJob.ProvisionalResult);
  assert.equal(await job.wait(), 'end');
  await cluster.close();
});
