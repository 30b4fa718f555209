/**
 * A node declared dead that comes back and reports an attempt the client gave up (or a job it
 * never sent) changes nothing: the job keeps the result, status, node and end time of the
 * attempt that finished, and settles once. A scripted fake node (test/helpers/fake-node.ts)
 * sends those stale replies, which a real node never would (it forgets old results on
 * reconnection).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob, DispyNode, isFinal, type ClusterStatusEvent } from '../src/index.js';
import { TEST_SECRET, startNode, until } from './helpers/daemon.js';
import { FakeNode, type JobMsg, type NodeConn } from './helpers/fake-node.js';

const PULSE = 0.2;

function finals(events: ClusterStatusEvent[], job: DispyJob): number {
  return events.filter((e) => e.job?.id === job.id && isFinal(e.status)).length;
}

/** Sends a marked pulse after what the fake sent before and waits until the client handled it. */
async function flushed(cluster: Pick<JobCluster, 'status'>, fake: FakeNode, conn: NodeConn, mark: number): Promise<void> {
  fake.pulse(conn, mark);
  await until(
    () => cluster.status().nodes.find((n) => n.ipAddr === fake.host)?.availInfo?.cpu === mark,
    10_000,
    'the marked pulse to be handled',
  );
}

/** The fake goes silent and unreachable: the client declares it dead and closes its connection. */
async function kill(fake: FakeNode, events: ClusterStatusEvent[]): Promise<void> {
  fake.silent = true;
  fake.refuse = true;
  await until(
    () => events.some((e) => e.status === DispyNode.Closed && e.node?.ipAddr === fake.host),
    10_000,
    'the fake node declared dead',
  );
}

test('a stale done from a node that came back changes nothing of a job re-run on another node', async () => {
  const fake = new FakeNode({ host: '127.0.0.92', secret: TEST_SECRET, pulseInterval: PULSE });
  await fake.listen();
  fake.onJob = (conn, job) => conn.send({ t: 'started', uid: job.uid, startTime: Date.now() });
  const b = await startNode({ host: '127.0.0.93', cpus: 1 });
  const events: ClusterStatusEvent[] = [];
  const cluster = new JobCluster(async (tag: string) => `${tag} from ${process.pid}`, {
    nodes: [{ host: fake.host, port: fake.port }],
    secret: TEST_SECRET,
    pulseInterval: PULSE,
    reentrant: true,
  });
  cluster.on('status', (e) => events.push(e));
  try {
    await until(() => cluster.status().nodes.length === 1, 10_000, 'the fake node set up');
    const job = cluster.submit('real');
    await until(() => job.status === DispyJob.Running, 10_000, 'the job running on the fake node');
    const old = fake.jobs[0]!.uid;
    // The real node joins only now, so the first attempt went to the fake one.
    assert.equal(await cluster.allocateNode({ host: b.host, port: b.port }), 0);
    await kill(fake, events);
    await job.wait();
    assert.equal(job.status, DispyJob.Finished);
    assert.equal(job.ipAddr, b.host, 're-ran on the real node');
    assert.match(String(job.result), /^real from \d+$/);
    const before = { result: job.result, status: job.status, ipAddr: job.ipAddr, endTime: job.endTime, startTime: job.startTime };

    // The fake comes back (the same daemon) and reports the old attempt and a job never sent.
    fake.silent = false;
    fake.refuse = false;
    await until(() => fake.setups === 2 && fake.conn, 15_000, 'the fake node set up again');
    const conn = fake.conn!;
    await until(() => cluster.status().nodes.some((n) => n.ipAddr === fake.host), 10_000, 'the fake node in use again');
    fake.sendDone(conn, old, 'stale', { endTime: 1 });
    fake.sendDone(conn, old + 1_000_000, 'never sent', { endTime: 2 });
    await flushed(cluster, fake, conn, 42);
    assert.deepEqual(
      { result: job.result, status: job.status, ipAddr: job.ipAddr, endTime: job.endTime, startTime: job.startTime },
      before,
      'the stale replies changed nothing',
    );
    assert.equal(finals(events, job), 1, 'the job settled once');
  } finally {
    await cluster.close({ terminate: true });
    await Promise.all([fake.close(), b.stop()]);
  }
});

test('a stale done for the old attempt does not complete the re-run on the same node', async () => {
  const fake = new FakeNode({ host: '127.0.0.94', secret: TEST_SECRET, pulseInterval: PULSE });
  await fake.listen();
  const sent: { conn: NodeConn; job: JobMsg }[] = [];
  fake.onJob = (conn, job) => {
    sent.push({ conn, job });
    conn.send({ t: 'started', uid: job.uid, startTime: Date.now() });
  };
  const events: ClusterStatusEvent[] = [];
  const cluster = new JobCluster(async (tag: string) => tag, {
    nodes: [{ host: fake.host, port: fake.port }],
    secret: TEST_SECRET,
    pulseInterval: PULSE,
    reentrant: true,
  });
  cluster.on('status', (e) => events.push(e));
  try {
    await until(() => cluster.status().nodes.length === 1, 10_000, 'the fake node set up');
    const job = cluster.submit('real');
    await until(() => sent.length === 1 && job.status === DispyJob.Running, 10_000, 'the first attempt running');
    await kill(fake, events);
    fake.silent = false;
    fake.refuse = false;
    // The job waits in the queue and is sent again to the node once it is back.
    await until(() => sent.length === 2, 15_000, 'the second attempt sent to the fake node');
    const [first, second] = [sent[0]!.job, sent[1]!];
    await until(() => job.status === DispyJob.Running, 10_000, 'the second attempt running');
    // The old attempt's reply arrives first, then the one of the attempt the client waits for.
    fake.sendDone(second.conn, first.uid, 'stale', { endTime: 1 });
    fake.sendDone(second.conn, second.job.uid, 'fresh');
    await job.wait();
    assert.equal(job.result, 'fresh', 'the result of the attempt the client sent last');
    assert.notEqual(job.endTime, 1);
    await flushed(cluster, fake, second.conn, 43);
    assert.equal(finals(events, job), 1, 'the job settled once');
    assert.notEqual(first.uid, second.job.uid, 'each attempt has its own wire id');
  } finally {
    await cluster.close({ terminate: true });
    await fake.close();
  }
});
