/**
 * The event log, against real nodes (127.0.0.156, 127.0.0.157): node arrivals, CPU changes,
 * departures and a death (a node killed while running a job), every action with who did it and
 * its result; bounded with resync for stale cursors; `/event_log` and the `log` events of
 * `/events`. In Chromium: the Events page lists the log and shows new entries as they happen,
 * and another open page counts them in its top bar.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { DispyHTTPServer, JobCluster, type DispyJob } from '../src/index.js';
import { EventLog } from '../src/httpd/event-log.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';
import { post, request, SseViewer } from './helpers/http-client.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser tests skipped: ${unavailable}`);

const PASSWORD = 'erin-is-the-operator';
const AUTH = { authorization: `Basic ${Buffer.from(`erin:${PASSWORD}`).toString('base64')}` };

async function sleepy(ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return ms;
}

test('EventLog: numbered, bounded, resync for a cursor older than what it keeps or from before a restart', () => {
  const log = new EventLog(3);
  const seen: number[] = [];
  log.subscribe((e) => seen.push(e.seq));
  for (let i = 1; i <= 5; i++) log.add({ kind: 'cluster', text: `e${i}` }, 1000 + i);
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.deepEqual(
    log.since(0).entries.map((e) => e.text),
    ['e3', 'e4', 'e5'],
  );
  assert.equal(log.since(0).resync, true, 'entries 1 and 2 are gone');
  assert.deepEqual(
    log.since(3).entries.map((e) => e.seq),
    [4, 5],
  );
  assert.equal(log.since(3).resync, false);
  assert.equal(log.since(3).cursor, 5);
  assert.equal(log.since(5).entries.length, 0);
  assert.equal(log.since(99).resync, true, 'a cursor ahead of the log');
  assert.equal(log.since(99).entries.length, 3);
  assert.deepEqual(
    log.since(0, 1).entries.map((e) => e.seq),
    [5],
    'the newest when cut',
  );
});

describe('event log (127.0.0.156-157)', () => {
  let A: TestNode;
  let B: TestNode;
  let cluster: JobCluster;
  let server: DispyHTTPServer;
  let base: string;
  let browser: Browser | undefined;
  const pageErrors: string[] = [];

  const entries = async (since = 0): Promise<any[]> => {
    const r = await request(`${base}/event_log?since=${since}`, { headers: AUTH });
    assert.equal(r.status, 200, r.body);
    return r.json().entries;
  };
  const waitEntry = (pred: (e: any) => boolean, what: string) => until(async () => (await entries()).find(pred), 15_000, what);

  before(async () => {
    [A, B] = await Promise.all([
      startNode({ host: '127.0.0.156', cpus: 1, logLevel: 'warn', name: 'alpha' }),
      startNode({ host: '127.0.0.157', cpus: 2, logLevel: 'warn', name: 'beta' }),
    ]);
    // The server first, so it sees the nodes arrive.
    server = new DispyHTTPServer(null, {
      host: '127.0.0.1',
      port: 0,
      pollSec: 1,
      logLevel: 'silent',
      auth: { users: { erin: { password: PASSWORD, role: 'admin' } } },
    });
    base = (await server.listening).url.replace('localhost', '127.0.0.1');
    cluster = new JobCluster(sleepy, {
      nodes: [
        { host: A.host, port: A.port },
        { host: B.host, port: B.port },
      ],
      secret: TEST_SECRET,
      name: 'evlog',
      pulseInterval: 0.5,
    });
    server.addCluster(cluster);
    await until(() => cluster.status().nodes.length === 2, 15_000, 'two nodes up');
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    await server?.shutdown({ wait: false });
    await cluster?.close({ terminate: true });
    await Promise.all([A?.stop(), B?.stop()]);
    assert.deepEqual(pageErrors, [], 'no script error in the pages');
  });

  test('arrivals, an action with who and result, CPU changes, a departure; streamed on /events as they happen', async () => {
    const first = await waitEntry((e) => e.kind === 'node-arrived' && e.node === B.host, 'B arrived');
    assert.equal(first.text, 'Node 127.0.0.157 (beta) joined cluster evlog with 2 CPUs');
    assert.equal(first.cluster, 'evlog');
    const all = await entries();
    assert.equal(all[0].kind, 'cluster');
    assert.equal(all[0].text, 'Following cluster evlog');
    assert.ok(
      all.some(
        (e) => e.kind === 'node-arrived' && e.node === A.host && e.text === 'Node 127.0.0.156 (alpha) joined cluster evlog with 1 CPU',
      ),
    );

    // A stream that follows the log from now on.
    const stream = new SseViewer(`${base}/events?interval=0.2&log=now`, { headers: AUTH });
    const logged = (pred: (x: any) => boolean) => stream.events.some((e) => e.event === 'log' && JSON.parse(e.data).entries.some(pred));
    try {
      await stream.until(() => stream.events.some((e) => e.event === 'log'), 10_000, 'the first log event');
      const opened = stream.events.find((e) => e.event === 'log')!;
      assert.deepEqual(JSON.parse(opened.data).entries, [], 'from now on: no backlog');
      const cursor = JSON.parse(opened.data).cursor;
      assert.equal(cursor, (await request(`${base}/event_log?limit=1`, { headers: AUTH })).json().cursor);

      const r = await post(base, '/set_cpus', { [B.host]: '1' }, AUTH);
      assert.deepEqual(r.json(), { [B.host]: 1 });
      await stream.until(() => logged((x) => x.kind === 'node-cpus'), 10_000, 'the CPU change streamed');
      const got = stream.events.filter((e) => e.event === 'log').flatMap((e) => JSON.parse(e.data).entries);
      assert.ok(
        got.some((x: any) => x.kind === 'action' && x.user === 'erin'),
        'the action streamed too',
      );
      const action = (await entries(cursor)).find((e) => e.kind === 'action');
      assert.deepEqual(
        { user: action.user, role: action.role, action: action.action, result: action.result, text: action.text },
        {
          user: 'erin',
          role: 'admin',
          action: 'set_cpus',
          result: 'ok',
          text: `erin (admin): set CPUs of ${B.host} to 1: ${B.host}: now 1`,
        },
      );
      assert.ok(got.some((e: any) => e.kind === 'node-cpus' && e.text === 'CPUs of node 127.0.0.157 (beta) in cluster evlog: 2 → 1'));

      const d = await post(base, '/deallocate_node', { cluster: 'evlog', nodes: JSON.stringify([B.host]) }, AUTH);
      assert.equal(d.json(), 0);
      await stream.until(() => logged((x) => x.kind === 'node-left' && x.node === B.host), 10_000, 'the departure streamed');
      const left = (await entries()).filter((e) => e.kind === 'node-left');
      assert.equal(left.at(-1).text, 'Node 127.0.0.157 (beta) left cluster evlog (closed, deallocated or stopped)');
      assert.ok(
        (await entries()).some(
          (e) =>
            e.kind === 'action' &&
            e.action === 'deallocate_node' &&
            e.result === 'ok' &&
            e.text === `erin (admin): deallocate node ${B.host} for cluster evlog: done`,
        ),
      );
    } finally {
      stream.close();
    }
    // A bad cursor is a 400, not a silent empty log.
    const bad = await request(`${base}/event_log?since=abc`, { headers: AUTH });
    assert.equal(bad.status, 400);
    assert.match(bad.json().error.message, /`since` must be a non-negative integer/);
    assert.equal((await request(`${base}/events?log=-1`, { headers: AUTH })).status, 400);
  });

  test('Events page (Chromium): the log, new entries as they happen, and a count of them on other pages', {
    skip: unavailable ?? false,
  }, async () => {
    browser = await launchChromium();
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const events = await ctx.newPage();
    const monitor = await ctx.newPage();
    for (const p of [events, monitor]) p.on('pageerror', (e) => pageErrors.push(e.message));
    // Sign in with the form; the Events page asked for is where it leads.
    await events.goto(`${base}/events.html`);
    await events.waitForURL(/\/login\?next=%2Fevents\.html$/);
    await events.locator('#user').fill('erin');
    await events.locator('#password').fill(PASSWORD);
    await events.locator('button[type=submit]').click();
    await events.waitForURL(/\/events\.html$/);
    const texts = () =>
      events.$$eval('[data-testid=event-table] tbody tr[data-seq]', (trs) =>
        trs.map((t) => t.querySelector('[data-testid=event-text]')!.textContent!),
      );
    const n = (await entries()).length;
    await until(async () => (await texts()).length === n, 10_000, 'every entry listed');
    assert.equal((await texts())[0], (await entries()).at(-1).text, 'newest first');
    await monitor.goto(`${base}/monitor.html`);
    await monitor.locator('[data-testid=whoami]').waitFor();
    // Let the Monitor's stream open before anything happens.
    await until(async () => (await monitor.locator('[data-testid=conn]').textContent())?.includes('Live'), 10_000, 'the Monitor live');

    // An action taken elsewhere shows up on the open page without a reload.
    await post(base, '/allocate_node', { cluster: 'evlog', nodes: JSON.stringify([B.host]) }, AUTH);
    await until(
      async () =>
        (await texts())[0]?.startsWith(`erin (admin): allocate node ${B.host}`) ||
        (await texts())[1]?.startsWith(`erin (admin): allocate node ${B.host}`),
      10_000,
      'the action on the Events page',
    );

    // A node killed while it runs a job: the cluster loses it (its job is abandoned).
    const job: DispyJob = cluster.submit(30_000);
    await until(() => job.status === 6, 10_000, 'the job running');
    const victim = job.ipAddr === A.host ? A : B;
    await victim.stop('SIGKILL');
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_ABANDONED' });
    const died = `Node ${victim.host} (${victim === A ? 'alpha' : 'beta'}) was lost by cluster evlog with 1 running job (abandoned or re-queued)`;
    await until(async () => (await texts()).includes(died), 15_000, 'the death on the Events page');
    const entry = (await entries()).find((e) => e.kind === 'node-died');
    assert.equal(entry.node, victim.host);

    // Filters.
    await events.locator('[data-testid=filter-kind]').selectOption('action');
    await until(
      async () =>
        (
          await events.$$eval('[data-testid=event-table] tbody tr[data-seq]', (trs) => trs.map((t) => (t as HTMLElement).dataset.kind))
        ).every((k) => k === 'action'),
      5000,
      'actions only',
    );
    await events.locator('[data-testid=filter-kind]').selectOption('');
    await events.locator('[data-testid=filter-text]').fill('was lost');
    await until(async () => (await texts()).length === 1, 5000, 'one entry with that text');

    // The Monitor counted the new entries in its top bar.
    const badge = monitor.locator('[data-testid=events-badge]');
    await badge.waitFor();
    assert.ok(Number(await badge.textContent()) >= 3, (await badge.textContent()) ?? '');
    await ctx.close();
  });
});
