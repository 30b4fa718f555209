/**
 * Sizes are bounded and named (limits lowered to 1 MiB here, values of 2 MiB): a cluster's
 * `maxArgsSize` is checked at submit(); a node announces its --max-message-size and gets no job
 * that does not fit (one no node takes ends Cancelled, named); a result over the node's limit
 * ends Terminated naming both sizes; a job whose sends keep being lost is given up after a
 * bounded number of attempts; and the same through the scheduler for SharedJobCluster.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyJob, JobCluster, SharedJobCluster, type DispyError } from '../src/index.js';
import { MAX_SEND_ATTEMPTS } from '../src/client/job-cluster.js';
import { acceptChannel, type Channel } from '../src/protocol/channel.js';
import { clientMessageSchema, type ClientMessage, type NodeMessage } from '../src/protocol/messages.js';
import { TEST_SECRET, startNode, until, within, type TestNode } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler, type TestScheduler } from './helpers/scheduler.js';
import { FakeScheduler } from './helpers/fake-scheduler.js';

const MiB = 1024 * 1024;
let small: TestNode;
let large: TestNode;
let dir: string;
before(async () => {
  [small, large] = await Promise.all([
    startNode({ host: '127.0.0.56', cpus: 1, args: ['--max-message-size', '1m'] }),
    startNode({ host: '127.0.0.57', cpus: 1 }),
  ]);
  dir = mkdtempSync(join(tmpdir(), 'dispyts-sizes-'));
});
after(async () => {
  await Promise.all([small?.stop(), large?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

const on = (...nodes: TestNode[]) => ({ nodes: nodes.map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET });

function errorsOf(cluster: { on(ev: 'error', f: (e: DispyError) => void): unknown }): DispyError[] {
  const errors: DispyError[] = [];
  cluster.on('error', (e) => errors.push(e));
  return errors;
}

/** Log lines of a daemon saying it closed a connection for an oversize frame. */
function frameRefusals(n: { log(): string }): number {
  return n
    .log()
    .split('\n')
    .filter((l) => l.includes('DISPY_ERR_FRAME_TOO_LARGE')).length;
}

test('maxArgsSize: submit() throws naming both sizes and queues nothing; a later small job finishes', async () => {
  const cluster = new JobCluster((b: Uint8Array) => b.length, { ...on(small), maxArgsSize: MiB });
  try {
    assert.throws(
      () => cluster.submit(new Uint8Array(2 * MiB)),
      (e: DispyError) =>
        e.code === 'DISPY_ERR_MESSAGE_TOO_LARGE' && /encode to 209\d{4} bytes, more than .*maxArgsSize of 1048576 bytes/.test(e.message),
    );
    assert.equal(cluster.status().jobsPending, 0, 'the refused job was never queued');
    assert.equal(await cluster.submit(new Uint8Array(10)).wait(), 10);
    // Files still travel to a node with a small limit (in chunks that fit).
    const file = join(dir, 'big.bin');
    writeFileSync(file, Buffer.alloc(3 * MiB, 7));
    const withFile = new JobCluster((name: string) => require('node:fs').statSync(name).size, { ...on(small), depends: [file] });
    try {
      assert.equal(await withFile.submit('big.bin').wait(), 3 * MiB);
    } finally {
      await withFile.close();
    }
  } finally {
    await cluster.close();
  }
});

