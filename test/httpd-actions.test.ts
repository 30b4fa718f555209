/**
 * The POST actions do what they say on the real cluster: /cancel_jobs kills running jobs (they
 * end Terminated, processes gone), /add_node adds a node that takes jobs, /set_cpus changes
 * scheduling at once, /allocate_node, /deallocate_node and /close_node act per cluster or on `*`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, DispyJob, DispyNode, type ClusterStatusEvent } from '../src/index.js';
import { TEST_SECRET, alive, startNodes, until, type TestNode } from './helpers/daemon.js';
import { post, request } from './helpers/http-client.js';
import { C, compute, startServer } from './helpers/httpd.js';

let nodes: TestNode[];
let dir: string;
before(async () => {
  nodes = await startNodes(3, { first: 94, cpus: 2, logLevel: 'warn' });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-httpd-actions-'));
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(dir, { recursive: true, force: true });
});

const spec = (n: TestNode) => ({ host: n.host, port: n.port });

/** Starts a child `sleep`, writes "jobPid childPid" to `file`, then waits forever. */
async function hang(file: string) {
  const { spawn } = require('node:child_process');
  const { writeFileSync } = require('node:fs');
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  writeFileSync(file, `${process.pid} ${child.pid}`);
  await new Promise(() => undefined);
}

/** Peak of running jobs per node, from the event stream. */
function peaks(cluster: JobCluster) {
  const running = new Map<string, number>();
  const peak = new Map<string, number>();
  cluster.on('status', (e: ClusterStatusEvent) => {
    const ip = e.node?.ipAddr;
    if (!ip || !e.job) return;
    if (e.status === DispyJob.Running) {
      running.set(ip, (running.get(ip) ?? 0) + 1);
      peak.set(ip, Math.max(peak.get(ip) ?? 0, running.get(ip)!));
    } else if (e.job.settled && e.status !== DispyJob.Cancelled) running.set(ip, (running.get(ip) ?? 1) - 1);
  });
  return { peak, reset: () => peak.clear() };
}

async function viewNode(base: string, cluster: string, ip: string): Promise<any> {
  return (await request(`${base}/cluster_status`))
    .json()
    .find((c: any) => c.name === cluster)
    ?.nodes.find((n: any) => n.ip_addr === ip);
}

test('/cancel_jobs kills the running jobs it names (repeated uid fields); they end Terminated, processes gone', async () => {
  const cluster = new JobCluster(hang, { nodes: [spec(nodes[0]!)], secret: TEST_SECRET });
  const { server, base } = await startServer(cluster);
  try {
    const files = [join(dir, 'a'), join(dir, 'b')];
    const jobs = files.map((f) => cluster.submit(f));
    await until(() => files.every((f) => existsSync(f) && readFileSync(f, 'utf8').includes(' ')), 10_000, 'both jobs running');
    const pids = files.flatMap((f) => readFileSync(f, 'utf8').split(' ').map(Number));
    assert.ok(pids.every(alive));
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.running === 2, 5_000, 'view: 2 running');
    const listed = (await post(base, '/node_info', { host: nodes[0]!.host })).json().cluster_jobs[cluster.name].map((j: any) => j.uid);
    assert.deepEqual([...listed].sort(), jobs.map((j) => j._uid).sort());

    const r = await post(base, '/cancel_jobs', { uid: [...listed, 'abc', 987654321, -3] });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.deepEqual([...r.json()].sort(), [...listed].sort());
    for (const j of jobs) {
      await assert.rejects(j.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
      assert.equal(j.status, DispyJob.Terminated);
    }
    await until(() => pids.every((p) => !alive(p)), 5_000, 'job processes and children gone');
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.failed === 2, 5_000, 'view: 2 failed');
    // Again: nothing running any more.
    assert.deepEqual((await post(base, '/cancel_jobs', { uid: listed })).json(), []);
    const none = await post(base, '/cancel_jobs', {});
    assert.equal(none.status, 400);
    assert.equal(none.json().error.code, 'DISPY_ERR_BAD_REQUEST');
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close({ terminate: true });
  }
});

