/**
 * SharedJobCluster against a scripted scheduler (test/helpers/fake-scheduler.ts): the set-up
 * sequence, relayed job and node events, an exclusive cluster held until admitted, and every
 * fault (scheduler lost, silent, closing the cluster, wrong secret, not a scheduler) ending each
 * job and call with a DISPY_ERR_* error, never a hang. Addresses 127.0.0.242-249 only (the others are labels, never bound).
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DispyHTTPServer,
  DispyJob,
  DispyJobError,
  DispyNode,
  SharedJobCluster,
  type ClusterStatusEvent,
  type DispyError,
  type ViewedCluster,
} from '../src/index.js';
import { PayloadCodec } from '../src/protocol/payload.js';
import { FakeScheduler, nodeView, type Conn, type Job } from './helpers/fake-scheduler.js';
import { post, request } from './helpers/http-client.js';
import { until, within } from './helpers/daemon.js';

const SECRET = 'shared-protocol-test-secret-0123';
const codec = new PayloadCodec();
const double = (x: number) => x * 2;

// Type-level: both cluster classes are what DispyHTTPServer shows.
const viewed: (c: SharedJobCluster) => ViewedCluster = (c) => c;
void viewed;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function fake(host: string, opts: Partial<ConstructorParameters<typeof FakeScheduler>[0]> = {}): Promise<FakeScheduler> {
  const f = new FakeScheduler({ host, secret: SECRET, ...opts });
  await f.listen();
  cleanups.push(() => f.close());
  return f;
}

function cluster<Fn extends (...a: any[]) => unknown>(
  f: FakeScheduler,
  fn: Fn,
  opts: ConstructorParameters<typeof SharedJobCluster>[1] = {},
): SharedJobCluster<Fn> {
  const c = new SharedJobCluster(fn, { schedulerHost: f.host, schedulerPort: f.port, secret: SECRET, logLevel: 'silent', ...opts });
  cleanups.push(() => c.close({ terminate: true }));
  return c;
}

/** Runs a job on `ip` as a scheduler would report it: Running, then Finished with x * 2. */
function runJob(conn: Conn, job: Job, ip: string): void {
  const [x] = codec.decode(job.args) as [number];
  const start = Date.now();
  conn.send({ t: 'job-status', uid: job.uid, status: DispyJob.Running, ip, startTime: start });
  conn.send({
    t: 'job-end',
    uid: job.uid,
    status: DispyJob.Finished,
    result: codec.encode(x * 2),
    exception: null,
    code: null,
    stdout: `out ${x}`,
    stderr: '',
    ip,
    startTime: start,
    endTime: start + 5,
  });
}

