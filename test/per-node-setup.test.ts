/**
 * Per-node setup (`nodeSetup`): it runs once per node, in one runner, before any runner loads
 * the computation, even with 2 runners; its value reaches every runner's `setup` (and each
 * job's process under `isolate: 'job'`); a nodeSetup that deletes the file it read works for
 * all runners (dispy's replace_inmem); resetupNode runs it again; a failing one closes the
 * computation on the node. Addresses 127.0.0.72 only.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyNode, JobCluster, NodeAllocate, type DispyError } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';

declare const perNode: { data: string; setupPid: number; nodeSetupPid: number };

let node: TestNode;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.72', cpus: 2 });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-node-setup-'));
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Reads the data file shipped to the node, deletes it, counts its runs in `counter`. */
function nodeSetup(dataFile: string, counter: string) {
  const fs = require('node:fs');
  fs.appendFileSync(counter, `${process.pid}\n`);
  const data = fs.readFileSync(dataFile, 'utf8');
  fs.rmSync(dataFile);
  return { data, pid: process.pid };
}
function setup(value: { data: string; pid: number }, _dataFile: string, counter: string) {
  (globalThis as Record<string, unknown>).perNode = { data: value.data, setupPid: process.pid, nodeSetupPid: value.pid };
  require('node:fs').appendFileSync(`${counter}.setup`, `${process.pid}\n`);
}
async function compute(ms: number) {
  await new Promise((r) => setTimeout(r, ms));
  return [perNode.data, perNode.setupPid, perNode.nodeSetupPid, require('node:fs').existsSync('data.txt')];
}

const lines = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean) : []);

test('nodeSetup runs once per node with 2 runners, deletes its file, and its value reaches every runner; resetupNode runs it again', async () => {
  const data = join(dir, 'data.txt');
  writeFileSync(data, 'first data set');
  const counter = join(dir, 'count-a');
  const cluster = new JobCluster(compute, {
    nodes: [new NodeAllocate(node.host, node.port, 0, { depends: [data], setupArgs: ['data.txt', counter] })],
    secret: TEST_SECRET,
    nodeSetup,
    setup,
  });
  const results = await Promise.all(Array.from({ length: 6 }, () => cluster.submit(200).wait()));
  assert.equal(lines(counter).length, 1, 'nodeSetup ran once on the node');
  const setups = lines(`${counter}.setup`);
  assert.equal(setups.length, 2, 'setup ran in each of the 2 runners');
  for (const [d, setupPid, nodeSetupPid, fileThere] of results as [string, number, number, boolean][]) {
    assert.equal(d, 'first data set', 'every runner has the data nodeSetup read');
    assert.equal(nodeSetupPid, Number(lines(counter)[0]));
    assert.ok(setups.includes(String(setupPid)));
    assert.equal(fileThere, false, 'the file nodeSetup deleted is gone for every runner');
  }
  assert.equal(new Set(results.map((r) => (r as number[])[1])).size, 2, 'both runners ran jobs');

  // As in dispy's replace_inmem: a new data set, and resetupNode.
  writeFileSync(data, 'second data set');
  assert.equal(await cluster.resetupNode(node.host), 0);
  const again = await Promise.all(Array.from({ length: 4 }, () => cluster.submit(100).wait()));
  assert.equal(lines(counter).length, 2, 'resetupNode ran nodeSetup once more');
  for (const r of again as [string][]) assert.equal(r[0], 'second data set');
  await cluster.close();
});

test("under isolate: 'job', nodeSetup runs once and each job's process gets its value", async () => {
  const counter = join(dir, 'count-b');
  const cluster = new JobCluster(() => [perNode.data, process.pid], {
    nodes: [new NodeAllocate(node.host, node.port, 0, { setupArgs: [counter] })],
    secret: TEST_SECRET,
    isolate: 'job',
    nodeSetup: (c: string) => {
      require('node:fs').appendFileSync(c, `${process.pid}\n`);
      return `node value ${process.pid}`;
    },
    setup: (value: string) => {
      (globalThis as Record<string, unknown>).perNode = { data: value };
    },
  });
  const results = (await Promise.all(Array.from({ length: 3 }, () => cluster.submit().wait()))) as [string, number][];
  await cluster.close();
  const ran = lines(counter);
  assert.equal(ran.length, 1);
  for (const [value] of results) assert.equal(value, `node value ${ran[0]}`);
  assert.equal(new Set(results.map((r) => r[1])).size, 3, 'each job in its own process');
});

test('a failing nodeSetup closes the computation on the node like a failing setup, and the node serves the next program', async () => {
  const errors: DispyError[] = [];
  const closed: string[] = [];
  const cluster = new JobCluster((x: number) => x, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    nodeSetup: () => {
      throw new Error('the data set is missing');
    },
    clusterStatus: (status, n) => {
      if (status === DispyNode.Closed && n) closed.push(n.ipAddr);
    },
  });
  cluster.on('error', (e) => errors.push(e));
  const job = cluster.submit(1);
  await until(() => errors.length > 0 && closed.length > 0, 10_000, 'the nodeSetup failure');
  assert.equal(errors[0]!.code, 'DISPY_ERR_SETUP');
  assert.match(errors[0]!.message, /nodeSetup failed: Error: the data set is missing/);
  await cluster.close({ terminate: true });
  await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_CANCELLED' });
  const next = new JobCluster((x: number) => x + 1, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET });
  assert.equal(await next.submit(1).wait(), 2);
  await next.close();
});