test('/add_node allocates a node with its port and CPUs and it takes jobs; CPUs ignored for a wildcard, and said so', async () => {
  const [a, b] = nodes as [TestNode, TestNode];
  const cluster = new JobCluster(compute, { depends: [C], nodes: [spec(a)], secret: TEST_SECRET, name: 'grow' });
  const { server, base } = await startServer(cluster);
  try {
    await until(() => cluster.status().nodes.length === 1, 10_000, 'first node');
    const r = await post(base, '/add_node', { host: b.host, port: b.port, cpus: 1, cluster: 'grow', id: 'row-1' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    assert.deepEqual(r.json(), { host: b.host, port: b.port, cpus: 1, cluster: 'grow', id: 'row-1', cpus_ignored: false });
    await until(() => cluster.status().nodes.some((n) => n.ipAddr === b.host), 10_000, 'node added');
    assert.equal(cluster.status().nodes.find((n) => n.ipAddr === b.host)!.cpus, 1);
    const view = await viewNode(base, 'grow', b.host);
    assert.equal(view.cpus, 1);
    assert.equal(view.port, b.port);
    const jobs = Array.from({ length: 8 }, (_, i) => cluster.submit(new C(String(i), 1), 0.15));
    await Promise.all(jobs.map((j) => j.wait()));
    assert.ok(
      jobs.some((j) => j.ipAddr === b.host),
      'the added node ran jobs',
    );

    const wild = (await post(base, '/add_node', { host: '127.0.0.9*', cpus: 3, port: b.port })).json();
    assert.equal(wild.cpus_ignored, true);
    assert.match(wild.message, /wildcard/);
    assert.equal(wild.cluster, '');
    assert.equal((await post(base, '/add_node', { host: b.host, cluster: 'nosuch' })).status, 404);
    for (const bad of [
      {},
      { host: '' },
      { host: 'a b' },
      { host: b.host, port: 'x' },
      { host: b.host, port: 70000 },
      { host: b.host, cpus: '1.5' },
    ]) {
      const res = await post(base, '/add_node', bad as Record<string, string>);
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal(res.json().error.code, 'DISPY_ERR_BAD_REQUEST');
    }
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close();
  }
});

test('/set_cpus changes scheduling at once and answers the new CPUs; unknown nodes are left out', async () => {
  const [a] = nodes as [TestNode];
  const cluster = new JobCluster(compute, { depends: [C], nodes: [spec(a)], secret: TEST_SECRET });
  const p = peaks(cluster);
  const { server, base } = await startServer(cluster);
  try {
    await until(() => cluster.status().nodes.length === 1, 10_000, 'node');
    const r = await post(base, '/set_cpus', { [a.host]: 1, '127.0.0.250': 3 });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json(), { [a.host]: 1 });
    await until(async () => (await viewNode(base, cluster.name, a.host)).cpus === 1, 5_000, 'view shows 1 cpu');
    const one = Array.from({ length: 4 }, (_, i) => cluster.submit(new C(String(i), 1), 0.2));
    await Promise.all(one.map((j) => j.wait()));
    assert.equal(p.peak.get(a.host), 1, 'one job at a time');
    p.reset();
    assert.deepEqual((await post(base, '/set_cpus', { [a.host]: 2 })).json(), { [a.host]: 2 });
    const two = Array.from({ length: 4 }, (_, i) => cluster.submit(new C(String(i), 1), 0.3));
    await Promise.all(two.map((j) => j.wait()));
    assert.equal(p.peak.get(a.host), 2, 'two at a time again');
    assert.deepEqual((await post(base, '/set_cpus', { [a.host]: 99 })).json(), { [a.host]: 2 }, 'capped at what the node offers');
    assert.equal((await post(base, '/set_cpus', { [a.host]: 'many' })).status, 400);
    assert.deepEqual((await post(base, '/set_cpus', {})).json(), {});
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close();
  }
});

test('/allocate_node, /deallocate_node and /close_node act on the named cluster or on every one (*)', async () => {
  const [a, b] = nodes as [TestNode, TestNode];
  const alpha = new JobCluster(compute, { depends: [C], nodes: [spec(a), spec(b)], secret: TEST_SECRET, name: 'alpha' });
  const beta = new JobCluster(compute, { depends: [C], nodes: [spec(a), spec(b)], secret: TEST_SECRET, name: 'beta' });
  const { server, base } = await startServer(alpha);
  server.addCluster(beta);
  const status = async (cl: string) => (await viewNode(base, cl, b.host))?.status;
  try {
    await until(() => alpha.status().nodes.length === 2 && beta.status().nodes.length === 2, 10_000, 'both clusters on both nodes');
    const nodesField = JSON.stringify([b.host]);

    assert.equal((await post(base, '/deallocate_node', { cluster: 'alpha', nodes: nodesField })).body, '0');
    await until(async () => (await status('alpha')) === DispyNode.Closed, 5_000, 'alpha: b closed');
    assert.equal(await status('beta'), DispyNode.Initialized);
    const onA = Array.from({ length: 4 }, (_, i) => alpha.submit(new C(String(i), 1), 0.1));
    await Promise.all(onA.map((j) => j.wait()));
    assert.ok(
      onA.every((j) => j.ipAddr === a.host),
      'alpha no longer uses b',
    );

    assert.equal((await post(base, '/allocate_node', { cluster: 'alpha', nodes: nodesField })).body, '0');
    await until(async () => (await status('alpha')) === DispyNode.Initialized, 5_000, 'alpha: b back');

    assert.equal((await post(base, '/deallocate_node', { cluster: '*', nodes: nodesField })).body, '0');
    await until(
      async () => (await status('alpha')) === DispyNode.Closed && (await status('beta')) === DispyNode.Closed,
      5_000,
      'both: b closed',
    );
    assert.equal((await post(base, '/allocate_node', { cluster: '*', nodes: nodesField })).body, '0');
    await until(
      async () => (await status('alpha')) === DispyNode.Initialized && (await status('beta')) === DispyNode.Initialized,
      5_000,
      'both: b back',
    );

    // close_node with terminate=true kills beta's job running on b; alpha keeps b.
    const long = beta.submitNode(b.host, new C('long', 1), 30);
    await until(() => long.status === DispyJob.Running, 10_000, 'long job running');
    assert.equal((await post(base, '/close_node', { cluster: 'beta', nodes: nodesField, terminate: 'true' })).body, '0');
    await assert.rejects(long.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
    await until(async () => (await status('beta')) === DispyNode.Closed, 5_000, 'beta: b closed');
    assert.equal(await status('alpha'), DispyNode.Initialized);
    assert.ok(!beta.status().nodes.some((n) => n.ipAddr === b.host));

    assert.equal((await post(base, '/close_node', { cluster: 'nosuch', nodes: nodesField })).body, '-1');
    assert.equal((await post(base, '/close_node', { cluster: 'alpha', nodes: JSON.stringify(['127.0.0.250']) })).body, '-1');
    assert.equal(
      (await post(base, '/deallocate_node', { cluster: '*', nodes: JSON.stringify([a.host, '127.0.0.250']) })).body,
      '-1',
      'one failure makes -1',
    );
    for (const bad of [
      { cluster: 'alpha' },
      { cluster: 'alpha', nodes: '[' },
      { cluster: 'alpha', nodes: '{}' },
      { cluster: 'alpha', nodes: '[]' },
      { cluster: 'alpha', nodes: '[1]' },
    ] as Record<string, string>[]) {
      const r = await post(base, '/allocate_node', bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.equal(r.json().error.code, 'DISPY_ERR_BAD_REQUEST');
    }
  } finally {
    await server.shutdown({ wait: false });
    await Promise.all([alpha.close(), beta.close()]);
  }
});
