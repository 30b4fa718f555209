/** Managing nodes at run time: allocate, deallocate, close, resetup, set CPUs, list jobs. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, DispyJob, DispyNode, NodeAllocate, type ClusterStatusEvent } from '../src/index.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';

let nodes: TestNode[];
let a: { host: string; port: number };
let b: { host: string; port: number };
before(async () => {
  nodes = await startNodes(2, { first: 83, cpus: 2 });
  a = { host: nodes[0]!.host, port: nodes[0]!.port };
  b = { host: nodes[1]!.host, port: nodes[1]!.port };
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

const work = async (ms: number) => {
  await new Promise((r) => setTimeout(r, ms));
  return ms;
};

/** Tracks running jobs per node from the event stream. */
function tracker(cluster: JobCluster) {
  const events: ClusterStatusEvent[] = [];
  const running = new Map<string, number>();
  const peak = new Map<string, number>();
  cluster.on('status', (e) => {
    events.push(e);
    const ip = e.node?.ipAddr;
    if (!ip || !e.job) return;
    if (e.status === DispyJob.Running) {
      running.set(ip, (running.get(ip) ?? 0) + 1);
      peak.set(ip, Math.max(peak.get(ip) ?? 0, running.get(ip)!));
    } else if (e.job.settled && e.status !== DispyJob.Cancelled) running.set(ip, running.get(ip)! - 1);
  });
  return { events, running, peak };
}

test('allocateNode adds a node that takes jobs; deallocateNode stops it taking more; allocate again', async () => {
  const cluster = new JobCluster(work, { nodes: [a], secret: TEST_SECRET });
  const t = tracker(cluster);
  await until(() => cluster.status().nodes.length === 1, 10_000, 'node a');
  assert.equal(await cluster.allocateNode(b), 0);
  assert.deepEqual(
    cluster
      .status()
      .nodes.map((n) => n.ipAddr)
      .sort(),
    [a.host, b.host],
  );
  const first = Array.from({ length: 8 }, () => cluster.submit(100));
  await Promise.all(first.map((j) => j.wait()));
  assert.ok(
    first.some((j) => j.ipAddr === b.host),
    'the allocated node ran jobs',
  );

  assert.equal(await cluster.deallocateNode(b.host), 0);
  await until(() => t.events.some((e) => e.status === DispyNode.Closed && e.node?.ipAddr === b.host), 5_000, 'Closed for b');
  const second = Array.from({ length: 6 }, () => cluster.submit(50));
  await Promise.all(second.map((j) => j.wait()));
  assert.ok(
    second.every((j) => j.ipAddr === a.host),
    'no job on a deallocated node',
  );
  assert.equal(await cluster.deallocateNode('127.0.0.99'), -1);

  assert.equal(await cluster.allocateNode(b.host), 0);
  await until(
    () => t.events.filter((e) => e.status === DispyNode.Initialized && e.node?.ipAddr === b.host).length === 2,
    5_000,
    'b initialized again',
  );
  await cluster.close();
});

test('setNodeCpus caps running jobs at once and raising it starts more; AvailInfo fires', async () => {
  const cluster = new JobCluster(work, { nodes: [a], secret: TEST_SECRET });
  const t = tracker(cluster);
  await until(() => cluster.status().nodes.length === 1, 10_000, 'node a');
  assert.equal(await cluster.setNodeCpus(a.host, 1), 1);
  assert.ok(
    t.events.some((e) => e.status === DispyNode.AvailInfo) ||
      (await until(() => t.events.some((e) => e.status === DispyNode.AvailInfo), 2_000, 'AvailInfo')),
  );
  assert.equal(cluster.status().nodes[0]!.cpus, 1);
  const capped = Array.from({ length: 4 }, () => cluster.submit(150));
  await Promise.all(capped.map((j) => j.wait()));
  assert.equal(t.peak.get(a.host), 1, 'one job at a time with cpus 1');

  const more = Array.from({ length: 6 }, () => cluster.submit(400));
  await until(() => t.running.get(a.host) === 1, 5_000, 'one running');
  assert.equal(await cluster.setNodeCpus(a.host, -0), 0);
  assert.equal(await cluster.setNodeCpus(a.host, 2), 2);
  await until(() => t.running.get(a.host) === 2, 5_000, 'two running after raising cpus');
  assert.equal(await cluster.setNodeCpus(a.host, -1), 1, 'negative leaves that many unused');
  assert.equal(await cluster.setNodeCpus(a.host, -3), -1);
  assert.equal(await cluster.setNodeCpus(a.host, 99), 2, 'at most what the node offers');
  await Promise.all(more.map((j) => j.wait()));
  await cluster.close();
});