test("a node announcing a smaller limit than the cluster's gets no job that does not fit", async () => {
  // Only that node: the job ends Cancelled, named, without ever being sent.
  const alone = new JobCluster((b: Uint8Array) => b.length, on(small));
  const aloneErrors = errorsOf(alone);
  try {
    const big = alone.submit(new Uint8Array(2 * MiB));
    await assert.rejects(within(big.wait(), 20_000, 'the large job'), { code: 'DISPY_ERR_JOB_CANCELLED' });
    assert.match(
      big.exception!,
      /arguments encode to 209\d{4} bytes: no node of cluster .* takes a message that large \(the largest a node takes is 1048576 bytes/,
    );
    await until(() => aloneErrors.some((e) => e.code === 'DISPY_ERR_MESSAGE_TOO_LARGE'), 5000, 'the error event');
    assert.equal(await alone.submit(new Uint8Array(5)).wait(), 5, 'a small job after it finishes');
  } finally {
    await alone.close();
  }
  // With a node that takes it, it goes there, and small jobs still use both.
  const both = new JobCluster(
    async (b: Uint8Array) => {
      await new Promise((r) => setTimeout(r, 50));
      return b.length;
    },
    on(small, large),
  );
  const errors = errorsOf(both);
  try {
    await until(() => both.status().nodes.length === 2, 15_000, 'both nodes');
    const jobs = [
      both.submit(new Uint8Array(2 * MiB)),
      ...Array.from({ length: 6 }, () => both.submit(new Uint8Array(10))),
      both.submit(new Uint8Array(2 * MiB)),
    ];
    const results = await within(Promise.all(jobs.map((j) => j.wait())), 30_000, 'every job');
    assert.deepEqual(results, [2 * MiB, 10, 10, 10, 10, 10, 10, 2 * MiB]);
    assert.equal(jobs[0]!.ipAddr, large.host);
    assert.equal(jobs[7]!.ipAddr, large.host);
    assert.ok(
      jobs.some((j) => j.ipAddr === small.host),
      'small jobs ran on the small node too',
    );
    await both.wait();
    const about = errors.filter((e) => e.code === 'DISPY_ERR_MESSAGE_TOO_LARGE');
    // Reported when a large job had to pass the small node by: once at most, and not at all when
    // the large node had room each time a large job was placed first.
    assert.ok(about.length <= 1, `the smaller node is reported once at most (${about.length})`);
    for (const e of about) assert.match(e.message, /node 127\.0\.0\.56 takes messages of at most 1048576 bytes/);
  } finally {
    await both.close();
  }
  assert.equal(frameRefusals(small), 0, 'the small node never got a frame it refuses');
});

test("a result over the node's limit: Terminated, naming both sizes; the node goes on", async () => {
  const cluster = new JobCluster((n: number) => new Uint8Array(n), on(small));
  try {
    const job = cluster.submit(2 * MiB);
    await assert.rejects(within(job.wait(), 20_000, 'the job'), { code: 'DISPY_ERR_JOB_TERMINATED' });
    assert.equal(job.status, DispyJob.Terminated);
    // Refused in the runner (or, as a last resort, by the daemon), naming both sizes.
    assert.match(
      job.exception!,
      /result encodes to 209\d{4} bytes, more than (the node|node 127\.0\.0\.56)'s maximum message size of 1048576 bytes/,
    );
    assert.equal(job.result, null);
    assert.equal((await cluster.submit(100).wait()).length, 100);
  } finally {
    await cluster.close();
  }
});

/**
 * A node that announces a large limit but drops the connection whenever it gets a job (what a
 * node refusing an oversize frame looked like): the client must not re-send it forever.
 */
class DroppingNode {
  readonly server = net.createServer((s) => void this.#accept(s));
  jobs = 0;
  port = 0;
  async listen(host: string): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, host, r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }
  async #accept(socket: net.Socket): Promise<void> {
    let ch: Channel<ClientMessage, NodeMessage>;
    try {
      ch = await acceptChannel<ClientMessage, NodeMessage>(socket, {
        secret: Buffer.from(TEST_SECRET),
        schema: clientMessageSchema,
        role: 'node',
      });
    } catch {
      return;
    }
    ch.on('message', (msg) => {
      if (msg.t === 'job') {
        this.jobs++;
        ch.close();
      } else if (msg.t === 'setup') ch.send({ t: 'reply', rid: msg.rid, ok: true, cpus: 1 });
      else if (msg.t === 'resume') ch.send({ t: 'reply', rid: msg.rid, ok: true, uids: [], results: [] });
      else if ('rid' in msg) ch.send({ t: 'reply', rid: msg.rid, ok: true });
    });
    ch.send({
      t: 'info',
      nodeId: 'dropping-node',
      name: 'dropping',
      ipAddr: '127.0.0.63',
      port: this.port,
      machineCpus: 1,
      cpus: 1,
      platform: 'test',
      availInfo: null,
      busy: false,
      maxMessageSize: 64 * MiB,
    });
  }
}

test(`a job whose sends keep being lost is given up after ${MAX_SEND_ATTEMPTS} attempts: Abandoned, with an error event`, async () => {
  const fake = new DroppingNode();
  await fake.listen('127.0.0.63');
  const cluster = new JobCluster((x: number) => x, { nodes: [{ host: '127.0.0.63', port: fake.port }], secret: TEST_SECRET });
  const errors = errorsOf(cluster);
  try {
    const job = cluster.submit(1);
    await assert.rejects(within(job.wait(), 30_000, 'the job'), { code: 'DISPY_ERR_JOB_ABANDONED' });
    assert.equal(fake.jobs, MAX_SEND_ATTEMPTS, 'sent exactly that many times');
    assert.match(job.exception!, new RegExp(`given up after ${MAX_SEND_ATTEMPTS} attempts to hand it to a node`));
    await until(() => errors.some((e) => e.code === 'DISPY_ERR_UNDELIVERABLE'), 5000, 'the error event');
    assert.equal(await cluster.wait(1), true, 'nothing pending any more');
  } finally {
    await cluster.close({ terminate: true });
    fake.server.close();
  }
});