test('set-up, relayed job and node events in order, results, close', async () => {
  const ip = '127.0.0.241';
  let initialized = false;
  const f = await fake('127.0.0.248', {
    onJob: (conn, job) => {
      if (!initialized) {
        initialized = true;
        conn.send({ t: 'node-status', computeId: job.computeId, status: DispyNode.Initialized, node: nodeView(ip) });
      }
      runJob(conn, job, ip);
    },
  });
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-shared-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const dep = join(dir, 'table.txt');
  writeFileSync(dep, 'x'.repeat(3000));
  const events: [number, unknown, string | null][] = [];
  const jobStatuses: [unknown, number][] = [];
  let inCallback = false;
  const c = cluster(f, double, {
    depends: [dep],
    name: 'doubler',
    clusterStatus: (status, node, job) => {
      assert.equal(inCallback, false, 'callbacks are never re-entered');
      inCallback = true;
      events.push([status, job?.id ?? null, node?.ipAddr ?? null]);
      inCallback = false;
    },
    jobStatus: (job) => jobStatuses.push([job.id, job.status]),
  });
  const seen: ClusterStatusEvent<SharedJobCluster>[] = [];
  c.on('status', (e) => seen.push(e));
  const jobs = [1, 2, 3].map((x) => {
    const j = c.submit(x);
    j.id = `job-${x}`;
    return j;
  });
  assert.deepEqual(await Promise.all(jobs.map((j) => j.wait())), [2, 4, 6]);
  assert.equal(jobs[0]!.stdout, 'out 1');
  assert.equal(jobs[0]!.ipAddr, ip);
  assert.ok(await c.wait(5));
  // The set-up: compute (with the file named), the file, schedule, then the jobs with their ids.
  const kinds = f.received.map((m) => m.t).filter((t) => t !== 'beat');
  assert.deepEqual(kinds.slice(0, 2), ['compute', 'file-begin']);
  const compute = f.received.find((m) => m.t === 'compute') as Extract<(typeof f.received)[number], { t: 'compute' }>;
  assert.equal(compute.name, 'doubler');
  assert.deepEqual(compute.files, ['table.txt']);
  assert.equal(compute.computation.kind, 'function');
  assert.ok(kinds.indexOf('schedule') > kinds.lastIndexOf('file-chunk'));
  assert.deepEqual(
    f.jobs.map((j) => j.tag),
    ['job-1', 'job-2', 'job-3'],
  );
  assert.equal(c.computeId, 'fake-1');
  assert.equal(c.schedulerName, 'doubler @ fake');
  assert.deepEqual(c.schedulerInfo, { name: 'fake-scheduler', policy: 'fsfs', cooperative: false, pulseInterval: 1 });
  assert.ok(f.received.some((m) => m.t === 'beat'));
  // The node as this cluster sees it.
  const st = c.status();
  assert.equal(st.jobsPending, 0);
  assert.equal(st.nodes.length, 1);
  const node = st.nodes[0]!;
  assert.equal(node.ipAddr, ip);
  assert.equal(node.name, `node-${ip}`);
  assert.equal(node.busy, 0);
  assert.equal(node.jobsDone, 3);
  assert.equal(node.cluster, c);
  assert.ok(await c.close());
  assert.equal(c.closed, true);
  assert.ok(f.received.some((m) => m.t === 'close'));
  const C = DispyJob.Created;
  const R = DispyJob.Running;
  const F = DispyJob.Finished;
  assert.deepEqual(events, [
    [C, 'job-1', null],
    [C, 'job-2', null],
    [C, 'job-3', null],
    [DispyNode.Initialized, null, ip],
    [R, 'job-1', ip],
    [F, 'job-1', ip],
    [R, 'job-2', ip],
    [F, 'job-2', ip],
    [R, 'job-3', ip],
    [F, 'job-3', ip],
    [DispyNode.Closed, null, ip],
  ]);
  assert.deepEqual(jobStatuses, [
    ['job-1', F],
    ['job-2', F],
    ['job-3', F],
  ]);
  assert.deepEqual(
    seen.map((e) => e.id),
    seen.map((_, i) => i + 1),
  );
  assert.ok(seen.every((e) => e.cluster === c));
  assert.throws(
    () => c.submit(4),
    (err: DispyError) => err.code === 'DISPY_ERR_CLUSTER_CLOSED',
  );
});

test('a reentrant re-run after a node died: Created with the dead node, Running elsewhere, one final status', async () => {
  const [a, b] = ['127.0.0.243', '127.0.0.244'];
  const f = await fake('127.0.0.242', {
    onJob: (conn, job) => {
      conn.send({ t: 'node-status', computeId: job.computeId, status: DispyNode.Initialized, node: nodeView(a) });
      conn.send({ t: 'job-status', uid: job.uid, status: DispyJob.Running, ip: a, startTime: Date.now() });
      conn.send({ t: 'job-status', uid: job.uid, status: DispyJob.Created, ip: a, startTime: null });
      conn.send({ t: 'node-status', computeId: job.computeId, status: DispyNode.Closed, node: nodeView(a) });
      runJob(conn, job, b);
      // A duplicate end (late reply) is ignored.
      runJob(conn, job, b);
    },
  });
  const events: [number, string | null][] = [];
  const c = cluster(f, double, { reentrant: true, clusterStatus: (s, n, j) => j && events.push([s, n?.ipAddr ?? null]) });
  const j = c.submit(21);
  assert.equal(await j.wait(), 42);
  assert.ok(await c.wait(5));
  assert.deepEqual(events, [
    [DispyJob.Created, null],
    [DispyJob.Running, a],
    [DispyJob.Created, a],
    [DispyJob.Running, b],
    [DispyJob.Finished, b],
  ]);
  assert.equal(j.ipAddr, b);
  const nodes = c.status().nodes.map((n) => [n.ipAddr, n.busy]);
  assert.deepEqual(nodes, [[b, 0]]);
});

