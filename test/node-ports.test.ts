/**
 * A node is its address: two node specs on one address with different ports (two ssh tunnels on
 * 127.0.0.1) are refused with the fix instead of one being dropped silently; and
 * `discoverNodes(specs)` takes dispy's list of nodes to look for.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, NodeAllocate, SharedJobCluster } from '../src/index.js';
import { TEST_SECRET, startNode, type TestNode } from './helpers/daemon.js';

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.79', cpus: 1, logLevel: 'warn' });
});
after(async () => {
  await node?.stop();
});

const FIX = /one address is one node\. .*ssh -L 127\.0\.0\.5:9701:nodeA:9701 -L 127\.0\.0\.6:9701:nodeB:9701/;

test('two specs on one address with different ports are refused, naming the fix', async () => {
  const twoTunnels = [
    { host: '127.0.0.1', port: 9701 },
    { host: '127.0.0.1', port: 9702 },
  ];
  assert.throws(() => new JobCluster((x: number) => x, { nodes: twoTunnels, secret: TEST_SECRET }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: new RegExp(
      `^nodes: 127\\.0\\.0\\.1 is given with port 9701 and port 9702, but a node is known by its address, so ${FIX.source}`,
    ),
  });
  assert.throws(
    () => new JobCluster((x: number) => x, { nodes: ['localhost', new NodeAllocate('LOCALHOST', 9801)], secret: TEST_SECRET }),
    {
      code: 'DISPY_ERR_INVALID_OPTION',
      message: FIX,
    },
  );
  assert.throws(() => new SharedJobCluster((x: number) => x, { nodes: twoTunnels, secret: TEST_SECRET }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: FIX,
  });
  // The same port twice, and wildcards, are no conflict.
  const ok = new JobCluster((x: number) => x, {
    nodes: [{ host: node.host, port: node.port }, { host: node.host, port: node.port }, '127.0.0.*'],
    secret: TEST_SECRET,
  });
  try {
    assert.equal(await ok.submit(4).wait(), 4);
    // Adding the address again with another port at run time is refused the same way.
    await assert.rejects(ok.allocateNode({ host: node.host, port: node.port + 1 }), {
      code: 'DISPY_ERR_INVALID_OPTION',
      message: new RegExp(`^allocateNode: 127\\.0\\.0\\.79 is given with port ${node.port} and port ${node.port + 1}`),
    });
  } finally {
    await ok.close();
  }
});

test("discoverNodes(specs) looks for dispy's list of nodes now; the cluster's nodes decide whether one is used", async () => {
  // On loopback nothing is discovered over UDP: the wildcard alone finds nothing.
  const wild = new JobCluster((x: number) => x * 2, { nodes: ['127.0.0.7*'], secret: TEST_SECRET, logLevel: 'error' });
  const other = new JobCluster((x: number) => x * 3, { nodes: ['127.0.0.8*'], secret: TEST_SECRET, logLevel: 'error' });
  try {
    assert.equal(await wild.discoverNodes(), 0);
    assert.equal(wild.status().nodes.length, 0);
    assert.equal(await wild.discoverNodes([{ host: node.host, port: node.port }]), 0);
    assert.deepEqual(
      wild.status().nodes.map((n) => n.ipAddr),
      [node.host],
    );
    assert.equal(await wild.submit(21).wait(), 42);
    // Found, but not one of this cluster's nodes: not used.
    assert.equal(await other.discoverNodes({ host: node.host, port: node.port }), 0);
    assert.equal(other.status().nodes.length, 0);
    await assert.rejects(other.discoverNodes([{ host: '', port: 1 }]), { code: 'DISPY_ERR_INVALID_OPTION' });
  } finally {
    await other.close({ terminate: true });
    await wild.close();
  }
});
