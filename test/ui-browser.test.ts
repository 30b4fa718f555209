/**
 * The Monitor, Node and Manage pages in real Chromium, against real node daemons (127.0.0.111–
 * 127.0.0.114) and the real DispyHTTPServer: counts and rows match the cluster, sorting,
 * running jobs with their toString() arguments, terminating from the page, adding a node and
 * lowering CPUs on Manage, allocate / deallocate / close from the Monitor, two browsers following
 * every change, the update interval and the Update button, recovery after a server restart,
 * cluster text shown as text (no markup, no dialog), phone and desktop layouts with screenshots
 * in test-results/. Skipped, with the reason printed, when /usr/bin/chromium is missing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { DispyHTTPServer, DispyJob, JobCluster, type ClusterStatusEvent } from '../src/index.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { ROOT, TEST_SECRET, alive, startNode, until, type TestNode } from './helpers/daemon.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser tests skipped: ${unavailable}`);

const XSS_NAME = '<img src=x onerror=alert(1)>';
const SHOTS = join(ROOT, 'test-results');

/** A class shipped with the computation; the Node page shows its toString(). */
class C {
  s: string;
  i: number;
  constructor(s: string, i: number) {
    this.s = s;
    this.i = i;
  }
  toString() {
    return `C(${this.s}, ${this.i.toFixed(4)})`;
  }
}

/** Sleeps `ms`; writes the job's process id to `pidFile` first when one is given. */
async function work(obj: C, ms: number, pidFile: string) {
  if (pidFile) require('node:fs').writeFileSync(pidFile, String(process.pid));
  await new Promise((r) => setTimeout(r, ms));
  return obj.i * 2;
}