test('lowering cpus below busy lets running jobs finish and starts no more', async () => {
  const cluster = new JobCluster(work, { nodes: [a], secret: TEST_SECRET });
  const t = tracker(cluster);
  await until(() => cluster.status().nodes.length === 1, 10_000, 'node a');
  const jobs = Array.from({ length: 6 }, () => cluster.submit(600));
  await until(() => t.running.get(a.host) === 2, 5_000, 'two running');
  assert.equal(await cluster.setNodeCpus(a.host, 0), 0);
  const runningNow = jobs.filter((j) => j.status === DispyJob.Running);
  assert.equal(runningNow.length, 2);
  await Promise.all(runningNow.map((j) => j.wait()));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(jobs.filter((j) => j.status === DispyJob.Running).length, 0, 'nothing new started at cpus 0');
  assert.equal(jobs.filter((j) => j.status === DispyJob.Created).length, 4);
  assert.deepEqual(await cluster.nodeJobs(a.host), []);
  assert.equal(await cluster.setNodeCpus(a.host, 2), 2);
  const listed = await until(
    async () => {
      const l = await cluster.nodeJobs(a.host);
      return l.length === 2 ? l : null;
    },
    5_000,
    'two jobs listed',
  );
  assert.ok(listed!.every((j) => j.status === DispyJob.Running));
  const fromNode = await cluster.nodeJobs(a.host, { fromNode: true });
  assert.deepEqual(fromNode.map((j) => j.id).sort(), listed!.map((j) => j.id).sort());
  await Promise.all(jobs.map((j) => j.wait()));
  await cluster.close();
});

test('closeNode hands back jobs that had not started (they run elsewhere); resetupNode runs setup again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-resetup-'));
  try {
    const cluster = new JobCluster(work, {
      nodes: [a, b].map((n) => new NodeAllocate(n.host, n.port, 0, { setupArgs: [dir, n.host] })),
      secret: TEST_SECRET,
      setup: (where: string, host: string) => {
        require('node:fs').writeFileSync(`${where}/${host}-${process.pid}-${Math.random()}`, '');
      },
    });
    const t = tracker(cluster);
    await until(() => cluster.status().nodes.length === 2, 10_000, 'two nodes');
    const jobs = Array.from({ length: 12 }, () => cluster.submit(300));
    await until(() => (t.running.get(a.host) ?? 0) === 2, 5_000, 'a busy');
    assert.equal(await cluster.closeNode(a.host), 0);
    await until(() => t.events.some((e) => e.status === DispyNode.Closed && e.node?.ipAddr === a.host), 5_000, 'Closed for a');
    await Promise.all(jobs.map((j) => j.wait()));
    const onA = jobs.filter((j) => j.ipAddr === a.host).length;
    assert.ok(onA <= 4, `a ran only what it had started (${onA})`);
    assert.ok(jobs.every((j) => j.status === DispyJob.Finished));
    assert.equal(await cluster.closeNode('127.0.0.99'), -1);

    const setupsOnB = () => readdirSync(dir).filter((f) => f.startsWith(`${b.host}-`)).length;
    assert.equal(setupsOnB(), 2, 'setup ran in both runners of b');
    assert.equal(await cluster.resetupNode(b.host), 0);
    assert.equal(setupsOnB(), 4, 'and again after resetupNode');
    await until(
      () => t.events.filter((e) => e.status === DispyNode.Initialized && e.node?.ipAddr === b.host).length === 2,
      5_000,
      'b set up again',
    );
    assert.equal(await cluster.submit(10).wait(), 10);
    await cluster.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