test('a job-end without a job-status before it still gives Running, then the final status', async () => {
  const ip = '127.0.0.243';
  const f = await fake('127.0.0.242', {
    onJob: (conn, job) => {
      const start = Date.now() - 3;
      conn.send({
        t: 'job-end',
        uid: job.uid,
        status: DispyJob.Finished,
        result: codec.encode(1),
        exception: null,
        code: null,
        stdout: '',
        stderr: '',
        ip,
        startTime: start,
        endTime: Date.now(),
      });
    },
  });
  const events: [number, string | null][] = [];
  const c = cluster(f, double, { clusterStatus: (s, n, j) => j && events.push([s, n?.ipAddr ?? null]) });
  assert.equal(await c.submit(1).wait(), 1);
  assert.ok(await c.wait(5));
  assert.deepEqual(events, [
    [DispyJob.Created, null],
    [DispyJob.Running, ip],
    [DispyJob.Finished, ip],
  ]);
});

test('exclusive: jobs wait until the scheduler admits the cluster; one cancelled meanwhile never leaves', async () => {
  const f = await fake('127.0.0.245', { admit: false, onJob: (conn, job) => runJob(conn, job, '127.0.0.246') });
  const c = cluster(f, double, { exclusive: true });
  const jobs = [1, 2, 3].map((x) => c.submit(x));
  await until(() => f.pendingSchedules.length === 1, 5000, 'schedule requested');
  const compute = f.received.find((m) => m.t === 'compute') as { exclusive: boolean };
  assert.equal(compute.exclusive, true);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(f.jobs.length, 0, 'nothing sent before admission');
  assert.equal(c.scheduled, false);
  assert.equal(await c.cancel(jobs[1]!), 0);
  await assert.rejects(jobs[1]!.wait(), (err: DispyJobError) => err.code === 'DISPY_ERR_JOB_CANCELLED');
  f.admitAll();
  assert.equal(await jobs[0]!.wait(), 2);
  assert.equal(await jobs[2]!.wait(), 6);
  assert.deepEqual(
    f.jobs.map((j) => j.uid),
    [jobs[0]!, jobs[2]!].map((j) => j._uid),
  );
  assert.equal(c.scheduled, true);
});