test(`SharedJobCluster: a job the scheduler never gets is given up after ${MAX_SEND_ATTEMPTS} attempts`, async () => {
  let dropped = 0;
  // Loses every job with its connection, as a scheduler refusing an oversize frame did.
  const fake: FakeScheduler = new FakeScheduler({
    host: '127.0.0.63',
    secret: CLUSTER_SECRET,
    resumable: true,
    onJob: (conn, job) => {
      dropped++;
      fake.jobs.splice(fake.jobs.indexOf(job), 1);
      conn.close();
    },
  });
  await fake.listen();
  const cluster = new SharedJobCluster((x: number) => x, { schedulerHost: fake.host, schedulerPort: fake.port, secret: CLUSTER_SECRET });
  const errors = errorsOf(cluster);
  try {
    const job = cluster.submit(1);
    await assert.rejects(within(job.wait(), 30_000, 'the job'), { code: 'DISPY_ERR_JOB_ABANDONED' });
    assert.equal(dropped, MAX_SEND_ATTEMPTS, 'sent exactly that many times');
    assert.match(job.exception!, new RegExp(`given up after ${MAX_SEND_ATTEMPTS} attempts to hand it to scheduler`));
    await until(() => errors.some((e) => e.code === 'DISPY_ERR_UNDELIVERABLE'), 5000, 'the error event');
  } finally {
    await cluster.close({ terminate: true });
    await fake.close();
  }
});

test('through the scheduler: its --max-message-size for arguments and results, and a node with a smaller one', async () => {
  let tight: TestScheduler | null = null;
  let roomy: TestScheduler | null = null;
  try {
    [tight, roomy] = await Promise.all([
      startScheduler({ host: '127.0.0.58', nodes: [`${large.host}:${large.port}`], args: ['--max-message-size', '1m'] }),
      startScheduler({ host: '127.0.0.64', nodes: [`${small.host}:${small.port}`] }),
    ]);
    const via = (s: TestScheduler) => ({ schedulerHost: s.host, schedulerPort: s.port, secret: CLUSTER_SECRET });
    const fn = (n: number, b: Uint8Array) => new Uint8Array(n + b.length);

    const capped = new SharedJobCluster(fn, { ...via(tight), maxArgsSize: MiB });
    assert.throws(() => capped.submit(0, new Uint8Array(2 * MiB)), { code: 'DISPY_ERR_MESSAGE_TOO_LARGE' });
    await capped.close();

    const c = new SharedJobCluster(fn, via(tight));
    const errors = errorsOf(c);
    try {
      const bigArgs = c.submit(0, new Uint8Array(2 * MiB));
      await assert.rejects(within(bigArgs.wait(), 20_000, 'the large job'), { code: 'DISPY_ERR_JOB_CANCELLED' });
      assert.match(bigArgs.exception!, /arguments encode to 209\d{4} bytes: scheduler .* takes messages of at most 1048576 bytes/);
      await until(() => errors.some((e) => e.code === 'DISPY_ERR_MESSAGE_TOO_LARGE'), 5000, 'the error event');
      const bigResult = c.submit(2 * MiB, new Uint8Array(0));
      await assert.rejects(within(bigResult.wait(), 20_000, 'the large result'), { code: 'DISPY_ERR_JOB_TERMINATED' });
      assert.match(
        bigResult.exception!,
        /result encodes to 209\d{4} bytes, more than the scheduler's maximum message size of 1048576 bytes/,
      );
      assert.equal((await c.submit(3, new Uint8Array(1)).wait()).length, 4);
    } finally {
      await c.close();
    }

    // The scheduler takes it, but its only node does not.
    const viaNode = new SharedJobCluster(fn, via(roomy));
    try {
      const job = viaNode.submit(0, new Uint8Array(2 * MiB));
      await assert.rejects(within(job.wait(), 20_000, 'the large job'), { code: 'DISPY_ERR_JOB_CANCELLED' });
      assert.match(job.exception!, /takes a message that large \(the largest a node takes is 1048576 bytes/);
      assert.equal((await viaNode.submit(1, new Uint8Array(1)).wait()).length, 2);
    } finally {
      await viaNode.close();
    }
  } finally {
    await Promise.all([tight?.stop(), roomy?.stop()]);
  }
  assert.equal(frameRefusals(small), 0, 'no node got a frame it refuses');
  assert.equal(frameRefusals(large), 0);
});