describe('browser interface (Chromium)', { skip: unavailable ?? false }, () => {
  let browser: Browser;
  let nodes: TestNode[];
  let A: TestNode;
  let B: TestNode;
  let D: TestNode;
  let E: TestNode;
  let cluster: JobCluster;
  let server: DispyHTTPServer;
  let base: string;
  let port: number;
  let dir: string;
  const dialogs: string[] = [];
  const pageErrors: string[] = [];
  const contexts: BrowserContext[] = [];
  let busyPeak = new Map<string, number>();
  let jobSeq = 0;

  const spec = (n: TestNode) => ({ host: n.host, port: n.port });

  async function newPage(opts: Parameters<Browser['newContext']>[0] = {}): Promise<Page> {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...opts });
    contexts.push(ctx);
    ctx.on('page', (p) => watch(p));
    const page = await ctx.newPage();
    return page;
  }
  function watch(p: Page): void {
    p.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    p.on('pageerror', (e) => pageErrors.push(e.message));
  }

  /** Quick jobs, waited for. */
  async function runQuick(n: number, ms = 50): Promise<DispyJob[]> {
    const jobs = Array.from({ length: n }, () => {
      const j = cluster.submit(new C(`q${++jobSeq}`, jobSeq), ms, '');
      j.id = `q${jobSeq}`;
      return j;
    });
    await Promise.all(jobs.map((j) => j.wait()));
    return jobs;
  }

  async function serverStatus(): Promise<any> {
    const r = await fetch(`${base}/cluster_status`);
    return ((await r.json()) as any[])[0];
  }

  const textOf = (page: Page, sel: string) => page.locator(sel).first().textContent({ timeout: 5_000 });
  async function waitText(page: Page, sel: string, want: string | RegExp, timeoutMs = 10_000): Promise<void> {
    await until(
      async () => {
        const t =
          (
            await page
              .locator(sel)
              .first()
              .textContent({ timeout: 1_000 })
              .catch(() => null)
          )?.trim() ?? '';
        return typeof want === 'string' ? t === want : want.test(t);
      },
      timeoutMs,
      `${sel} to read ${String(want)}`,
    );
  }
  const rowIps = (page: Page) => page.$$eval('table.nodes tr.row', (rows) => rows.map((r) => (r as HTMLElement).dataset.ip!));
  const num = (s: string | null) => Number((s ?? '').replace(/,/g, '').trim());

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dispyts-ui-'));
    mkdirSync(SHOTS, { recursive: true });
    const started = await Promise.all([
      startNode({ host: '127.0.0.111', cpus: 2, logLevel: 'warn', name: 'alpha' }),
      startNode({ host: '127.0.0.112', cpus: 2, logLevel: 'warn', name: 'beta' }),
      startNode({ host: '127.0.0.113', cpus: 1, logLevel: 'warn', name: XSS_NAME }),
      startNode({ host: '127.0.0.114', cpus: 2, logLevel: 'warn', name: 'echo' }),
    ] as const);
    nodes = started;
    [A, B, D, E] = started;
    cluster = new JobCluster(work, { depends: [C], nodes: [spec(A), spec(B), spec(D)], secret: TEST_SECRET });
    cluster.on('status', (e: ClusterStatusEvent) => {
      if (e.node && e.job) busyPeak.set(e.node.ipAddr, Math.max(busyPeak.get(e.node.ipAddr) ?? 0, e.node.busy));
    });
    server = new DispyHTTPServer(cluster, { host: '127.0.0.1', port: 0, pollSec: 1, logLevel: 'warn' });
    const addr = await server.listening;
    port = addr.port;
    base = `http://127.0.0.1:${port}`;
    await until(() => cluster.status().nodes.length === 3, 15_000, 'three nodes up');
    browser = await launchChromium();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await server?.shutdown({ wait: false }).catch(() => undefined);
    await cluster?.close({ terminate: true }).catch(() => undefined);
    await Promise.all((nodes ?? []).map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(dialogs, [], 'no dialog opened');
    assert.deepEqual(pageErrors, [], 'no script error in the pages');
  });

  let longJobs: DispyJob[] = [];
  let longPids: string[] = [];

  test('Monitor: counts and node rows match the cluster; sort by any column, both ways; names are text', async () => {
    await runQuick(3);
    longPids = [join(dir, 'long0.pid'), join(dir, 'long1.pid')];
    longJobs = [
      cluster.submit(new C('<b>bold</b>', 1.5), 60_000, longPids[0]!),
      cluster.submit(new C('<i>x</i>', 2), 60_000, longPids[1]!),
    ];
    longJobs[0]!.id = 'long-0';
    longJobs[1]!.id = 'long-1';
    await until(() => longPids.every((f) => existsSync(f)), 10_000, 'long jobs running');

    const page = await newPage();
    watch(page);
    await page.goto(`${base}/`);
    await until(async () => (await rowIps(page)).length === 3, 10_000, 'three rows');
    await waitText(page, '[data-testid=jobs-done]', '3');
    await waitText(page, '[data-testid=jobs-running]', '2');
    await waitText(page, '[data-testid=jobs-submitted]', '5');
    assert.equal((await textOf(page, '[data-testid=jobs-queued]'))?.trim(), '0');

    // Every row as the cluster has it.
    await until(
      async () => {
        for (const n of cluster.status().nodes) {
          const row = page.locator(`tr.row[data-ip="${n.ipAddr}"]`);
          if ((await row.locator('.c-name .nm').textContent()) !== n.name) return false;
          if (num(await row.locator('td.c-cpus').textContent()) !== n.cpus) return false;
          if (num(await row.locator('td.c-busy').textContent()) !== n.busy) return false;
          if (num(await row.locator('td.c-done').textContent()) !== n.jobsDone) return false;
        }
        return true;
      },
      10_000,
      'rows to match the cluster',
    );
    assert.equal(num(await textOf(page, '[data-testid=total-busy]')), 2);
    assert.equal(num(await textOf(page, '[data-testid=total-cpus]')), 5);

    // The node named like markup is shown as that text, and no image element exists.
    assert.equal(await page.locator(`tr.row[data-ip="${D.host}"] .c-name .nm`).textContent(), XSS_NAME);
    assert.equal(await page.locator('img').count(), 0);

    // Default: IP address, descending (numerically: .113 > .112 > .111).
    assert.deepEqual(await rowIps(page), [D.host, B.host, A.host]);
    await page.locator('th.c-ip button').click();
    await until(async () => (await rowIps(page)).join() === [A.host, B.host, D.host].join(), 10_000, 'IP ascending');
    assert.equal(await page.locator('thead th.c-ip').getAttribute('aria-sort'), 'ascending');
    await page.locator('th.c-ip button').click();
    await until(async () => (await rowIps(page)).join() === [D.host, B.host, A.host].join(), 10_000, 'IP descending');
    // Name: descending, then ascending ('<img…' sorts before letters).
    await page.locator('th.c-name button').click();
    await until(async () => (await rowIps(page)).join() === [B.host, A.host, D.host].join(), 10_000, 'name descending');
    await page.locator('th.c-name button').click();
    await until(async () => (await rowIps(page)).join() === [D.host, A.host, B.host].join(), 10_000, 'name ascending');
    // CPUs descending: the 1-CPU node last.
    await page.locator('th.c-cpus button').click();
    await until(async () => (await rowIps(page))[2] === D.host, 10_000, 'cpus descending');
    await page.locator('th.c-cpus button').click();
    await until(async () => (await rowIps(page))[0] === D.host, 10_000, 'cpus ascending');
    await page.close();
  });

  test('Node page: the node link opens it, listing running jobs with toString() arguments (markup as text) and a job detail view', async () => {
    const ip = longJobs[0]!.ipAddr!;
    assert.ok(ip);
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/`);
    await page.locator(`tr.row[data-ip="${ip}"] td.c-ip a`).click();
    await page.waitForURL(/node\.html\?host=/);
    assert.equal(new URL(page.url()).searchParams.get('host'), ip);
    await waitText(page, '[data-field=ip]', ip);
    const want = `C(<b>bold</b>, 1.5000), 60000, ${longPids[0]}`;
    const row = page.locator(`tr[data-uid="${longJobs[0]!._uid}"]`);
    await until(async () => (await row.count()) === 1, 10_000, 'the long job listed');
    assert.equal(await row.locator('[data-testid=job-args]').textContent(), want);
    assert.equal(await page.locator('[data-testid=jobs-table] td b, [data-testid=jobs-table] td i').count(), 0, 'no markup rendered');
    assert.equal(await row.locator('[data-testid=job-status]').textContent(), 'Running');
    // Every job the cluster runs there is listed.
    const onNode = longJobs.filter((j) => j.ipAddr === ip);
    assert.equal(await page.locator('[data-testid=jobs-table] tbody tr[data-uid]').count(), onNode.length);

    // Job detail view.
    await row.getByRole('button', { name: /Details of job long-0/ }).click();
    const dialog = page.locator('[data-testid=job-detail]');
    await dialog.waitFor({ state: 'visible' });
    const text = (await dialog.textContent()) ?? '';
    for (const part of ['long-0', want, 'Running', ip, cluster.name]) assert.ok(text.includes(part), `detail shows ${part}: ${text}`);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    await page.close();
  });

  test('Node page: terminating a job after confirmation ends it Terminated in the client, its process gone, the row showing the outcome', async () => {
    const job = longJobs[0]!;
    const pid = Number(readFileSync(longPids[0]!, 'utf8'));
    assert.ok(alive(pid));
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/node.html?host=${job.ipAddr}`);
    const row = page.locator(`tr[data-uid="${job._uid}"]`);
    await row.waitFor();
    await row.getByRole('checkbox').check();
    await page.locator('[data-testid=terminate]').click();
    // Nothing happens before the explicit confirmation.
    await page.locator('[data-testid=confirm]').waitFor();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(job.status, DispyJob.Running);
    await page.locator('[data-testid=confirm-terminate]').click();
    await waitText(page, `tr[data-uid="${job._uid}"] [data-testid=job-status]`, 'Terminated');
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
    assert.equal(job.status, DispyJob.Terminated);
    await until(() => !alive(pid), 10_000, 'the job process to exit');
    // The row stays, greyed, after the job left the node.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await row.locator('[data-testid=job-status]').textContent(), 'Terminated');
    assert.match((await row.getAttribute('class')) ?? '', /gone/);
    await page.close();
    // The other long job is not needed any more.
    await cluster.cancel(longJobs[1]!);
    await longJobs[1]!.wait().catch(() => undefined);
  });

  test('Manage: adding a node by IP with CPUs and port makes it take jobs; lowering CPUs caps busy', async () => {
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/manage.html`);
    await until(async () => (await page.locator('[data-testid=manage-table] tr.row').count()) === 3, 10_000, 'three nodes listed');
    // A wildcard disables CPUs with the reason.
    const hosts = page.locator('[data-testid=add-host]');
    await hosts.nth(1).fill('127.0.0.*');
    assert.equal(await page.locator('[data-testid=add-cpus]').nth(1).isDisabled(), true);
    assert.match((await page.locator('[data-testid=add-result]').nth(1).textContent()) ?? '', /ignored for a wildcard/);
    await hosts.nth(1).fill('');

    await hosts.nth(0).fill(E.host);
    await page.locator('[data-testid=add-cpus]').nth(0).fill('1');
    await page.locator('[data-testid=add-port]').nth(0).fill(String(E.port));
    await page.locator('[data-testid=add-nodes]').click();
    await waitText(page, '[data-testid=add-result]', /^Joined: 127\.0\.0\.114, 1 CPU$/, 15_000);
    const jobs = await runQuick(16, 200);
    assert.ok(
      jobs.some((j) => j.ipAddr === E.host),
      'the added node ran jobs',
    );
    assert.equal(cluster.status().nodes.find((n) => n.ipAddr === E.host)?.cpus, 1);

    // Lower A's CPUs to 1: validated against what A offers first.
    const input = page.locator(`[data-testid=manage-table] tr.row[data-ip="${A.host}"] [data-testid=cpus-input]`);
    await input.fill('5');
    await waitText(page, `tr.row[data-ip="${A.host}"] [data-testid=cpus-result]`, /offers 2 CPUs/);
    assert.equal(await page.locator('[data-testid=update-cpus]').isDisabled(), false);
    await page.locator('[data-testid=update-cpus]').click();
    assert.equal(cluster.status().nodes.find((n) => n.ipAddr === A.host)?.cpus, 2, 'an invalid value is not sent');
    await input.fill('1');
    await page.locator('[data-testid=update-cpus]').click();
    await waitText(page, `tr.row[data-ip="${A.host}"] [data-testid=cpus-result]`, 'CPUs now 1');
    assert.equal(cluster.status().nodes.find((n) => n.ipAddr === A.host)?.cpus, 1);
    busyPeak = new Map();
    const more = await runQuick(14, 250);
    assert.ok(
      more.some((j) => j.ipAddr === A.host),
      'A still takes jobs',
    );
    assert.equal(busyPeak.get(A.host), 1, 'A never ran more than 1 job at once');
    await page.close();
    assert.equal(await cluster.setNodeCpus(A.host, 2), 2);
  });

  test('Monitor: allocate, deallocate and close the selected nodes act on the cluster', async () => {
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/`);
    const row = page.locator(`tr.row[data-ip="${B.host}"]`);
    await row.waitFor();
    const nodeB = () => cluster.status().nodes.find((n) => n.ipAddr === B.host);
    const act = async (action: string) => {
      await page.locator('#action').selectOption(action);
      await page.locator('[data-testid=execute]').click();
    };
    await row.getByRole('checkbox').check();
    assert.equal((await textOf(page, '[data-testid=selected-count]'))?.trim(), '1 selected');

    await act('deallocate_node');
    // A deallocated node leaves the cluster's list of usable nodes.
    await until(() => !nodeB() || nodeB()!.status === 16, 10_000, 'B deallocated');
    await until(async () => /st-closed/.test((await row.getAttribute('class')) ?? ''), 10_000, 'row closed');
    await waitText(page, '.message-list li span', /Deallocate 127\.0\.0\.112 \(.*\): done\./);
    const whileOff = await runQuick(6, 100);
    assert.ok(
      whileOff.every((j) => j.ipAddr !== B.host),
      'no job on a deallocated node',
    );

    await act('allocate_node');
    await until(() => nodeB()?.status === 4, 10_000, 'B allocated again');
    await until(async () => !/st-closed/.test((await row.getAttribute('class')) ?? ''), 10_000, 'row open');

    await act('close_node');
    await until(() => !nodeB() || nodeB()!.status === 16, 10_000, 'B closed');
    await until(async () => /st-closed/.test((await row.getAttribute('class')) ?? ''), 10_000, 'row closed after close');
    const afterClose = await runQuick(6, 100);
    assert.ok(
      afterClose.every((j) => j.ipAddr !== B.host),
      'no job on a closed node',
    );
    await page.close();
  });

  test('two browsers both follow every change', async () => {
    const p1 = await newPage();
    const p2 = await newPage();
    watch(p1);
    watch(p2);
    await Promise.all([p1.goto(`${base}/`), p2.goto(`${base}/`)]);
    const sameAsServer = async (p: Page) => {
      const s = await serverStatus();
      if (num(await textOf(p, '[data-testid=jobs-done]')) !== s.jobs.done) return false;
      for (const n of s.nodes) {
        const row = p.locator(`tr.row[data-ip="${n.ip_addr}"]`);
        if ((await row.count()) !== 1) return false;
        if (num(await row.locator('td.c-done').textContent()) !== n.jobs_done) return false;
        if (num(await row.locator('td.c-cpus').textContent()) !== n.cpus) return false;
      }
      return true;
    };
    for (const step of [
      () => runQuick(5, 50),
      () => cluster.setNodeCpus(A.host, 1),
      () => runQuick(3, 50),
      () => cluster.setNodeCpus(A.host, 2),
    ]) {
      await step();
      await until(async () => (await sameAsServer(p1)) && (await sameAsServer(p2)), 10_000, 'both pages to match the server');
    }
    await p1.close();
    await p2.close();
  });

  test('several clusters: * Combined is computed in the page; each cluster alone; the Node page filters by cluster', async () => {
    const second = new JobCluster(work, { depends: [C], nodes: [spec(E)], secret: TEST_SECRET, name: 'second' });
    try {
      server.addCluster(second);
      await until(() => second.status().nodes.length === 1, 10_000, 'second cluster on E');
      const jobs = Array.from({ length: 3 }, (_, i) => second.submit(new C(`s${i}`, i), 50, ''));
      await Promise.all(jobs.map((j) => j.wait()));
      const page = await newPage();
      watch(page);
      await page.goto(`${base}/`);
      await until(async () => (await page.locator('#cluster option').count()) === 3, 10_000, 'three choices');
      assert.deepEqual(await page.locator('#cluster option').allTextContents(), ['* Combined', cluster.name, 'second']);
      assert.equal(await page.locator('#cluster').inputValue(), await page.locator('#cluster option').first().getAttribute('value'));
      const all = (await (await fetch(`${base}/cluster_status`)).json()) as any[];
      const doneSum = all.reduce((a, c) => a + c.jobs.done, 0);
      await waitText(page, '[data-testid=jobs-done]', String(doneSum));
      const ips = new Set(all.flatMap((c) => c.nodes.map((n: any) => n.ip_addr)));
      assert.equal((await rowIps(page)).length, ips.size);
      const eDone = all.reduce((a, c) => a + (c.nodes.find((n: any) => n.ip_addr === E.host)?.jobs_done ?? 0), 0);
      assert.equal(num(await page.locator(`tr.row[data-ip="${E.host}"] td.c-done`).textContent()), eDone);

      await page.locator('#cluster').selectOption('second');
      await until(async () => (await rowIps(page)).join() === E.host, 10_000, 'only E in the second cluster');
      await waitText(page, '[data-testid=jobs-done]', '3');
      await waitText(page, '[data-testid=cluster-name]', 'second');

      await page.goto(`${base}/node.html?host=${E.host}`);
      await waitText(page, '[data-field=ip]', E.host);
      await until(async () => (await page.locator('#cluster option').count()) === 3, 10_000, 'cluster filter choices');
      await page.locator('#cluster').selectOption('second');
      await waitText(page, '[data-field=jobs-done]', '3');
      await page.close();
    } finally {
      server.delCluster(second);
      await second.close();
    }
  });

  test('Update Interval Seconds starts at the server pollSec; 0 stops timed updates; Update refreshes at once', async () => {
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/`);
    await page.locator('tr.row').first().waitFor();
    assert.equal(await page.locator('#interval').inputValue(), '1');
    await waitText(page, '[data-testid=conn]', 'Live');
    await page.locator('#interval').fill('0');
    await page.locator('#interval').press('Enter');
    await waitText(page, '[data-testid=conn]', 'Timed updates off');
    const before = num(await textOf(page, '[data-testid=jobs-done]'));
    await runQuick(3, 50);
    const s = await serverStatus();
    assert.equal(s.jobs.done, before + 3);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(num(await textOf(page, '[data-testid=jobs-done]')), before, 'no timed update while the interval is 0');
    await page.locator('[data-testid=update]').click();
    await waitText(page, '[data-testid=jobs-done]', String(before + 3), 3_000);
    // Back to timed updates.
    await page.locator('#interval').fill('1');
    await page.locator('#interval').press('Enter');
    await waitText(page, '[data-testid=conn]', 'Live');
    await runQuick(2, 50);
    await waitText(page, '[data-testid=jobs-done]', String(before + 5), 5_000);
    await page.close();
  });

  test('a hidden tab closes its stream and catches up when shown again', async () => {
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/`);
    await page.locator('tr.row').first().waitFor();
    await waitText(page, '[data-testid=conn]', 'Live');
    // Chromium offers no switch for a tab's visibility: the page is told as a browser would tell it.
    // (A string, not a function: tsx would wrap the getters in a helper the page does not have.)
    const setHidden = (hidden: boolean) =>
      page.evaluate(`(() => {
        const h = ${hidden};
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
        document.dispatchEvent(new Event('visibilitychange'));
      })()`);
    await setHidden(true);
    await waitText(page, '[data-testid=conn]', 'Paused (tab hidden)');
    const before = num(await textOf(page, '[data-testid=jobs-done]'));
    await runQuick(2, 50);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(num(await textOf(page, '[data-testid=jobs-done]')), before, 'no updates while hidden');
    await setHidden(false);
    await waitText(page, '[data-testid=jobs-done]', String(before + 2), 5_000);
    await waitText(page, '[data-testid=conn]', 'Live');
    await page.close();
  });

  test('the page says when the server is gone, keeps retrying and resyncs when it is back', async () => {
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/`);
    await page.locator('tr.row').first().waitFor();
    await server.shutdown({ wait: false });
    await page.locator('[data-testid=offline]').waitFor({ timeout: 10_000 });
    await waitText(page, '[data-testid=conn]', 'Server unreachable');
    await runQuick(2, 50);
    server = new DispyHTTPServer(cluster, { host: '127.0.0.1', port, pollSec: 1, logLevel: 'warn' });
    await server.listening;
    await runQuick(3, 50);
    await page.locator('[data-testid=offline]').waitFor({ state: 'detached', timeout: 15_000 });
    // A new server (new epoch, counters from its start): the page replaced its picture.
    await until(
      async () => num(await textOf(page, '[data-testid=jobs-done]')) === (await serverStatus()).jobs.done,
      10_000,
      'counters of the new server',
    );
    assert.equal((await rowIps(page)).length, (await serverStatus()).nodes.length);
    await waitText(page, '[data-testid=conn]', 'Live');
    await page.close();
  });

  test('desktop (1280 px) and phone (360 px) layouts: summary and nodes visible, key columns without horizontal scrolling, 44 px touch targets', async () => {
    const long = cluster.submit(new C('screenshot', 1), 20_000, '');
    const desk = await newPage({ viewport: { width: 1280, height: 900 } });
    watch(desk);
    await desk.goto(`${base}/`);
    await desk.locator('tr.row').nth(2).waitFor();
    await waitText(desk, '[data-testid=jobs-running]', '1');
    assert.ok(await desk.locator('[data-testid=jobs-summary]').isVisible());
    await desk.screenshot({ path: join(SHOTS, 'ui-monitor-1280.png'), fullPage: true });
    // Every column is there at 1280 px.
    for (const c of [
      'c-ip',
      'c-name',
      'c-state',
      'c-cpus',
      'c-busy',
      'c-cpu',
      'c-mem',
      'c-swap',
      'c-disk',
      'c-tx',
      'c-rx',
      'c-done',
      'c-spj',
      'c-jt',
      'c-cu',
      'c-last',
    ]) {
      assert.ok(await desk.locator(`tr.row td.${c}`).first().isVisible(), `${c} visible at 1280 px`);
    }
    await desk.goto(`${base}/node.html?host=${long.ipAddr}`);
    await desk.locator('[data-testid=jobs-table] tr[data-uid]').first().waitFor();
    await desk.screenshot({ path: join(SHOTS, 'ui-node-1280.png'), fullPage: true });
    await desk.goto(`${base}/manage.html`);
    await desk.locator('[data-testid=manage-table] tr.row').first().waitFor();
    await desk.screenshot({ path: join(SHOTS, 'ui-manage-1280.png'), fullPage: true });

    const phone = await newPage({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    watch(phone);
    await phone.goto(`${base}/`);
    await phone.locator('tr.row').nth(2).waitFor();
    await waitText(phone, '[data-testid=jobs-running]', '1');
    await phone.screenshot({ path: join(SHOTS, 'ui-monitor-360.png'), fullPage: true });
    const layout = await phone.evaluate(() => {
      const row = document.querySelector('tr.row')!;
      const cells: Record<string, { left: number; right: number; shown: boolean; fits: boolean }> = {};
      for (const c of ['c-ip', 'c-name', 'c-bc', 'c-done', 'c-last']) {
        const td = row.querySelector(`td.${c}`) as HTMLElement;
        const r = td.getBoundingClientRect();
        const range = document.createRange();
        range.selectNodeContents(td);
        const content = td.querySelector('a, .nm') ?? td;
        cells[c] = {
          left: r.left,
          right: r.right,
          shown: getComputedStyle(td).display !== 'none' && r.width > 0,
          fits: (content as HTMLElement).scrollWidth <= (content as HTMLElement).clientWidth + 1 || c === 'c-name',
        };
      }
      const small: string[] = [];
      for (const el of document.querySelectorAll<HTMLElement>('a, button, select, input:not([type=checkbox]), label.hit')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || getComputedStyle(el).visibility === 'hidden') continue;
        if (el.closest('.u-legend')) continue;
        if (r.width < 44 || r.height < 44)
          small.push(
            `${el.tagName}.${el.className} ${Math.round(r.width)}x${Math.round(r.height)} "${(el.textContent ?? '').trim().slice(0, 20)}"`,
          );
      }
      return { scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth, cells, small };
    });
    assert.ok(layout.scrollWidth <= layout.width, `no horizontal page scroll at 360 px (${layout.scrollWidth} > ${layout.width})`);
    for (const [c, v] of Object.entries(layout.cells)) {
      assert.ok(v.shown && v.left >= 0 && v.right <= layout.width, `${c} visible within the screen: ${JSON.stringify(v)}`);
    }
    assert.deepEqual(layout.small, [], 'touch targets of at least 44x44 CSS px');
    // The rest of a node's fields one tap away.
    await phone.locator('tr.row td.c-name button').first().tap();
    await phone.locator('[data-testid=node-panel]').waitFor();
    assert.ok(await phone.locator('[data-field=avail-memory]').isVisible());
    await phone.screenshot({ path: join(SHOTS, 'ui-monitor-360-details.png') });
    await phone.getByRole('button', { name: 'Close node details' }).tap();
    await phone.goto(`${base}/node.html?host=${long.ipAddr}`);
    await phone.locator('[data-testid=jobs-table] tr[data-uid]').first().waitFor();
    await phone.screenshot({ path: join(SHOTS, 'ui-node-360.png'), fullPage: true });
    await phone.goto(`${base}/manage.html`);
    await phone.locator('[data-testid=manage-table] tr.row').first().waitFor();
    assert.ok(await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'Manage fits 360 px');
    await phone.screenshot({ path: join(SHOTS, 'ui-manage-360.png'), fullPage: true });
    await cluster.cancel(long);
    await long.wait().catch(() => undefined);
  });

  test('a closed cluster stays visible and sortable', async () => {
    const page = await newPage();
    watch(page);
    await page.goto(`${base}/`);
    await page.locator('tr.row').nth(2).waitFor();
    const rows = (await rowIps(page)).length;
    await cluster.close();
    await until(async () => (await page.locator('tr.row.st-closed').count()) === rows, 10_000, 'all rows closed');
    const ips = await rowIps(page);
    await page.locator('th.c-ip button').click();
    await until(async () => (await rowIps(page)).join() === [...ips].reverse().join(), 10_000, 'sorted ascending after close');
    await page.locator('th.c-done button').click();
    const done = await page.$$eval('tr.row td.c-done', (tds) => tds.map((t) => Number(t.textContent!.replace(/,/g, ''))));
    assert.deepEqual(
      done,
      [...done].sort((a, b) => b - a),
    );
    await page.close();
  });
});
