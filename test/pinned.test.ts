/** submitNode: jobs pinned to one node run only there. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyNode, type DispyNode as Node } from '../src/index.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';

let nodes: TestNode[];
before(async () => {
  nodes = await startNodes(2, { first: 24, cpus: 1 });
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

test('pinned jobs run on their node; unpinned ones anywhere', async () => {
  const ready: Node[] = [];
  const cluster = new JobCluster(
    async (x: number) => {
      await new Promise((r) => setTimeout(r, 20));
      return x;
    },
    {
      nodes: nodes.map((n) => ({ host: n.host, port: n.port })),
      secret: TEST_SECRET,
      clusterStatus: (s, n) => {
        if (s === DispyNode.Initialized && n) ready.push(n);
      },
    },
  );
  await until(() => ready.length === 2, 10_000, 'both nodes');
  const target = ready.find((n) => n.ipAddr === nodes[1]!.host)!;
  const byObject = Array.from({ length: 6 }, (_, i) => cluster.submitNode(target, i));
  const byAddress = Array.from({ length: 4 }, (_, i) => cluster.submitNode(nodes[0]!.host, 100 + i));
  const free = Array.from({ length: 6 }, (_, i) => cluster.submit(200 + i));
  await Promise.all([...byObject, ...byAddress, ...free].map((j) => j.wait()));
  assert.ok(byObject.every((j) => j.ipAddr === nodes[1]!.host));
  assert.ok(byAddress.every((j) => j.ipAddr === nodes[0]!.host));
  assert.throws(() => cluster.submitNode('127.0.0.99', 1), { code: 'DISPY_ERR_NODE_UNKNOWN' });
  await cluster.close();
});
