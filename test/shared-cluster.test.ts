/**
 * SharedJobCluster with the real `dispyts scheduler` and three real nodes: two client programs
 * share the nodes with correct results; an exclusive cluster waits until the others are done
 * and runs alone; a DispyHTTPServer in a client program shows that client's shared cluster.
 * Addresses 127.0.0.230-233 only.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyHTTPServer, DispyJob, SharedJobCluster, type DispyError } from '../src/index.js';
import { TEST_SECRET, startNode, until, within, type TestNode } from './helpers/daemon.js';
import { post, request } from './helpers/http-client.js';
import { startClient, startScheduler, type TestScheduler } from './helpers/scheduler-process.js';

const CLUSTER_SECRET = 'shared-cluster-test-cluster-secret';
const SCHED_HOST = '127.0.0.230';
const NODE_HOSTS = ['127.0.0.231', '127.0.0.232', '127.0.0.233'];

let nodes: TestNode[] = [];
let scheduler: TestScheduler;

before(async () => {
  nodes = await Promise.all(NODE_HOSTS.map((host) => startNode({ host, cpus: 2, logLevel: 'info' })));
  scheduler = await startScheduler({
    host: SCHED_HOST,
    nodes: nodes.map((n) => `${n.host}:${n.port}`),
    nodeSecret: TEST_SECRET,
    clusterSecret: CLUSTER_SECRET,
    logLevel: 'info',
  });
});

after(async () => {
  await scheduler?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
});

function client(name: string, extra: Record<string, unknown> = {}) {
  return startClient({
    schedulerHost: SCHED_HOST,
    schedulerPort: scheduler.port,
    secret: CLUSTER_SECRET,
    name,
    jobs: 12,
    ms: 150,
    ...extra,
  });
}

test('two client programs share three nodes, each getting its own correct results', async () => {
  const a = client('alpha');
  const b = client('beta');
  const [sa, sb] = await Promise.all([a.line((l) => l.event === 'summary'), b.line((l) => l.event === 'summary')]);
  for (const [s, c] of [
    [sa, a],
    [sb, b],
  ] as const) {
    assert.deepEqual(s.byStatus, { [DispyJob.Finished]: 12 }, c.log());
    assert.equal(s.wrong, 0);
  }
  // Both used the shared nodes, and between them all three.
  const used = new Set([...sa.ips, ...sb.ips]);
  assert.deepEqual([...used].sort(), NODE_HOSTS);
  // Each saw only its own jobs.
  for (const [c, name] of [
    [a, 'alpha'],
    [b, 'beta'],
  ] as const) {
    const ends = c.lines.filter((l) => l.event === 'end');
    assert.equal(ends.length, 12);
    assert.ok(ends.every((l) => String(l.id).startsWith(`${name}-`)));
    assert.equal(new Set(ends.map((l) => l.id)).size, 12, 'each job settled once');
  }
  await Promise.all([a.line((l) => l.event === 'closed'), b.line((l) => l.event === 'closed')]);
  assert.equal(await a.exited, 0);
  assert.equal(await b.exited, 0);
  assert.ok(!/"event":"error"/.test(JSON.stringify([...a.lines, ...b.lines])));
});

test('an exclusive cluster waits until the running one is done, and runs alone', async () => {
  const a = client('first', { jobs: 6, ms: 700 });
  await a.line((l) => l.event === 'running');
  const x = client('alone', { jobs: 6, ms: 300, exclusive: true });
  const submitted = await x.line((l) => l.event === 'submitted');
  assert.equal(submitted.scheduled, false, 'its jobs wait in the client');
  await x.line((l) => l.event === 'running');
  // A cluster that comes while the exclusive one runs waits for it in turn.
  const c = client('after', { jobs: 3, ms: 50 });
  const [sa, sx, sc] = await Promise.all([
    a.line((l) => l.event === 'summary'),
    x.line((l) => l.event === 'summary'),
    c.line((l) => l.event === 'summary'),
  ]);
  for (const s of [sa, sx, sc]) assert.equal(s.wrong, 0);
  assert.deepEqual(sx.byStatus, { [DispyJob.Finished]: 6 });
  assert.ok(sx.firstStart >= sa.lastEnd, `exclusive started ${sx.firstStart} before the other's last job ended ${sa.lastEnd}`);
  assert.ok(sc.firstStart >= sx.lastEnd, `a later cluster started ${sc.firstStart} while the exclusive one ran (until ${sx.lastEnd})`);
  await Promise.all([a.exited, x.exited, c.exited]);
});

test("DispyHTTPServer(sharedCluster) shows that client's jobs, shared: true; adding a node ignores CPUs", async () => {
  // The jobs run until the test creates the release file: what the page shows of running jobs
  // does not depend on how loaded the machine is.
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-shared-httpd-'));
  const release = join(dir, 'release');
  const cluster = new SharedJobCluster(
    async (ms: number, waitFor: string) => {
      const { existsSync } = require('node:fs');
      // Bounded: a test that never releases it fails on its own timeout, not a job that runs on.
      for (let i = 0; i < 6000 && !existsSync(waitFor); i++) await new Promise((r) => setTimeout(r, 10));
      return ms;
    },
    // From its own address (`host`): the scheduler names the cluster after it.
    {
      schedulerHost: SCHED_HOST,
      schedulerPort: scheduler.port,
      secret: CLUSTER_SECRET,
      name: 'watched',
      nodes: [NODE_HOSTS[0]!, NODE_HOSTS[1]!],
      host: SCHED_HOST,
      logLevel: 'warn',
    },
  );
  const errors: DispyError[] = [];
  cluster.on('error', (e) => errors.push(e));
  const server = new DispyHTTPServer(cluster, { host: SCHED_HOST, port: 0, pollSec: 1, logLevel: 'warn' });
  try {
    const base = (await server.listening).url;
    const jobs = [0, 1, 2, 3].map((i) => cluster.submitJobId(`w${i}`, 1500, release));
    await until(async () => (await request(`${base}/cluster_status`)).json()[0]?.jobs.running === 4, 15_000, 'four jobs running');
    const st = (await request(`${base}/cluster_status`)).json();
    assert.equal(st.length, 1);
    assert.equal(st[0].name, 'watched');
    assert.equal(st[0].shared, true);
    assert.deepEqual(st[0].jobs, { submitted: 4, done: 0, queued: 0, running: 4, failed: 0 });
    const ips = st[0].nodes.map((n: { ip_addr: string }) => n.ip_addr).sort();
    assert.deepEqual(ips, [NODE_HOSTS[0], NODE_HOSTS[1]]);
    for (const n of st[0].nodes) assert.equal(n.cpus, 2);
    const info = (await post(base, '/node_info', { host: NODE_HOSTS[0]! })).json();
    assert.equal(info.cluster_jobs.watched.length, 2);
    assert.match(info.cluster_jobs.watched[0].job_id, /^w\d$/);
    // The third node, added from the Manage page with CPUs: they are ignored, and the answer says so.
    const added = (await post(base, '/add_node', { host: nodes[2]!.host, port: nodes[2]!.port, cpus: 1, cluster: 'watched' })).json();
    assert.equal(added.cpus_ignored, true);
    assert.match(added.message, /SharedJobCluster/);
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].nodes.length === 3, 15_000, 'third node added');
    const third = (await request(`${base}/cluster_status`)).json()[0].nodes.find((n: { ip_addr: string }) => n.ip_addr === NODE_HOSTS[2]);
    assert.equal(third.cpus, 2, 'all its CPUs (the 1 given was ignored)');
    // setNodeCpus: refused for a non-exclusive cluster of a non-cooperative scheduler.
    assert.equal(await cluster.setNodeCpus(NODE_HOSTS[0]!, 1), -1);
    const set = (await post(base, '/set_cpus', { [NODE_HOSTS[0]!]: '1' })).json();
    assert.equal(set[NODE_HOSTS[0]!], -1);
    assert.deepEqual((await cluster.nodeJobs(NODE_HOSTS[0]!, { fromNode: true })).length, 2);
    writeFileSync(release, '');
    assert.deepEqual(await Promise.all(jobs.map((j) => j.wait())), [1500, 1500, 1500, 1500]);
    assert.ok(await within(cluster.wait(), 10_000, 'wait'));
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.done === 4, 10_000, 'done shown');
    assert.deepEqual((await request(`${base}/cluster_status`)).json()[0].jobs, { submitted: 4, done: 4, queued: 0, running: 0, failed: 0 });
    assert.equal(cluster.schedulerName, `watched @ ${SCHED_HOST}`);
    assert.deepEqual(errors, []);
  } finally {
    writeFileSync(release, '');
    await cluster.close({ terminate: true });
    await server.shutdown({ wait: false });
    rmSync(dir, { recursive: true, force: true });
  }
});

test("per-job files go through the scheduler to the job's node; the scheduler keeps them only while the job lasts", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-shared-files-'));
  const cluster = new SharedJobCluster(
    async (name: string) => {
      const fs = require('node:fs');
      return fs.readFileSync(name, 'utf8');
    },
    { schedulerHost: SCHED_HOST, schedulerPort: scheduler.port, secret: CLUSTER_SECRET, name: 'files', logLevel: 'silent' },
  );
  try {
    // Different sizes (one over a transfer chunk), each job its own file.
    const contents = [0, 1, 2, 3, 4, 5].map((i) => `file ${i} `.repeat(1 + i * 40_000));
    const paths = contents.map((c, i) => {
      const p = join(dir, `in-${i}.txt`);
      writeFileSync(p, c);
      return p;
    });
    const jobs = paths.map((p, i) => cluster.submitWith({ depends: [p], id: i }, `in-${i}.txt`));
    const results = await within(Promise.all(jobs.map((j) => j.wait())), 30_000, 'jobs');
    assert.deepEqual(results, contents);
    // Kept on the scheduler per job, and gone with the job.
    const staged = join(scheduler.prefix, SCHED_HOST, 'computations', cluster.computeId!, '.jobs');
    assert.ok(
      existsSync(join(scheduler.prefix, SCHED_HOST, 'computations', cluster.computeId!)),
      "the computation's folder on the scheduler",
    );
    await until(() => !existsSync(staged) || readdirSync(staged).length === 0, 5_000, 'per-job files gone from the scheduler');

    // Bad input: a missing file is an error at submit; a file gone before it was sent ends its
    // job Cancelled, saying why; the jobs after it run.
    assert.throws(
      () => cluster.submitWith({ depends: [join(dir, 'missing.txt')] }, 'missing.txt'),
      (err: DispyError) => err.code === 'DISPY_ERR_INVALID_OPTION' && /no such file/.test(err.message),
    );
    const doomedPath = join(dir, 'doomed.txt');
    writeFileSync(doomedPath, 'x');
    const doomed = cluster.submitWith({ depends: [doomedPath] }, 'doomed.txt');
    rmSync(doomedPath);
    const after = cluster.submitWith({ depends: [paths[1]!] }, 'in-1.txt');
    await assert.rejects(
      within(doomed.wait(), 10_000, 'doomed job'),
      (err: DispyError) => err.code === 'DISPY_ERR_JOB_CANCELLED' && /sending its file failed: DISPY_ERR_NOT_FOUND/.test(err.message),
    );
    assert.equal(await within(after.wait(), 10_000, 'job after it'), contents[1]);
  } finally {
    await cluster.close({ terminate: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a wrong cluster secret: DISPY_ERR_AUTH naming the scheduler, for the jobs, the calls and the error event', async () => {
  const cluster = new SharedJobCluster((x: number) => x, {
    schedulerHost: SCHED_HOST,
    schedulerPort: scheduler.port,
    secret: 'not-the-cluster-secret',
    logLevel: 'silent',
  });
  const errors: DispyError[] = [];
  cluster.on('error', (e) => errors.push(e));
  const job = cluster.submit(1);
  await assert.rejects(
    within(job.wait(), 10_000, 'job'),
    (err: DispyError) => err.code === 'DISPY_ERR_JOB_ABANDONED' && err.message.includes(`scheduler ${SCHED_HOST}:${scheduler.port}`),
  );
  await assert.rejects(within(cluster.allocateNode(NODE_HOSTS[0]!), 1000, 'call'), (err: DispyError) => err.code === 'DISPY_ERR_AUTH');
  await until(() => errors.length, 5000, 'error event');
  assert.equal(errors[0]!.code, 'DISPY_ERR_AUTH');
  assert.match(errors[0]!.message, new RegExp(`^scheduler ${SCHED_HOST.replace(/\./g, '\\.')}:${scheduler.port}: `));
  assert.equal(await cluster.close(), true);
});
