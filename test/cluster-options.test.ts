/** NodeAllocate's allocate() hook, wildcards over known nodes, submitJobId, heartbeats, option errors. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyNode, NodeAllocate, type AvailInfo } from '../src/index.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';

let nodes: TestNode[];
before(async () => {
  nodes = await startNodes(2, { first: 35, cpus: 2 });
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

class OneCpuOnFirst extends NodeAllocate {
  override allocate(_cluster: unknown, ipAddr: string, _name: string, _cpus: number, availInfo: AvailInfo | null): number {
    assert.ok(availInfo === null || Number.isFinite(availInfo.cpu));
    return ipAddr.endsWith('.35') ? 1 : 0;
  }
}

test('a NodeAllocate subclass decides the CPUs per node (0 = not used)', async () => {
  const cluster = new JobCluster((x: number) => x, {
    nodes: nodes.map((n) => new OneCpuOnFirst(n.host, n.port)),
    secret: TEST_SECRET,
  });
  const jobs = Array.from({ length: 10 }, (_, i) => cluster.submit(i));
  await Promise.all(jobs.map((j) => j.wait()));
  assert.ok(jobs.every((j) => j.ipAddr === nodes[0]!.host));
  const st = cluster.status();
  assert.equal(st.nodes.length, 1);
  assert.equal(st.nodes[0]!.cpus, 1);
  assert.equal(st.nodes[0]!.availCpus, 2);
  await cluster.close();
});

test('a wildcard matches the nodes this process already knows; submitJobId sets the id', async () => {
  const first = new JobCluster((x: number) => x, { nodes: [{ host: nodes[1]!.host, port: nodes[1]!.port }], secret: TEST_SECRET });
  assert.equal(await first.submit(1).wait(), 1);
  const wild = new JobCluster((x: number) => -x, { nodes: ['127.0.0.3*'], secret: TEST_SECRET });
  const job = wild.submitJobId('my-id', 5);
  assert.equal(job.id, 'my-id');
  assert.equal(await job.wait(), -5);
  assert.equal(job.ipAddr, nodes[1]!.host);
  const exact = new JobCluster((x: number) => x, { nodes: ['127.0.0.3'], secret: TEST_SECRET });
  assert.equal(exact.status().nodes.length, 0, 'a literal address does not match 127.0.0.36');
  await Promise.all([first.close(), wild.close(), exact.close({ terminate: true })]);
});

test('nodes report their resources in heartbeats (AvailInfo events)', async () => {
  const infos: AvailInfo[] = [];
  const cluster = new JobCluster((x: number) => x, {
    nodes: [{ host: nodes[0]!.host, port: nodes[0]!.port }],
    secret: TEST_SECRET,
    pulseInterval: 0.2,
    clusterStatus: (status, node) => {
      if (status === DispyNode.AvailInfo && node?.availInfo) infos.push(node.availInfo);
    },
  });
  await until(() => infos.length >= 2, 5_000, 'two heartbeats');
  for (const i of infos) {
    assert.ok(i.cpu >= 0 && i.cpu <= 100);
    assert.ok(i.memory > 0);
    assert.ok(i.disk > 0);
    assert.ok(i.swap >= 0 && i.swap <= 100);
  }
  await cluster.close();
});

test('bad options are clear errors', () => {
  assert.throws(() => new JobCluster((x: number) => x, { pulseInterval: 0 }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /Expected `pulseInterval` to be seconds from 0.1 to 1000, got `0`/,
  });
  assert.throws(() => new JobCluster((x: number) => x, { nodes: [42 as never] }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /nodes\[0\]/,
  });
  assert.throws(() => new JobCluster(42 as never), { code: 'DISPY_ERR_INVALID_OPTION' });
  // A string is a program: one that is neither a file nor on PATH is a computation error.
  assert.throws(() => new JobCluster('not a function'), { code: 'DISPY_ERR_COMPUTATION' });
  assert.throws(() => new JobCluster((x: number) => x, { depends: ['./file.txt'] }), { code: 'DISPY_ERR_INVALID_OPTION' });
  assert.throws(() => new JobCluster(Math.max), { code: 'DISPY_ERR_COMPUTATION' });
});
