/**
 * Faults around SharedJobCluster with the real scheduler and real nodes: a client program
 * SIGKILLed mid-run (its jobs terminated after the zombie interval, the other client
 * unaffected), a node SIGKILLed mid-run (re-run for a reentrant cluster, Abandoned otherwise,
 * each job settled once), and the scheduler killed and restarted, then stopped (every pending
 * job and call ends with a DISPY_ERR_* error, never a hang). Addresses 127.0.0.234-237 only.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DispyJob, type DispyJobError, SharedJobCluster, type DispyError } from '../src/index.js';
import { TEST_SECRET, startNode, until, within, type TestNode } from './helpers/daemon.js';
import { request } from './helpers/http-client.js';
import { startClient, startScheduler, type TestClient, type TestScheduler } from './helpers/scheduler-process.js';

const CLUSTER_SECRET = 'shared-faults-test-cluster-secret';
const SCHED_HOST = '127.0.0.234';
const NODE_HOSTS = ['127.0.0.235', '127.0.0.236', '127.0.0.237'];

let nodes: TestNode[] = [];
let scheduler: TestScheduler;
const extra: TestScheduler[] = [];
const clients: TestClient[] = [];
const inProcess: SharedJobCluster[] = [];

function nodeList(list: TestNode[]): string[] {
  return list.map((n) => `${n.host}:${n.port}`);
}

before(async () => {
  // A short node zombie interval: a killed scheduler's computations leave the nodes quickly.
  nodes = await Promise.all(NODE_HOSTS.map((host) => startNode({ host, cpus: 2, logLevel: 'info', args: ['--zombie-interval', '2'] })));
  scheduler = await startScheduler({
    host: SCHED_HOST,
    nodes: nodeList(nodes),
    nodeSecret: TEST_SECRET,
    clusterSecret: CLUSTER_SECRET,
    logLevel: 'info',
    zombieInterval: 1,
    httpdHost: SCHED_HOST,
  });
});

after(async () => {
  // Even after a failed assertion nothing keeps this process alive.
  for (const c of inProcess) await within(c.close({ terminate: true }), 5000, 'close').catch(() => undefined);
  for (const c of clients) await c.kill('SIGKILL');
  for (const s of [scheduler, ...extra]) await s?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
});

function client(name: string, cfg: Record<string, unknown>): TestClient {
  const c = startClient({ schedulerHost: SCHED_HOST, schedulerPort: scheduler.port, secret: CLUSTER_SECRET, name, ...cfg });
  clients.push(c);
  return c;
}

function endsOf(c: TestClient): Map<string, Record<string, any>[]> {
  const m = new Map<string, Record<string, any>[]>();
  for (const l of c.lines) if (l.event === 'end') m.set(l.id, [...(m.get(l.id) ?? []), l]);
  return m;
}

test('a client SIGKILLed mid-run: its jobs are terminated after the zombie interval; the other client is unaffected', async () => {
  const killed = client('killed', { jobs: 2, ms: 30_000 });
  await until(() => killed.lines.filter((l) => l.event === 'running').length === 2, 20_000, 'both long jobs running');
  const other = client('other', { jobs: 8, ms: 300 });
  await other.line((l) => l.event === 'running');
  await killed.kill('SIGKILL');
  const summary = await other.line((l) => l.event === 'summary', 30_000);
  assert.deepEqual(summary.byStatus, { [DispyJob.Finished]: 8 });
  assert.equal(summary.wrong, 0);
  assert.equal(await other.exited, 0);
  // The scheduler's monitor: the killed client's two jobs ended (terminated), nothing runs for it.
  const mon = scheduler.monitor!;
  const st = await until(
    async () => {
      const all = (await request(`${mon}/cluster_status`)).json() as { name: string; jobs: Record<string, number> }[];
      const k = all.find((c) => c.name.startsWith('killed @'));
      return k && k.jobs.running === 0 && k.jobs.done === 2 ? k : null;
    },
    15_000,
    "the killed client's jobs ended on the scheduler",
  );
  assert.deepEqual(st!.jobs, { submitted: 2, done: 2, queued: 0, running: 0, failed: 2 });
  assert.match(scheduler.log(), /client gone; closes at .*no job of it starts meanwhile/);
});

test('a node SIGKILLed mid-run: a reentrant client re-runs its job elsewhere, another gets Abandoned, each job settled once', async () => {
  const [victim, y, z] = nodes as [TestNode, TestNode, TestNode];
  const running = (c: TestClient) => c.lines.filter((l) => l.event === 'running');
  // `once` takes one CPU of the victim and one of z (a job pinned to each); `rerun` then fills
  // the victim's other CPU and both of y's (the scheduler gives a node no more of these long
  // jobs than it has CPUs).
  // Long enough to be still running on the victim when `rerun` has started on a loaded machine.
  const once = client('once', { jobs: 2, ms: 15_000, pins: [victim.host, z.host] });
  await until(() => running(once).length === 2, 20_000, 'both jobs of `once` running');
  assert.deepEqual(
    running(once)
      .map((l) => l.ip)
      .sort(),
    [victim.host, z.host],
  );
  const rerun = client('rerun', { jobs: 3, ms: 3000, reentrant: true, nodes: [victim.host, y.host] });
  await until(() => running(rerun).length === 3, 20_000, 'the three jobs of `rerun` running');
  assert.deepEqual(
    running(rerun)
      .map((l) => l.ip)
      .sort(),
    [victim.host, y.host, y.host],
  );
  await victim.stop('SIGKILL');
  const [sr, so] = await Promise.all([rerun.line((l) => l.event === 'summary', 40_000), once.line((l) => l.event === 'summary', 40_000)]);
  // Reentrant: every job finished, the one on the dead node after running again elsewhere.
  assert.deepEqual(sr.byStatus, { [DispyJob.Finished]: 3 });
  assert.equal(sr.wrong, 0);
  assert.ok(
    rerun.lines.some((l) => l.event === 'requeued' && l.ip === victim.host),
    'the job came back from the dead node',
  );
  assert.ok(!sr.ips.includes(victim.host));
  // Not reentrant: the job on the dead node is Abandoned (reported to this client), the other finished.
  const ends = endsOf(once);
  assert.equal(ends.size, 2);
  const abandoned = [...ends.values()].flat().filter((l) => l.status === DispyJob.Abandoned);
  assert.equal(abandoned.length, 1, JSON.stringify(once.lines));
  assert.equal(abandoned[0]!.ip, victim.host);
  assert.match(abandoned[0]!.exception, new RegExp(`node ${victim.host.replace(/\./g, '\\.')} was lost`));
  assert.deepEqual(so.byStatus, { [DispyJob.Finished]: 1, [DispyJob.Abandoned]: 1 });
  assert.equal(so.wrong, 0);
  for (const c of [rerun, once]) for (const [id, list] of endsOf(c)) assert.equal(list.length, 1, `${id} settled once`);
  await Promise.all([rerun.exited, once.exited]);
  nodes = nodes.slice(1);
});

test('the scheduler killed, then restarted and stopped: every pending job and call ends with a DISPY_ERR_*, never a hang', async () => {
  const port = scheduler.port;
  const make = (name: string) => {
    const c = new SharedJobCluster((ms: number) => new Promise((r) => setTimeout(() => r(ms), ms)), {
      schedulerHost: SCHED_HOST,
      schedulerPort: port,
      secret: CLUSTER_SECRET,
      name,
      logLevel: 'silent',
    });
    inProcess.push(c);
    return c;
  };
  // 1. SIGKILL: the connection drops.
  const first = make('before-kill');
  const errors: DispyError[] = [];
  first.on('error', (e) => errors.push(e));
  const jobs = [0, 1, 2, 3].map(() => first.submit(20_000));
  await until(() => jobs.every((j) => j.status === DispyJob.Running), 20_000, 'jobs running');
  // Settled as soon as it is: its outcome is checked below.
  const call = first.discoverNodes().then(
    (r) => ({ r, err: null }),
    (err: DispyError) => ({ r: null, err }),
  );
  await scheduler.stop('SIGKILL');
  for (const j of jobs) {
    await assert.rejects(within(j.wait(), 5000, 'job.wait after SIGKILL'), (err: DispyJobError) => {
      assert.equal(err.code, 'DISPY_ERR_JOB_ABANDONED');
      assert.match(err.message, new RegExp(`scheduler ${SCHED_HOST.replace(/\./g, '\\.')}:${port} lost`));
      return true;
    });
  }
  // The call in flight either got its answer before the scheduler died or fails with the loss.
  const outcome = await within(call, 5000, 'pending discoverNodes');
  if (outcome.err) assert.equal(outcome.err.code, 'DISPY_ERR_CONNECTION');
  else assert.equal(outcome.r, 0);
  await until(() => errors.length, 5000, 'error event');
  assert.equal(errors[0]!.code, 'DISPY_ERR_CONNECTION');
  assert.throws(
    () => first.submit(1),
    (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION',
  );
  await assert.rejects(
    within(first.allocateNode(NODE_HOSTS[1]!), 1000, 'later call'),
    (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION',
  );
  assert.equal(await within(first.close(), 1000, 'close after the loss'), true);
  // A cluster created while no scheduler listens fails at once, too.
  const orphan = make('nobody-home');
  const lone = orphan.submit(1);
  await assert.rejects(
    within(lone.wait(), 5000, 'job without a scheduler'),
    (err: DispyJobError) => err.code === 'DISPY_ERR_JOB_ABANDONED' && /ECONNREFUSED/.test(err.message),
  );
  await orphan.close();

  // 2. Restarted at the same address: new clusters work (once the nodes let go of the old scheduler).
  const restarted = await startScheduler({
    host: SCHED_HOST,
    port,
    nodes: nodeList(nodes),
    nodeSecret: TEST_SECRET,
    clusterSecret: CLUSTER_SECRET,
    logLevel: 'info',
    zombieInterval: 1,
  });
  extra.push(restarted);
  const second = make('after-restart');
  const errors2: DispyError[] = [];
  second.on('error', (e) => errors2.push(e));
  assert.equal(await within(second.submit(50).wait(), 30_000, 'a job on the restarted scheduler'), 50);
  // 3. Stopped (SIGTERM): its jobs end Terminated, saying why; the cluster says it was closed.
  const long = [0, 1].map(() => second.submit(20_000));
  await until(() => long.every((j) => j.status === DispyJob.Running), 20_000, 'long jobs running');
  await restarted.stop('SIGTERM');
  for (const j of long) {
    await assert.rejects(within(j.wait(), 10_000, 'job.wait after SIGTERM'), (err: DispyJobError) => {
      assert.ok(['DISPY_ERR_JOB_TERMINATED', 'DISPY_ERR_JOB_CANCELLED'].includes(err.code), err.code);
      assert.match(err.message, /scheduler is shutting down/);
      return true;
    });
    assert.equal(j._errorCode, 'DISPY_ERR_CLUSTER_CLOSED');
  }
  await until(() => errors2.length, 5000, 'error event after SIGTERM');
  assert.equal(errors2[0]!.code, 'DISPY_ERR_CLUSTER_CLOSED');
  await assert.rejects(
    within(second.deallocateNode(NODE_HOSTS[1]!), 1000, 'later call'),
    (err: DispyError) => err.code === 'DISPY_ERR_CLUSTER_CLOSED',
  );
  assert.equal(await within(second.close(), 2000, 'close'), true);
});
