/**
 * closeNode / resetupNode without terminatePending never drop running jobs, however long they
 * run (the request timeout is shortened to 2 s here, test-only): closeNode resolves at once and
 * the running job finishes there, once; resetupNode resolves once the new setup ran, after the
 * running job ended, with jobs pinned meanwhile waiting for it, and setup reads the new files by
 * their relative names in the new directory. Real daemons on 127.0.0.122 and 127.0.0.123.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyJob, DispyNode, JobCluster, NodeAllocate } from '../src/index.js';
import { TEST_SECRET, startNodes, until, within, type TestNode } from './helpers/daemon.js';

// Shorter than every long job here, long enough for a setup on a loaded machine (fresh runners
// start for it): at 1 s, CI once saw resetupNode's setup itself time out.
process.env.DISPYTS_TEST_REQUEST_TIMEOUT = '2';

let nodes: TestNode[] = [];
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dispyts-node-ops-'));
  nodes = await startNodes(2, { first: 122, cpus: 1, logLevel: 'info' });
});

after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function sleepFor(ms: number, tag: number) {
  await new Promise((r) => setTimeout(r, ms));
  return tag;
}

/** Running events per job id, and the nodes' Initialized/Closed events. */
function track(cluster: JobCluster) {
  const starts = new Map<unknown, string[]>();
  const nodeEvents: [number, string][] = [];
  cluster.on('status', (e) => {
    if (e.status === DispyJob.Running && e.job) starts.set(e.job.id, [...(starts.get(e.job.id) ?? []), e.node!.ipAddr]);
    if ((e.status === DispyNode.Initialized || e.status === DispyNode.Closed) && e.node) nodeEvents.push([e.status, e.node.ipAddr]);
  });
  return { starts, nodeEvents };
}

test('closeNode returns at once; the job running there (longer than the request timeout) finishes there, once', async () => {
  const cluster = new JobCluster(sleepFor, {
    nodes: nodes.map((n) => ({ host: n.host, port: n.port })),
    secret: TEST_SECRET,
    reentrant: true,
  });
  const t = track(cluster);
  try {
    await until(() => cluster.status().nodes.length === 2, 15_000, 'both nodes');
    const long = cluster.submit(3000, 1);
    await until(() => t.starts.has(long.id), 10_000, 'the long job to run');
    const where = t.starts.get(long.id)![0]!;
    const t0 = Date.now();
    assert.equal(await cluster.closeNode(where), 0);
    const took = Date.now() - t0;
    assert.ok(took < 500, `closeNode returned in ${took} ms`);
    await until(() => t.nodeEvents.some(([s, ip]) => s === DispyNode.Closed && ip === where), 2_000, 'Closed for the node');
    assert.ok(!cluster.status().nodes.some((n) => n.ipAddr === where), 'no longer offered jobs');
    // New jobs go to the other node meanwhile.
    const others = [10, 11].map((x) => cluster.submit(50, x));
    assert.deepEqual(await within(Promise.all(others.map((j) => j.wait())), 10_000, 'jobs on the other node'), [10, 11]);
    assert.ok(others.every((j) => j.ipAddr !== where));
    assert.equal(await within(long.wait(), 10_000, 'the long job'), 1);
    assert.equal(long.status, DispyJob.Finished);
    assert.equal(long.ipAddr, where);
    assert.deepEqual(t.starts.get(long.id), [where], 'it ran once, there');
    assert.equal(t.nodeEvents.filter(([s, ip]) => s === DispyNode.Closed && ip === where).length, 1, 'one Closed');
  } finally {
    await cluster.close({ terminate: true });
  }
});

/** Picks the next generation of `data.txt` for each setup (dispy's replace_inmem pattern). */
class NextData extends NodeAllocate {
  generation = 0;
  root = '';
  override allocate(cluster: unknown, ipAddr: string, name: string, cpus: number): number {
    this.generation++;
    this.depends = [join(this.root, `gen-${this.generation}`, 'data.txt')];
    return super.allocate(cluster, ipAddr, name, cpus);
  }
}

test('resetupNode waits for the running job, runs the new setup in the new directory, and jobs queued meanwhile see it', async () => {
  for (const g of [1, 2]) {
    mkdirSync(join(dir, `gen-${g}`), { recursive: true });
    writeFileSync(join(dir, `gen-${g}`, 'data.txt'), `generation ${g}`);
  }
  const node = nodes[0]!;
  const spec = new NextData(node.host, node.port);
  spec.root = dir;
  const cluster = new JobCluster(
    async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return (globalThis as unknown as { data: string }).data;
    },
    {
      nodes: [spec],
      secret: TEST_SECRET,
      // Reads the file it was sent by its relative name, in the computation's directory.
      setup: () => {
        (globalThis as unknown as { data: string }).data = require('node:fs').readFileSync('data.txt', 'utf8');
      },
    },
  );
  const t = track(cluster);
  const errors: string[] = [];
  cluster.on('error', (e) => errors.push(`${e.code}: ${e.message}`));
  try {
    assert.equal(await within(cluster.submit(0).wait(), 15_000, 'the first job'), 'generation 1');
    const long = cluster.submit(4000);
    await until(() => t.starts.has(long.id), 10_000, 'the long job to run');
    const t0 = Date.now();
    const resetup = cluster.resetupNode(node.host);
    // Queued meanwhile: waits for the new setup.
    const queued = cluster.submitNode(node.host, 0);
    assert.equal(await within(resetup, 15_000, 'resetupNode'), 0, errors.join('; '));
    assert.ok(Date.now() - t0 >= 1500, 'resolved once the running job ended');
    assert.equal(long.status, DispyJob.Finished, 'the running job was not dropped');
    assert.equal(long.result, 'generation 1');
    assert.equal(t.starts.get(long.id)?.length, 1, 'it ran once');
    assert.equal(await within(queued.wait(), 10_000, 'the job queued during resetup'), 'generation 2');
    assert.equal(await cluster.submit(0).wait(), 'generation 2');
    assert.deepEqual(errors, []);
  } finally {
    await cluster.close({ terminate: true });
  }
});
