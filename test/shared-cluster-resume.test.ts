/**
 * A SharedJobCluster whose connection to a live scheduler breaks gets back and resumes its
 * computation: results that came meanwhile are delivered, jobs the scheduler never got are sent
 * again, cancels asked for meanwhile go through, every job ends once. A scheduler not back in
 * time ends every pending job, saying so. The break is made by a TCP relay between the two
 * (127.0.0.166), so the scheduler and its nodes (127.0.0.163-165) stay up throughout.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyJob, SharedJobCluster, type DispyError, type DispyJobError } from '../src/index.js';
import { TEST_SECRET, startNode, until, within, type TestNode } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler, type TestScheduler } from './helpers/scheduler.js';

const SCHED_HOST = '127.0.0.163';
const NODE_HOSTS = ['127.0.0.164', '127.0.0.165'];
const RELAY_HOST = '127.0.0.166';

/** A TCP relay to the scheduler that the test can cut, block, or make swallow what the client sends. */
class Relay {
  readonly server: net.Server;
  port = 0;
  /** Accept and drop new connections at once (the scheduler looks unreachable). */
  blocking = false;
  /** Forward nothing the client sends (it is lost on the way). */
  swallowing = false;
  /** Bytes the client sent while swallowing was on. */
  swallowed = 0;
  readonly #pairs = new Set<[net.Socket, net.Socket]>();

