/** setup(...setupArgs) runs once per runner before jobs; cleanup at close; a failing setup closes the node. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, DispyNode, NodeAllocate, type DispyError } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

declare const dispyState: { factor: number; dir: string };

let node: TestNode;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.81', cpus: 2 });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-setup-'));
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('setup runs once in each runner with the node spec setupArgs; jobs see its state; cleanup runs at close', async () => {
  function setup(factor: number, where: string) {
    (globalThis as Record<string, unknown>).dispyState = { factor, dir: where };
    require('node:fs').writeFileSync(`${where}/setup-${process.pid}`, String(factor));
  }
  function cleanup() {
    require('node:fs').writeFileSync(`${dispyState.dir}/cleanup-${process.pid}`, 'bye');
  }
  const cluster = new JobCluster((x: number) => x * dispyState.factor, {
    nodes: [new NodeAllocate(node.host, node.port, 0, { setupArgs: [10, dir] })],
    secret: TEST_SECRET,
    setup,
    cleanup,
  });
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => cluster.submit(i).wait()));
  assert.deepEqual(results, [0, 10, 20, 30, 40, 50]);
  const setups = readdirSync(dir).filter((f) => f.startsWith('setup-'));
  assert.equal(setups.length, 2, 'once in each of the 2 runners');
  assert.ok(setups.every((f) => readFileSync(join(dir, f), 'utf8') === '10'));
  assert.equal(readdirSync(dir).filter((f) => f.startsWith('cleanup-')).length, 0);
  await cluster.close();
  const cleanups = readdirSync(dir)
    .filter((f) => f.startsWith('cleanup-'))
    .map((f) => f.slice(8));
  assert.deepEqual(cleanups.sort(), setups.map((f) => f.slice(6)).sort(), 'cleanup ran where setup ran, before close resolved');
});

test('a failing setup closes the computation on that node: an error event and a Closed event', async () => {
  const errors: DispyError[] = [];
  const closed: string[] = [];
  const cluster = new JobCluster((x: number) => x, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    setup: async () => {
      throw new Error('no database here');
    },
    clusterStatus: (status, n) => {
      if (status === DispyNode.Closed && n) closed.push(n.ipAddr);
    },
  });
  cluster.on('error', (e) => errors.push(e));
  const job = cluster.submit(1);
  await until(() => errors.length > 0 && closed.length > 0, 10_000, 'the setup failure');
  assert.equal(errors[0]!.code, 'DISPY_ERR_SETUP');
  assert.match(errors[0]!.message, /no database here/);
  assert.deepEqual(closed, [node.host]);
  assert.equal(cluster.status().nodes.length, 0);
  await cluster.close({ terminate: true });
  await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_CANCELLED' });
  // The node is free for the next cluster.
  const next = new JobCluster((x: number) => x + 1, clusterOn(node));
  assert.equal(await next.submit(1).wait(), 2);
  await next.close();
});
