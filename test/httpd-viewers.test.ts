/**
 * Every viewer sees every change (dispy's B1 fixed): two browsers with cookie cursors, two
 * `?since=` pollers and two SSE streams watch the same cluster while jobs run, a node's CPUs
 * change and a node closes; each converges to the server's state. SSE resumes with
 * Last-Event-ID, stale or foreign cursors resync, removed clusters reach viewers.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyNode } from '../src/index.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';
import { CookieViewer, SinceViewer, SseViewer, applyDelta, plain, request, snapshot, type ViewState } from './helpers/http-client.js';
import { C, compute, startServer } from './helpers/httpd.js';

let nodes: TestNode[];
before(async () => {
  nodes = await startNodes(2, { first: 92, cpus: 2, logLevel: 'warn' });
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

/** Polls `fn` every `ms` until stopped (or for 60 s at most); errors fail the test at stop(). */
function every(ms: number, fn: () => Promise<unknown>): { stop(): Promise<void>; readonly rounds: number } {
  let running = true;
  let error: unknown = null;
  let rounds = 0;
  const deadline = Date.now() + 60_000;
  const loop = (async () => {
    while (running && Date.now() < deadline) {
      try {
        await fn();
        rounds++;
      } catch (err) {
        error = err;
        return;
      }
      await new Promise((r) => setTimeout(r, ms));
    }
  })();
  return {
    get rounds() {
      return rounds;
    },
    async stop() {
      running = false;
      await loop;
      if (error) throw error;
    },
  };
}

/** The server's state once it holds still across two snapshots (pulses may change a node). */
async function stableTruth(base: string, viewers: { poll?: () => Promise<unknown> }[]): Promise<ViewState> {
  for (let i = 0; ; i++) {
    const before = await snapshot(base);
    for (const v of viewers) await v.poll?.();
    const afterwards = await snapshot(base);
    if (JSON.stringify(plain(before)) === JSON.stringify(plain(afterwards)) || i > 20) return afterwards;
  }
}

test('two cookie viewers, two since= viewers and two SSE viewers each see every change', async () => {
  const [a, b] = nodes as [TestNode, TestNode];
  const cluster = new JobCluster(compute, {
    depends: [C],
    nodes: [a, b].map((n) => ({ host: n.host, port: n.port })),
    secret: TEST_SECRET,
  });
  const { server, base } = await startServer(cluster);
  const cookies = [new CookieViewer(base), new CookieViewer(base)];
  const sinces = [new SinceViewer(base), new SinceViewer(base)];
  const sses = [new SseViewer(`${base}/events?interval=0.1`), new SseViewer(`${base}/events?interval=0.35`)];
  try {
    await Promise.all(sses.map((s) => s.opened));
    for (const s of sses) {
      assert.equal(s.status, 200);
      assert.match(String(s.headers['content-type']), /^text\/event-stream/);
    }
    await until(() => cluster.status().nodes.length === 2, 10_000, 'two nodes');
    for (const v of cookies) await v.load();
    const pollers = [
      every(90, () => cookies[0]!.poll()),
      every(270, () => cookies[1]!.poll()),
      every(120, () => sinces[0]!.poll()),
      every(410, () => sinces[1]!.poll()),
    ];

    const jobs = Array.from({ length: 10 }, (_, i) => cluster.submit(new C(String(i), 1), 0.2 + (i % 3) * 0.1));
    await Promise.all(jobs.map((j) => j.wait()));
    assert.equal(await cluster.setNodeCpus(a.host, 1), 1);
    await cluster.submit(new C('late', 1), 0.2).wait();
    assert.equal(await cluster.deallocateNode(b.host), 0);
    // Each viewer polls at least twice more after the last change.
    const marks = pollers.map((p) => p.rounds);
    await until(() => pollers.every((p, i) => p.rounds >= marks[i]! + 2), 10_000, 'two more polls of each viewer');
    for (const p of pollers) await p.stop();

    const truth = await stableTruth(base, [...cookies, ...sinces]);
    const t = plain(truth);
    assert.equal(t.compute!.jobs.submitted, 11);
    assert.equal(t.compute!.jobs.done, 11);
    assert.equal(t.compute!.nodes[a.host]!.cpus, 1);
    assert.equal(t.compute!.nodes[b.host]!.status, DispyNode.Closed);
    for (const [i, v] of [...cookies, ...sinces].entries()) {
      assert.deepEqual(plain(v.state), t, `viewer ${i} converged`);
      assert.ok(
        v.seen.some((n) => n.ip_addr === a.host && n.cpus === 1),
        `viewer ${i} saw the CPU change`,
      );
      assert.ok(
        v.seen.some((n) => n.ip_addr === b.host && n.status === DispyNode.Closed),
        `viewer ${i} saw the closed node`,
      );
      assert.ok(
        v.seen.some((n) => n.ip_addr === b.host && n.jobs_done > 0),
        `viewer ${i} saw jobs done on ${b.host}`,
      );
    }
    for (const [i, s] of sses.entries()) {
      await s.until(() => JSON.stringify(plain(s.state)) === JSON.stringify(plain(truth)), 5_000, `SSE viewer ${i} converged`);
      assert.ok(
        s.seen.some((n) => n.ip_addr === a.host && n.cpus === 1),
        `SSE viewer ${i} saw the CPU change`,
      );
      assert.ok(
        s.seen.some((n) => n.ip_addr === b.host && n.status === DispyNode.Closed),
        `SSE viewer ${i} saw the closed node`,
      );
      // Coalesced at the interval asked for. Arrival times are measured here, and a loaded
      // machine can bunch two sends together on the way, so the typical gap is checked.
      const gaps = s.times
        .slice(2)
        .map((t0, k) => t0 - s.times[k + 1]!)
        .sort((x, y) => x - y);
      const interval = i === 0 ? 100 : 350;
      const medianGap = gaps[Math.floor(gaps.length / 2)] ?? interval;
      assert.ok(medianGap >= interval * 0.9, `SSE viewer ${i}: events a median ${medianGap} ms apart, interval ${interval} ms`);
      assert.match(s.events[0]!.id!, /^[0-9a-f]+:\d+$/);
      assert.equal(JSON.parse(s.events[0]!.data).resync, true);
    }
  } finally {
    for (const s of sses) s.close();
    await server.shutdown({ wait: false });
    await cluster.close();
  }
});

