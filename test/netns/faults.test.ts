/**
 * Faults across hosts (issue 6, items 3 and 4), on network namespaces: nodes SIGKILLed, links
 * set down and up, a node restarted behind a dead link, a client paused, a client SIGKILLed,
 * results recovered with recoverJobs. Every job ends with exactly one final status.
 * Skipped, with the reason printed, where the kernel refuses `ip netns add`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_SECRET } from '../helpers/daemon.js';
import { NetnsHarness, netnsUnavailable, sweepStale, type LiveClient, type NetnsHost, type NetnsNode } from './harness.js';

const skipReason = netnsUnavailable();
if (!skipReason) sweepStale();
if (skipReason) process.stdout.write(`# multi-host fault suite skipped: ${skipReason}\n`);

const harness = skipReason ? undefined : new NetnsHarness();
let hosts: NetnsHost[] = [];
let scratch = '';

interface JobLine {
  id: string;
  status: string;
  ip: string | null;
  result: unknown;
  exception: string | null;
  requeued: number;
  finals: number;
}
type Line = Record<string, unknown>;

async function startNodes(args: string[] = []): Promise<NetnsNode[]> {
  return Promise.all(hosts.slice(0, 3).map((h) => harness!.startNode(h, { cpus: 1, args })));
}

function client(cfg: Record<string, unknown>): LiveClient {
  return harness!.startClient(hosts[3]!, 'fault-client', [JSON.stringify({ secret: TEST_SECRET, ...cfg })]);
}

const spec = (ns: NetnsNode[]) => ns.map((n) => ({ host: n.ip, port: n.port }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function wave(c: LiveClient, n: number, timeoutMs = 40_000): Promise<JobLine[]> {
  const line = await c.waitFor<{ jobs: JobLine[]; fatal?: string }>((l) => l.ev === 'wave' && l.wave === n, timeoutMs, `wave ${n}`);
  return line.jobs;
}

function assertOnceEach(jobs: JobLine[]): void {
  for (const j of jobs) assert.equal(j.finals, 1, `job ${j.id} has ${j.finals} final statuses`);
}

async function runningOn(c: LiveClient): Promise<Map<string, string>> {
  const line = await c.waitFor<{ ids: [string, string][] }>((l) => l.ev === 'running' && l.wave === 0, 30_000, 'running');
  return new Map(line.ids.map(([id, ip]) => [ip, id]));
}

async function stopAll(nodes: NetnsNode[], ...clients: LiveClient[]): Promise<void> {
  for (const c of clients) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
}

describe('faults across hosts', { skip: skipReason ?? false }, () => {
  before(() => {
    hosts = harness!.create(4);
    scratch = mkdtempSync(join(tmpdir(), 'dispyts-faults-'));
  });

  after(async () => {
    await harness!.cleanup();
    rmSync(scratch, { recursive: true, force: true });
    assert.deepEqual(harness!.leftoverNamespaces(), [], 'no namespace left');
    assert.deepEqual(harness!.livePids(), [], 'no process left');
  });

  test('a node SIGKILLed mid-run: reentrant jobs run again elsewhere; restarted, it is used again', async () => {
    const nodes = await startNodes();
    const c = client({ nodes: spec(nodes), pulseInterval: 0.5, reentrant: true, tolerate: ['DISPY_ERR_CONNECTION'], waves: [{ jobs: 3, ms: 2500 }, { jobs: 9, ms: 150, waitNodes: 3 }] });
    let restarted: NetnsNode | undefined;
    try {
      const on = await runningOn(c);
      const victim = nodes[0]!;
      const killedAt = Date.now();
      await victim.stop('SIGKILL');
      const closed = await c.waitFor<{ at: number }>((l) => l.ev === 'node' && l.status === 'Closed' && l.ip === victim.ip, 10_000, 'Closed for the killed node');
      assert.ok(closed.at - killedAt <= (5 * 0.5 + 1) * 1000, `declared dead after ${closed.at - killedAt} ms`);
      restarted = await harness!.startNode(victim.host, { cpus: 1, port: victim.port });
      const w0 = await wave(c, 0);
      assert.ok(w0.every((j) => j.status === 'Finished' && j.result === 5000), JSON.stringify(w0));
      const moved = w0.find((j) => j.id === on.get(victim.ip))!;
      assert.ok(moved.requeued >= 1 && moved.ip !== victim.ip, `the killed node's job ran again elsewhere: ${JSON.stringify(moved)}`);
      assertOnceEach(w0);
      const w1 = await wave(c, 1);
      assert.ok(w1.every((j) => j.status === 'Finished'));
      assert.ok(w1.some((j) => j.ip === victim.ip), `the restarted node ran jobs: ${JSON.stringify(w1.map((j) => j.ip))}`);
      assertOnceEach(w1);
      await c.waitFor((l) => l.ev === 'end', 10_000, 'end');
    } finally {
      await stopAll(restarted ? [...nodes, restarted] : nodes, c);
    }
  });

  test('a node SIGKILLed mid-run, not reentrant: its job ends Abandoned, the others finish', async () => {
    const nodes = await startNodes();
    const c = client({ nodes: spec(nodes), pulseInterval: 0.5, tolerate: ['DISPY_ERR_CONNECTION'], waves: [{ jobs: 3, ms: 2000 }] });
    try {
      const on = await runningOn(c);
      const victim = nodes[1]!;
      await victim.stop('SIGKILL');
      const w0 = await wave(c, 0);
      const lost = w0.find((j) => j.id === on.get(victim.ip))!;
      assert.equal(lost.status, 'Abandoned', JSON.stringify(lost));
      assert.match(lost.exception ?? '', /lost/);
      assert.ok(w0.filter((j) => j !== lost).every((j) => j.status === 'Finished' && j.ip !== victim.ip));
      assertOnceEach(w0);
    } finally {
      await stopAll(nodes, c);
    }
  });

  test('a link set down: the node is declared dead within 5 × pulseInterval; back up, it is used again', async () => {
    const nodes = await startNodes();
    const c = client({ nodes: spec(nodes), pulseInterval: 0.5, reentrant: true, waves: [{ jobs: 3, ms: 3000 }, { jobs: 9, ms: 150, waitNodes: 3 }] });
    const victim = nodes[2]!;
    try {
      const on = await runningOn(c);
      const downAt = Date.now();
      harness!.setLink(victim.host, false);
      const closed = await c.waitFor<{ at: number }>((l) => l.ev === 'node' && l.status === 'Closed' && l.ip === victim.ip, 10_000, 'Closed for the cut-off node');
      assert.ok(closed.at - downAt <= (5 * 0.5 + 1) * 1000, `declared dead after ${closed.at - downAt} ms`);
      // The node, hearing no heartbeat either, closes the client's connection (its jobs wait).
      const deadline = Date.now() + 10_000;
      while (!/client sent no heartbeat/.test(victim.log()) && Date.now() < deadline) await sleep(100);
      assert.match(victim.log(), /client sent no heartbeat/);
      harness!.setLink(victim.host, true);
      const w0 = await wave(c, 0);
      const moved = w0.find((j) => j.id === on.get(victim.ip))!;
      assert.ok(moved.requeued >= 1 && moved.ip !== victim.ip && moved.status === 'Finished', JSON.stringify(moved));
      assert.ok(w0.every((j) => j.status === 'Finished'));
      assertOnceEach(w0);
      const w1 = await wave(c, 1);
      assert.ok(w1.some((j) => j.ip === victim.ip), `the node is used again: ${JSON.stringify(w1.map((j) => j.ip))}`);
      assertOnceEach(w1);
      // Back in touch, the client told the node to stop the attempt it had given up.
      assert.match(victim.log(), /client resumed its jobs/);
    } finally {
      harness!.setLink(victim.host, true);
      await stopAll(nodes, c);
    }
  });

  test('a node restarted behind a dead link is told apart from one whose link returned', async () => {
    const nodes = await startNodes();
    // pulseInterval 2: 3 s without a link is not death (10 s would be).
    const c = client({ nodes: spec(nodes), pulseInterval: 2, reentrant: true, waves: [{ jobs: 3, ms: 5000 }] });
    let restarted: NetnsNode | undefined;
    const [same, other] = [nodes[0]!, nodes[1]!];
    try {
      const on = await runningOn(c);
      harness!.setLink(same.host, false);
      harness!.setLink(other.host, false);
      await other.stop('SIGKILL');
      restarted = await harness!.startNode(other.host, { cpus: 1, port: other.port });
      await sleep(1500);
      harness!.setLink(same.host, true);
      harness!.setLink(other.host, true);
      const w0 = await wave(c, 0);
      assert.ok(w0.every((j) => j.status === 'Finished'), JSON.stringify(w0));
      const kept = w0.find((j) => j.id === on.get(same.ip))!;
      assert.deepEqual([kept.ip, kept.requeued], [same.ip, 0], 'the link came back: the job went on where it was');
      const rerun = w0.find((j) => j.id === on.get(other.ip))!;
      assert.equal(rerun.requeued, 1, `the restarted node's job ran again: ${JSON.stringify(rerun)}`);
      assertOnceEach(w0);
      assert.match(c.stderr(), /restarted/, 'the client says the node restarted');
    } finally {
      harness!.setLink(same.host, true);
      harness!.setLink(other.host, true);
      await stopAll(restarted ? [...nodes, restarted] : nodes, c);
    }
  });

  test('a client paused past the node\'s heartbeat limit gets the results the node kept', async () => {
    const nodes = await startNodes(['--zombie-interval', '60']);
    const c = client({ nodes: spec(nodes), pulseInterval: 0.3, waves: [{ jobs: 3, ms: 2500 }] });
    try {
      const on = await runningOn(c);
      c.proc.kill('SIGSTOP');
      // The nodes close the silent client's connection after 1.5 s; the jobs end at 2.5 s.
      await sleep(4500);
      c.proc.kill('SIGCONT');
      const w0 = await wave(c, 0);
      for (const j of w0) {
        assert.equal(j.status, 'Finished', JSON.stringify(j));
        assert.equal(j.requeued, 0, `${j.id} was not run again`);
      }
      assert.deepEqual(new Set(w0.map((j) => `${j.id}@${j.ip}`)), new Set([...on].map(([ip, id]) => `${id}@${ip}`)));
      assertOnceEach(w0);
      for (const n of nodes) {
        assert.match(n.log(), /client sent no heartbeat/);
        assert.match(n.log(), /"delivered":1[,}].*client resumed its jobs|client resumed its jobs.*"delivered":1/);
      }
    } finally {
      if (c.proc.signalCode === null) c.proc.kill('SIGCONT');
      await stopAll(nodes, c);
    }
  });

  test('a client SIGKILLed mid-run: its jobs end after the zombie interval and a second client gets the CPUs', async () => {
    const nodes = await startNodes(['--zombie-interval', '1']);
    const a = client({ nodes: spec(nodes), waves: [{ jobs: 3, ms: 30_000 }] });
    let b: LiveClient | undefined;
    try {
      await runningOn(a);
      b = client({ nodes: spec(nodes), tolerate: ['DISPY_ERR_NODE_BUSY'], waves: [{ jobs: 6, ms: 200, waitNodes: 3 }] });
      await sleep(500);
      const killedAt = Date.now();
      a.proc.kill('SIGKILL');
      const ready = await b.waitFor<{ nodes: string[] }>((l: Line) => l.ev === 'ready', 15_000, 'the second client set up on the nodes');
      assert.deepEqual(ready.nodes, nodes.map((n) => n.ip).sort());
      const w0 = await wave(b, 0);
      assert.ok(w0.every((j) => j.status === 'Finished'));
      assertOnceEach(w0);
      for (const n of nodes) assert.match(n.log(), /client did not return: terminating its jobs/);
      process.stdout.write(`# second client set up ${Date.now() - killedAt} ms after the first was killed\n`);
    } finally {
      await stopAll(nodes, a, ...(b ? [b] : []));
    }
  });

  test('recoverJobs fetches the results of a SIGKILLed client, once; terminatePending ends the rest', async () => {
    const nodes = await startNodes(['--zombie-interval', '60']);
    const recoverFile = join(scratch, 'crashed.recover.json');
    const a = client({ nodes: spec(nodes), recoverFile, waves: [{ jobs: 3, ms: 1500 }] });
    const recover = async (extra: Record<string, unknown> = {}) => {
      const r = await harness!.runClient(hosts[3]!, 'recover-client', [JSON.stringify({ recoverFile, secret: TEST_SECRET, ...extra })]);
      return r.json as { jobs?: { id: string; status: string; result: unknown; ip: string | null }[]; error?: { code: string; message: string } };
    };
    try {
      await runningOn(a);
      a.proc.kill('SIGKILL');
      const got = await recover();
      assert.deepEqual(got.jobs?.map((j) => [j.id, j.status, j.result]), [0, 1, 2].map((i) => [`w0-${i}`, 'Finished', 3000]), JSON.stringify(got));
      assert.deepEqual(new Set(got.jobs!.map((j) => j.ip)), new Set(nodes.map((n) => n.ip)));
      assert.deepEqual((await recover()).jobs, [], 'each result is handed out once');

      // Jobs that would run for a long time: terminated on request.
      // (The nodes free themselves once the recovery found nothing pending; a client that comes
      // a moment early is told they are busy and tries again.)
      const a2 = client({ nodes: spec(nodes), recoverFile, tolerate: ['DISPY_ERR_NODE_BUSY'], waves: [{ jobs: 3, ms: 60_000 }] });
      await runningOn(a2);
      a2.proc.kill('SIGKILL');
      await a2.result;
      const t0 = Date.now();
      const ended = await recover({ terminatePending: true });
      assert.deepEqual(ended.jobs?.map((j) => [j.id, j.status]), [0, 1, 2].map((i) => [`w0-${i}`, 'Terminated']), JSON.stringify(ended));
      assert.ok(Date.now() - t0 < 20_000);
      // The nodes are free again for another client.
      const b = client({ nodes: spec(nodes), tolerate: ['DISPY_ERR_NODE_BUSY'], waves: [{ jobs: 3, ms: 100, waitNodes: 3 }] });
      const w0 = await wave(b, 0, 20_000);
      assert.ok(w0.every((j) => j.status === 'Finished'));
      await b.result;
    } finally {
      await stopAll(nodes, a);
    }
  });
});
