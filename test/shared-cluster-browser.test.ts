/**
 * In Chromium: the scheduler's `--httpd` monitor shows both client programs' clusters (two
 * clusters of the same name from one address, under unique names) and `* Combined`; and a
 * client's own DispyHTTPServer over its SharedJobCluster, whose Manage page says that CPUs are
 * ignored when adding a node and disables the field. Addresses 127.0.0.238-241 only. Skipped,
 * with the reason printed, when /usr/bin/chromium is missing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { DispyHTTPServer, SharedJobCluster } from '../src/index.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';
import { request } from './helpers/http-client.js';
import { startClient, startScheduler, type TestClient, type TestScheduler } from './helpers/scheduler-process.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser tests skipped: ${unavailable}`);

const CLUSTER_SECRET = 'shared-browser-test-cluster-secret';
const SCHED_HOST = '127.0.0.238';

describe('scheduler monitor and a shared cluster in Chromium', { skip: unavailable ?? false }, () => {
  let browser: Browser;
  let nodes: TestNode[] = [];
  let scheduler: TestScheduler;
  const clients: TestClient[] = [];
  const pageErrors: string[] = [];

  before(async () => {
    const [b, n] = await Promise.all([
      launchChromium(),
      Promise.all(['127.0.0.239', '127.0.0.240'].map((host) => startNode({ host, cpus: 2, logLevel: 'warn' }))),
    ]);
    browser = b;
    nodes = n;
    scheduler = await startScheduler({
      host: SCHED_HOST,
      nodes: nodes.map((x) => `${x.host}:${x.port}`),
      nodeSecret: TEST_SECRET,
      clusterSecret: CLUSTER_SECRET,
      logLevel: 'info',
      httpdHost: SCHED_HOST,
    });
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    for (const c of clients) await c.kill('SIGKILL');
    await scheduler?.stop();
    await Promise.all(nodes.map((x) => x.stop()));
    assert.deepEqual(pageErrors, [], 'no script error in the pages');
  });

  async function newPage(): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return page;
  }

  const text = async (page: Page, sel: string) =>
    (
      (await page
        .locator(sel)
        .first()
        .textContent({ timeout: 1000 })
        .catch(() => null)) ?? ''
    ).trim();

  test("the scheduler's monitor shows both clients' clusters and * Combined", async () => {
    // Two programs on one address, same cluster name: unique names on the scheduler.
    // Jobs long enough to be still running when a loaded machine gets the page up (the
    // clients are killed at the end).
    const cfg = { schedulerHost: SCHED_HOST, schedulerPort: scheduler.port, secret: CLUSTER_SECRET, name: 'square', ms: 60_000 };
    clients.push(startClient({ ...cfg, jobs: 2 }));
    await clients[0]!.line((l) => l.event === 'running');
    clients.push(startClient({ ...cfg, jobs: 1 }));
    await until(() => clients.every((c) => c.lines.some((l) => l.event === 'running')), 20_000, 'both clients running jobs');
    const names = ((await request(`${scheduler.monitor}/cluster_status`)).json() as { name: string }[]).map((c) => c.name).sort();
    assert.equal(names.length, 2);
    assert.match(names[0]!, /^square @ [\d.]+$/);
    assert.equal(names[1], `${names[0]} (2)`);

    const page = await newPage();
    await page.goto(`${scheduler.monitor}/`);
    await until(async () => (await page.locator('#cluster option').count()) === 3, 10_000, 'three choices');
    const labels = (await page.locator('#cluster option').allTextContents()).map((s) => s.trim());
    assert.deepEqual([...labels].sort(), ['* Combined', ...names].sort());
    await page.locator('#cluster').selectOption({ label: '* Combined' });
    await until(async () => (await text(page, '[data-testid=jobs-running]')) === '3', 10_000, 'combined: 3 running');
    assert.equal(await text(page, '[data-testid=cluster-name]'), '* Combined');
    assert.equal(await text(page, '[data-testid=nodes-count]'), '2');
    await page.locator('#cluster').selectOption({ label: names[1]! });
    await until(async () => (await text(page, '[data-testid=jobs-running]')) === '1', 10_000, 'second cluster: 1 running');
    await page.locator('#cluster').selectOption({ label: names[0]! });
    await until(async () => (await text(page, '[data-testid=jobs-running]')) === '2', 10_000, 'first cluster: 2 running');
    await page.close();
  });

  test("a SharedJobCluster's own DispyHTTPServer: Manage says CPUs are ignored when adding a node", async () => {
    const cluster = new SharedJobCluster((x: number) => x, {
      schedulerHost: SCHED_HOST,
      schedulerPort: scheduler.port,
      secret: CLUSTER_SECRET,
      name: 'mine',
      logLevel: 'silent',
    });
    const server = new DispyHTTPServer(cluster, { host: '127.0.0.241', port: 0, pollSec: 1, logLevel: 'warn' });
    try {
      const base = (await server.listening).url;
      assert.equal(await cluster.submit(7).wait(), 7);
      const page = await newPage();
      await page.goto(`${base}/manage.html`);
      await page.locator('[data-testid=add-cpus-ignored]').waitFor({ timeout: 10_000 });
      assert.match(await text(page, '[data-testid=add-cpus-ignored]'), /CPUs are ignored when adding a node to this SharedJobCluster/);
      assert.equal(await page.locator('[data-testid=add-cpus]').first().isDisabled(), true);
      await page.locator('[data-testid=add-host]').first().fill('127.0.0.240');
      assert.match(await text(page, '[data-testid=add-result]'), /CPUs are ignored for a SharedJobCluster/);
      assert.match(await text(page, '[data-testid=cpus-disabled]'), /SharedJobCluster/);
      await page.close();
    } finally {
      await server.shutdown({ wait: false });
      await cluster.close({ terminate: true });
    }
  });
});
