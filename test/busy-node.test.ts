/** A node serves one client process at a time and tells another that it is busy. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { JobCluster } from '../src/index.js';
import { ROOT, TEST_SECRET, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.28', cpus: 1 });
});
after(async () => {
  await node.stop();
});

test('a second client process gets DISPY_ERR_NODE_BUSY; the node is free again after close', async () => {
  const cluster = new JobCluster((x: number) => x * 3, clusterOn(node));
  assert.equal(await cluster.submit(2).wait(), 6);
  const run = () =>
    promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test/fixtures/second-client.ts'), node.host, String(node.port), TEST_SECRET],
      { cwd: ROOT },
    );
  const { stdout } = await run();
  const first = JSON.parse(stdout.trim().split('\n')[0]!) as { code: string; message: string };
  assert.equal(first.code, 'DISPY_ERR_NODE_BUSY');
  assert.match(first.message, /127\.0\.0\.28/);
  // Our own cluster is unaffected.
  assert.equal(await cluster.submit(5).wait(), 15);
  await cluster.close();
  await until(() => /client done/.test(node.log()), 5_000, 'the node to release the client');
});
