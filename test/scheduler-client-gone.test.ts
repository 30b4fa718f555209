/**
 * A client that is gone, on the scheduler (DESIGN.md §3): its computation starts no new job and
 * never outranks a live one, the monitor and the event log say "client gone; closes at …", and
 * at the end of the client's reconnect window (the smaller of its reconnectTimeout and the
 * zombie interval) the computation is closed: queued jobs dropped, running ones terminated. A
 * client that comes back within the window takes its computation back and its jobs run again.
 * Real scheduler, real node, a real SharedJobCluster program SIGKILLed mid-run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobStatus } from '../src/client/status.js';
import { TEST_SECRET, startNode, until, within, type TestNode } from './helpers/daemon.js';
import { request } from './helpers/http-client.js';
import { CLUSTER_SECRET, RawClient, fn } from './helpers/scheduler.js';
import { startClient, startScheduler, type TestClient, type TestScheduler } from './helpers/scheduler-process.js';

let node: TestNode;
let sched: TestScheduler;
const clients: TestClient[] = [];

before(async () => {
  node = await startNode({ host: '127.0.0.183', cpus: 2, logLevel: 'warn' });
  // A long zombie interval: a client's shorter reconnect window is what counts.
  sched = await startScheduler({
    host: '127.0.0.184',
    nodes: [`${node.host}:${node.port}`],
    nodeSecret: TEST_SECRET,
    clusterSecret: CLUSTER_SECRET,
    zombieInterval: 60,
    httpdHost: '127.0.0.184',
    logLevel: 'debug',
  });
});

after(async () => {
  for (const c of clients) await c.kill('SIGKILL');
  await sched?.stop();
  await node?.stop();
});

type Cluster = { name: string; note?: string | null; closes_at?: number; jobs: Record<string, number> };

async function clusters(): Promise<Cluster[]> {
  return (await request(`${sched.monitor}/cluster_status`)).json<Cluster[]>();
}

async function cluster(prefix: string): Promise<Cluster | undefined> {
  return (await clusters()).find((c) => c.name.startsWith(prefix));
}

test("a killed program's queue never holds the shared CPUs: B runs at once, A closes at the end of its reconnect window", async () => {
  const a = startClient({
    schedulerHost: sched.host,
    schedulerPort: sched.port,
    secret: CLUSTER_SECRET,
    name: 'progA',
    jobs: 40,
    ms: 1000,
    reconnectTimeout: 8,
  });
  clients.push(a);
  // A fills both CPUs, with 38 jobs queued behind.
  await a.line((l) => l.event === 'running' && l.id === 'progA-1', 60_000);
  const b = startClient({ schedulerHost: sched.host, schedulerPort: sched.port, secret: CLUSTER_SECRET, name: 'progB', jobs: 6, ms: 200 });
  clients.push(b);
  // B's jobs are queued at the scheduler behind A's older ones (fsfs).
  await until(async () => (await cluster('progB'))?.jobs.queued === 6, 60_000, "B's 6 jobs queued at the scheduler");
  assert.ok(!b.lines.some((l) => l.event === 'running'), 'B waited for A while A was alive');
  const killedAt = Date.now();
  await a.kill('SIGKILL');

  // B gets the CPUs as soon as A's running jobs end (1 s jobs), not after A's queue.
  const first = await within(
    b.line((l) => l.event === 'running'),
    20_000,
    "B's first job running",
  );
  // A's running jobs take 1 s; its window is 8 s (the zombie interval 60 s): B started in between.
  assert.ok(first.start - killedAt < 6000, `B's first job started ${first.start - killedAt} ms after A was killed`);
  // The monitor says so at once, with the time it closes.
  const gone = (await until(
    async () => {
      const c = await cluster('progA');
      return c?.note?.startsWith('client gone; closes at') ? c : null;
    },
    15_000,
    'the monitor shows A as gone',
  ))!;
  assert.ok(gone.closes_at! * 1000 - killedAt > 6000 && gone.closes_at! * 1000 - killedAt < 12_000, `closes_at ${gone.closes_at}`);
  const startedWhenGone = gone.jobs.submitted;

  const summary = await within(
    b.line((l) => l.event === 'summary'),
    20_000,
    "B's summary",
  );
  assert.deepEqual(summary.byStatus, { [JobStatus.Finished]: 6 });

  // At the end of A's window (8 s, not the 60 s zombie interval) A is closed.
  await until(() => /its client was gone for 8 s/.test(sched.log()), 30_000, "A's computation closed after 8 s");
  const closed = (await until(
    async () => {
      const c = await cluster('progA');
      return c?.note === 'closed: its client was gone' ? c : null;
    },
    15_000,
    'the monitor shows A closed',
  ))!;
  // No job of A started after it was gone: the rest of its 40 were dropped without running.
  assert.equal(closed.jobs.submitted, startedWhenGone, 'no job of A started while its client was gone');
  const submitted = closed.jobs.submitted ?? Number.NaN;
  assert.ok(submitted < 40, `A started ${submitted} of its 40 jobs; the rest were dropped`);
  assert.equal(closed.jobs.running, 0);
  assert.equal(closed.jobs.queued, 0, "A's queued jobs were dropped");

  const log = (await request(`${sched.monitor}/event_log`)).json<{ entries: { text: string; cluster: string | null }[] }>().entries;
  assert.ok(
    log.some((e) => e.cluster?.startsWith('progA') && /client gone; closes at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/.test(e.text)),
    JSON.stringify(log.map((e) => e.text)),
  );
  assert.ok(log.some((e) => e.cluster?.startsWith('progA') && /closed: its client was gone for 8 s/.test(e.text)));
  assert.match(sched.log(), /client gone; closes at/);
});

test('a client back within its window takes its computation back: its jobs run again and the note goes', async () => {
  const SLEEP = fn('async function compute(tag, ms) { await new Promise((r) => setTimeout(r, ms)); return tag; }');
  const c = await RawClient.connect(sched, { localAddress: '127.0.0.185' });
  const reg = await c.request({ t: 'compute', name: 'comeback', computation: SLEEP, reconnectTimeout: 20 });
  assert.ok(reg.ok, reg.error?.message);
  const computeId = reg.computeId!;
  assert.ok((await c.request({ t: 'schedule', computeId })).ok);
  const uids = [c.job(computeId, ['r1', 1500]), c.job(computeId, ['r2', 1500]), c.job(computeId, ['q1', 10]), c.job(computeId, ['q2', 10])];
  await c.waitFor((m) => m.t === 'job-status' && m.uid === uids[1] && m.status === JobStatus.Running, 60_000);
  c.ch.socket.destroy();
  await until(async () => (await cluster('comeback'))?.note?.startsWith('client gone'), 15_000, 'shown as gone');
  // Its queued jobs wait while it is gone, even with both CPUs free once r1 and r2 end.
  await new Promise((r) => setTimeout(r, 2500));
  const held = await cluster('comeback');
  assert.equal(held?.jobs.submitted, 2, 'no job started while the client was gone');
  assert.equal(held?.jobs.queued, 2);

  const back = await RawClient.connect(sched, { localAddress: '127.0.0.189' });
  const r = await back.request({ t: 'resume', computeId, key: reg.resumeKey!, uids });
  assert.ok(r.ok, r.error?.message);
  // The results it missed come first, then its queued jobs run.
  for (const uid of uids) assert.equal((await back.jobEnd(uid, 15_000)).status, JobStatus.Finished);
  await until(
    async () => (await cluster('comeback'))?.note === undefined || (await cluster('comeback'))?.note === null,
    15_000,
    'note cleared',
  );
  const log = (await request(`${sched.monitor}/event_log`)).json<{ entries: { text: string }[] }>().entries;
  assert.ok(log.some((e) => /comeback.*client back/.test(e.text)));
  assert.ok((await back.request({ t: 'close', computeId, terminate: false })).ok);
  back.close();
});