  constructor(target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      if (this.blocking) {
        client.destroy();
        return;
      }
      const upstream = net.connect({ host: target.host, port: target.port });
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.#pairs.add(pair);
      const end = (): void => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('data', (d) => {
        if (this.swallowing) this.swallowed += d.length;
        else upstream.write(d);
      });
      upstream.on('data', (d) => client.write(d));
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, RELAY_HOST, r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Breaks every relayed connection (both sides see it close). */
  cut(): void {
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

let nodes: TestNode[] = [];
let scheduler: TestScheduler;
let dir: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dispyts-resume-'));
  nodes = await Promise.all(NODE_HOSTS.map((host) => startNode({ host, cpus: 2, logLevel: 'info' })));
  scheduler = await startScheduler({
    host: SCHED_HOST,
    nodes: nodes.map((n) => `${n.host}:${n.port}`),
    nodeSecret: TEST_SECRET,
    clusterSecret: CLUSTER_SECRET,
    args: ['--zombie-interval', '30'],
  });
});

after(async () => {
  await scheduler?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(dir, { recursive: true, force: true });
});

/** Returns `n` once `file` exists (checked every 10 ms; fails after 60 s). */
async function held(n: number, file: string): Promise<number> {
  const fs = require('node:fs');
  for (let i = 0; !fs.existsSync(file); i++) {
    if (i > 6000) throw new Error(`${file} never appeared`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return n;
}

function finalsOf(cluster: SharedJobCluster): Map<DispyJob, number[]> {
  const finals = new Map<DispyJob, number[]>();
  cluster.on('status', (e) => {
    if (e.job && [DispyJob.Finished, DispyJob.Terminated, DispyJob.Cancelled, DispyJob.Abandoned].includes(e.status as never)) {
      finals.set(e.job, [...(finals.get(e.job) ?? []), e.status]);
    }
  });
  return finals;
}

test('a broken connection to a live scheduler: the cluster reconnects and resumes, every job ends once', async () => {
  const relay = new Relay(scheduler);
  await relay.listen();
  const release = join(dir, 'release-1');
  const never = join(dir, 'never');
  const cluster = new SharedJobCluster(held, {
    schedulerHost: RELAY_HOST,
    schedulerPort: relay.port,
    secret: CLUSTER_SECRET,
    name: 'resumed',
    logLevel: 'silent',
  });
  const errors: DispyError[] = [];
  cluster.on('error', (e) => errors.push(e));
  const finals = finalsOf(cluster);
  try {
    const running = [0, 1, 2].map((i) => cluster.submit(i, release));
    const victim = cluster.submit(99, never);
    await until(() => [...running, victim].every((j) => j.status === DispyJob.Running), 20_000, 'four jobs running');
    // A job sent into the void: the scheduler never gets it.
    relay.swallowing = true;
    const lost = cluster.submit(7, release);
    // On a loaded machine the submission may leave the client later than any fixed pause.
    await until(() => relay.swallowed > 0, 10_000, 'the job sent into the void');

    // The connection breaks, and for a while the scheduler cannot be reached.
    relay.blocking = true;
    relay.cut();
    relay.swallowing = false;
    // Meanwhile: calls fail at once, saying why; jobs end on the nodes; a job is submitted and one cancelled.
    await assert.rejects(
      within(cluster.allocateNode(NODE_HOSTS[0]!), 2000, 'a call while away'),
      (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION' && /no connection|reconnecting/.test(err.message),
    );
    writeFileSync(release, '');
    const meanwhile = cluster.submit(5, release);
    assert.equal(await cluster.cancel(victim), 0);
    await until(
      () => /client gone; closes at .*unless the client resumes it/.test(scheduler.log()),
      10_000,
      'the scheduler saw the client go',
    );
    await new Promise((r) => setTimeout(r, 1000));
    for (const j of running) assert.equal(j.settled, false, 'nothing ends while away');

    relay.blocking = false;
    assert.deepEqual(
      await within(Promise.all([...running, lost, meanwhile].map((j) => j.wait())), 30_000, 'jobs after the reconnection'),
      [0, 1, 2, 7, 5],
    );
    await assert.rejects(within(victim.wait(), 10_000, 'the cancelled job'), (err: DispyJobError) =>
      ['DISPY_ERR_JOB_TERMINATED', 'DISPY_ERR_JOB_CANCELLED'].includes(err.code),
    );
    assert.ok(await within(cluster.wait(), 10_000, 'wait'));
    for (const j of [...running, lost, meanwhile, victim])
      assert.equal(finals.get(j)?.length, 1, `job ${String(j.id)}: one final status (${finals.get(j)})`);
    await until(
      // The swallowed job, and `meanwhile` too when the client wrote it into the cut connection
      // before it saw the cut (both are then sent again; each still ends once, checked above).
      () => /"unknown":[12],"msg":"computation resumed"/.test(scheduler.log()),
      5000,
      'the resume logged, the swallowed job unknown to the scheduler',
    ).catch((err: Error) => {
      const resumed = scheduler
        .log()
        .split('\n')
        .filter((l) => l.includes('computation resumed'));
      throw new Error(`${err.message}; resume lines: ${resumed.join(' | ') || 'none'}`);
    });
    assert.deepEqual(errors, []);
    // And it works on as before.
    assert.equal(await within(cluster.submit(11, release).wait(), 10_000, 'a job after all that'), 11);
  } finally {
    writeFileSync(release, '');
    writeFileSync(never, '');
    await cluster.close({ terminate: true });
    await relay.close();
  }
});

test('a scheduler not back within reconnectTimeout: every pending job ends Abandoned, saying so; calls fail', async () => {
  const relay = new Relay(scheduler);
  await relay.listen();
  const release = join(dir, 'release-2');
  const cluster = new SharedJobCluster(held, {
    schedulerHost: RELAY_HOST,
    schedulerPort: relay.port,
    secret: CLUSTER_SECRET,
    name: 'gave-up',
    reconnectTimeout: 2,
    logLevel: 'silent',
  });
  const errors: DispyError[] = [];
  cluster.on('error', (e) => errors.push(e));
  try {
    const jobs = [0, 1].map((i) => cluster.submit(i, release));
    await until(() => jobs.every((j) => j.status === DispyJob.Running), 20_000, 'jobs running');
    relay.blocking = true;
    relay.cut();
    const t0 = Date.now();
    for (const j of jobs) {
      await assert.rejects(
        within(j.wait(), 10_000, 'job'),
        (err: DispyJobError) => err.code === 'DISPY_ERR_JOB_ABANDONED' && /lost: .*; not back within 2 s/.test(err.message),
      );
    }
    assert.ok(Date.now() - t0 >= 1500, 'it tried for about reconnectTimeout');
    await until(() => errors.length, 5000, 'error event');
    assert.equal(errors[0]!.code, 'DISPY_ERR_CONNECTION');
    assert.throws(
      () => cluster.submit(3, release),
      (err: DispyError) => err.code === 'DISPY_ERR_CONNECTION',
    );
    assert.throws(
      () => new SharedJobCluster(held, { reconnectTimeout: -1 }),
      (err: DispyError) => err.code === 'DISPY_ERR_INVALID_OPTION' && /reconnectTimeout/.test(err.message),
    );
  } finally {
    writeFileSync(release, '');
    await cluster.close({ terminate: true });
    await relay.close();
  }
});