test('SSE resumes with Last-Event-ID; stale, future or foreign cursors resync; removals reach viewers', async () => {
  const [a] = nodes as [TestNode, TestNode];
  const c1 = new JobCluster(compute, { depends: [C], nodes: [{ host: a.host, port: a.port }], secret: TEST_SECRET, name: 'one' });
  const c2 = new JobCluster(compute, { depends: [C], nodes: [{ host: a.host, port: a.port }], secret: TEST_SECRET, name: 'two' });
  const { server, base } = await startServer(c1);
  server.addCluster(c2);
  try {
    await until(() => c1.status().nodes.length === 1 && c2.status().nodes.length === 1, 10_000, 'nodes');
    const first = new SseViewer(`${base}/events?interval=0.05`);
    await first.until(() => first.events.length > 0 && first.state.size === 2, 5_000, 'first snapshot');
    const kept: ViewState = first.state;
    const lastId = first.lastId!;
    first.close();

    await c1.submit(new C('a', 1), 0.1).wait();
    const resumed = new SseViewer(`${base}/events?interval=0.05`, { headers: { 'last-event-id': lastId } });
    await resumed.until(() => resumed.events.length > 0, 5_000, 'resumed event');
    const d = JSON.parse(resumed.events[0]!.data);
    assert.equal(d.resync, false, 'a known cursor resumes with a delta');
    assert.deepEqual(
      d.clusters.map((c: any) => c.name),
      ['one'],
      'only the cluster that changed',
    );
    applyDelta(kept, d);
    assert.deepEqual(plain(kept), plain(await snapshot(base)));

    // A cluster removed while a viewer watches: it appears as a removal.
    const sv = new SinceViewer(base);
    await sv.poll();
    assert.equal(server.delCluster(c2), true);
    await resumed.until(() => resumed.events.some((e) => JSON.parse(e.data).removed_clusters?.includes('two')), 5_000, 'removal over SSE');
    const rd = await sv.poll();
    assert.deepEqual(rd.removed_clusters, ['two']);
    assert.deepEqual([...sv.state.keys()], ['one']);
    assert.deepEqual([...resumed.state.keys()], ['one']);
    resumed.close();

    const epoch = rd.epoch;
    const foreign = new SseViewer(`${base}/events?interval=0.05`, { headers: { 'last-event-id': `abcdef:${rd.cursor}` } });
    await foreign.until(() => foreign.events.length > 0, 5_000, 'foreign cursor');
    assert.equal(JSON.parse(foreign.events[0]!.data).resync, true);
    foreign.close();
    for (const q of [`since=${rd.cursor}&epoch=abcdef`, 'since=0', `since=${rd.cursor + 1000}`]) {
      const r = (await request(`${base}/cluster_updates?${q}`)).json();
      assert.equal(r.resync, true, q);
      assert.equal(r.epoch, epoch);
      assert.deepEqual(
        r.clusters.map((c: any) => c.name),
        ['one'],
      );
    }
    const same = (await request(`${base}/cluster_updates?since=${rd.cursor}&epoch=${epoch}`)).json();
    assert.equal(same.resync, false);
    for (const q of ['since=abc', 'since=-1', 'since=1e3', 'since=99999999999999999999', `since=1&epoch=XYZ`]) {
      const r = await request(`${base}/cluster_updates?${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(r.json().error.code, 'DISPY_ERR_BAD_REQUEST');
    }
    for (const q of ['interval=0', 'interval=abc', 'interval=99999', 'since=x']) {
      const r = await request(`${base}/events?${q}`);
      assert.equal(r.status, 400, q);
    }
  } finally {
    await server.shutdown({ wait: false });
    await Promise.all([c1.close(), c2.close()]);
  }
});