test('scheduler lost mid-run: every job Abandoned naming it, pending and later calls fail with DISPY_ERR_CONNECTION', async () => {
  const ip = '127.0.0.248';
  let first = true;
  const f = await fake('127.0.0.247', {
    onJob: (conn, job) => {
      if (!first) return;
      first = false;
      conn.send({ t: 'node-status', computeId: job.computeId, status: DispyNode.Initialized, node: nodeView(ip) });
      conn.send({ t: 'job-status', uid: job.uid, status: DispyJob.Running, ip, startTime: Date.now() });
    },
    // Node operations are never answered: the call is pending when the scheduler goes.
    onNodeOp: () => null,
  });
  const errors: DispyError[] = [];
  const finals: number[] = [];
  const c = cluster(f, double, { jobStatus: (j) => finals.push(j.status) });
  c.on('error', (e) => errors.push(e));
  const jobs = Array.from({ length: 5 }, (_, i) => c.submit(i));
  await until(() => jobs[0]!.status === DispyJob.Running, 5000, 'first job running');
  const call = c.allocateNode('127.0.0.249');
  await until(() => f.received.some((m) => m.t === 'node-op'), 5000, 'node-op sent');
  const t0 = Date.now();
  await f.close();
  await assert.rejects(
    within(call, 5000, 'pending allocateNode'),
    (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION' && err.message.includes(`127.0.0.247:${f.port}`),
  );
  for (const j of jobs) {
    await assert.rejects(within(j.wait(), 5000, 'job.wait'), (err: DispyJobError) => {
      assert.ok(err instanceof DispyJobError);
      assert.equal(err.code, 'DISPY_ERR_JOB_ABANDONED');
      assert.match(err.message, new RegExp(`scheduler 127\\.0\\.0\\.247:${f.port} lost`));
      return true;
    });
  }
  assert.ok(Date.now() - t0 < 3000, 'no waiting for a time-out');
  assert.equal(await within(c.wait(), 5000, 'cluster.wait'), true);
  await until(() => errors.length > 0, 5000, 'error event');
  assert.equal(errors[0]!.code, 'DISPY_ERR_CONNECTION');
  assert.match(errors[0]!.message, /connection to scheduler 127\.0\.0\.247:\d+ lost/);
  assert.deepEqual(
    finals,
    jobs.map(() => DispyJob.Abandoned),
    'each job settled once',
  );
  assert.equal(jobs[0]!.ipAddr, ip);
  // Later calls fail at once.
  assert.throws(
    () => c.submit(9),
    (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION',
  );
  await assert.rejects(within(c.deallocateNode(ip), 1000, 'later call'), (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION');
  await assert.rejects(within(c.setNodeCpus(ip, 1), 1000, 'later call'), (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION');
  assert.equal(c.status().nodes.length, 0, 'its nodes closed');
  assert.equal(await within(c.close(), 2000, 'close'), true);
});

test('a silent scheduler is declared lost after 5 pulse intervals', async () => {
  const f = await fake('127.0.0.248', { pulses: false, pulseInterval: 0.2 });
  const c = cluster(f, double);
  const errors: DispyError[] = [];
  c.on('error', (e) => errors.push(e));
  const j = c.submit(1);
  await assert.rejects(
    within(j.wait(), 5000, 'job'),
    (err: DispyJobError) => err.code === 'DISPY_ERR_JOB_ABANDONED' && /sent nothing for/.test(err.message),
  );
  await until(() => errors.length, 2000, 'error event');
  assert.equal(errors[0]!.code, 'DISPY_ERR_CONNECTION');
});

test('the scheduler closing the cluster ends its jobs; refusals answer -1', async () => {
  const f = await fake('127.0.0.242', {
    onNodeOp: (_conn, msg) =>
      msg.op === 'set-cpus'
        ? { ok: false, error: { code: 'DISPY_ERR_FORBIDDEN', message: 'not exclusive and not cooperative' } }
        : { ok: true, value: 0 },
  });
  const c = cluster(f, double);
  const errors: DispyError[] = [];
  c.on('error', (e) => errors.push(e));
  assert.throws(
    () => c.submitWith({ depends: ['./no-such-file.csv'] }, 1),
    (err: DispyError) => err.code === 'DISPY_ERR_INVALID_OPTION' && /depends\[0\]: no such file/.test(err.message),
  );
  assert.equal(await c.setNodeCpus('127.0.0.243', 1), -1);
  assert.equal(await c.allocateNode({ host: '127.0.0.243', cpus: 3 }), 0);
  const op = f.received.find((m) => m.t === 'node-op' && m.op === 'allocate') as { node: unknown };
  assert.deepEqual(op.node, { host: '127.0.0.243', port: 9701, cpus: 3 });
  const j = c.submit(1);
  await until(() => f.jobs.length === 1, 5000, 'job sent');
  f.conns[0]!.send({ t: 'closed', computeId: c.computeId!, reason: 'every node failed setup' });
  await assert.rejects(
    within(j.wait(), 5000, 'job'),
    (err: DispyJobError) => err.code === 'DISPY_ERR_JOB_ABANDONED' && /every node failed setup/.test(err.message),
  );
  await until(() => errors.length, 2000, 'error event');
  assert.equal(errors[0]!.code, 'DISPY_ERR_CLUSTER_CLOSED');
});

test('wrong cluster secret: DISPY_ERR_AUTH naming the scheduler; a node is not a scheduler', async () => {
  const f = await fake('127.0.0.244');
  const errors: DispyError[] = [];
  const c = cluster(f, double, { secret: 'not-the-cluster-secret-at-all' });
  c.on('error', (e) => errors.push(e));
  const j = c.submit(1);
  await assert.rejects(within(j.wait(), 5000, 'job'), (err: DispyJobError) => err.code === 'DISPY_ERR_JOB_ABANDONED');
  await assert.rejects(
    within(c.discoverNodes(), 1000, 'call'),
    (err: DispyError) => err.code === 'DISPY_ERR_AUTH' && err.message.includes(`127.0.0.244:${f.port}`),
  );
  await until(() => errors.length, 2000, 'error event');
  assert.equal(errors[0]!.code, 'DISPY_ERR_AUTH');
  assert.match(errors[0]!.message, new RegExp(`scheduler 127\\.0\\.0\\.244:${f.port}`));

  const n = await fake('127.0.0.245', { role: 'node' });
  const c2 = cluster(n, double);
  const errs2: DispyError[] = [];
  c2.on('error', (e) => errs2.push(e));
  await until(() => errs2.length, 5000, 'error event');
  assert.equal(errs2[0]!.code, 'DISPY_ERR_CONNECTION');
  assert.match(errs2[0]!.message, /not a scheduler/);
});

test('DispyHTTPServer(sharedCluster): its jobs, `shared: true`, CPUs ignored when adding a node', async () => {
  const ip = '127.0.0.247';
  const conns: Job[] = [];
  let conn: Conn | null = null;
  const f = await fake('127.0.0.246', {
    onJob: (cn, job) => {
      conn = cn;
      if (conns.length === 0) cn.send({ t: 'node-status', computeId: job.computeId, status: DispyNode.Initialized, node: nodeView(ip) });
      conns.push(job);
      cn.send({ t: 'job-status', uid: job.uid, status: DispyJob.Running, ip, startTime: Date.now() });
    },
  });
  const c = cluster(f, double, { name: 'shared-one' });
  const server = new DispyHTTPServer(c, { host: '127.0.0.246', port: 0, pollSec: 1, logLevel: 'warn' });
  cleanups.push(() => server.shutdown({ wait: false }));
  const base = (await server.listening).url;
  const jobs = [1, 2, 3].map((x) => c.submit(x));
  await until(async () => (await request(`${base}/cluster_status`)).json()[0]?.jobs.running === 3, 5000, 'three running');
  const st = (await request(`${base}/cluster_status`)).json();
  assert.equal(st[0].name, 'shared-one');
  assert.equal(st[0].shared, true);
  assert.deepEqual(st[0].jobs, { submitted: 3, done: 0, queued: 0, running: 3, failed: 0 });
  assert.equal(st[0].nodes[0].ip_addr, ip);
  const upd = (await request(`${base}/cluster_updates?since=0`)).json();
  assert.equal(upd.clusters[0].shared, true);
  const info = (await post(base, '/node_info', { host: ip })).json();
  assert.equal(info.cluster_jobs['shared-one'].length, 3);
  // Adding a node with CPUs: the CPUs are left out, and the answer says why.
  const added = (await post(base, '/add_node', { host: '127.0.0.248', cpus: 2, cluster: 'shared-one' })).json();
  assert.equal(added.cpus_ignored, true);
  assert.match(added.message, /SharedJobCluster/);
  await until(() => f.received.some((m) => m.t === 'node-op' && m.op === 'allocate'), 5000, 'allocate sent');
  const op = f.received.find((m) => m.t === 'node-op' && m.op === 'allocate') as { node: unknown };
  assert.equal(op.node, '127.0.0.248', 'no cpus');
  // Cancelling a running job from the page reaches the scheduler.
  const cancelled = (await post(base, '/cancel_jobs', { uid: jobs[1]!._uid })).json();
  assert.deepEqual(cancelled, [jobs[1]!._uid]);
  await until(() => f.received.some((m) => m.t === 'cancel' && m.uid === jobs[1]!._uid), 5000, 'cancel sent');
  const end = (uid: number, status: number) =>
    conn!.send({
      t: 'job-end',
      uid,
      status,
      result: status === DispyJob.Finished ? codec.encode(0) : null,
      exception: null,
      code: null,
      stdout: '',
      stderr: '',
      ip,
      startTime: Date.now() - 5,
      endTime: Date.now(),
    });
  end(jobs[0]!._uid, DispyJob.Finished);
  end(jobs[1]!._uid, DispyJob.Terminated);
  end(jobs[2]!._uid, DispyJob.Finished);
  assert.ok(await c.wait(5));
  await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.done === 3, 5000, 'done');
  assert.deepEqual((await request(`${base}/cluster_status`)).json()[0].jobs, { submitted: 3, done: 3, queued: 0, running: 0, failed: 1 });
});
