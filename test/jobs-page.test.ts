/**
 * The finished-job history and the Jobs page, against real nodes (127.0.0.154, 127.0.0.155):
 * `/job_history` keeps at most `jobHistorySize` records (newest first) with id, arguments,
 * status, node, times, exception and stdout/stderr tails; filters by status and node; bad query
 * values are 400s. In Chromium: the page lists them, filters by status and node, opens a job's
 * detail view (also from `?job=`), and shows a job that ends while it is open.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { DispyHTTPServer, JobCluster, type DispyJob } from '../src/index.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';
import { request } from './helpers/http-client.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser tests skipped: ${unavailable}`);

/** print: writes to stdout/stderr; fail: throws; block: waits for `file` to exist. */
async function work(kind: string, i: number, file: string): Promise<number> {
  if (kind === 'print') {
    console.log(`hello ${i}`);
    if (i === 0) console.log('y'.repeat(10_000));
    console.error(`warn ${i}`);
  } else if (kind === 'fail') {
    throw new Error(`boom ${i}`);
  } else if (kind === 'block') {
    const fs = require('node:fs');
    for (let i = 0; !fs.existsSync(file); i++) {
      if (i > 3000) throw new Error(`${file} never appeared`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return i;
}

const SIZE = 8;

describe('finished-job history (127.0.0.154-155)', () => {
  let nodes: TestNode[];
  let cluster: JobCluster;
  let server: DispyHTTPServer;
  let base: string;
  let dir: string;
  let browser: Browser | undefined;
  const pageErrors: string[] = [];

  const history = async (q = ''): Promise<any> => {
    const r = await request(`${base}/job_history${q}`);
    assert.equal(r.status, 200, r.body);
    return r.json();
  };
  const run = async (kind: string, ...is: number[]): Promise<DispyJob[]> => {
    const jobs = is.map((i) => {
      const j = cluster.submit(kind, i, '');
      j.id = `${kind}-${i}`;
      return j;
    });
    await Promise.allSettled(jobs.map((j) => j.wait()));
    return jobs;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dispyts-jobs-'));
    nodes = await startNodes(2, { first: 154, cpus: 1, logLevel: 'warn' });
    cluster = new JobCluster(work, { nodes: nodes.map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET, name: 'history' });
    server = new DispyHTTPServer(cluster, { host: '127.0.0.1', port: 0, pollSec: 1, logLevel: 'silent', jobHistorySize: SIZE });
    base = (await server.listening).url.replace('localhost', '127.0.0.1');
    await until(() => cluster.status().nodes.length === 2, 15_000, 'two nodes up');
  });
  after(async () => {
    await browser?.close().catch(() => undefined);
    await server?.shutdown({ wait: false });
    await cluster?.close({ terminate: true });
    await Promise.all((nodes ?? []).map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(pageErrors, [], 'no script error in the pages');
  });

  test('records: fields, stdout/stderr tails, exceptions, a job cancelled before it ran; bounded; filtered', async () => {
    await run('print', 0, 1, 2);
    await run('fail', 3, 4);
    // Two blockers fill both CPUs; a third job is cancelled before it runs.
    const release = join(dir, 'release');
    const blockers = [cluster.submit('block', 5, release), cluster.submit('block', 6, release)];
    for (const [k, j] of blockers.entries()) j.id = `block-${5 + k}`;
    await until(() => blockers.every((j) => j.status === 6), 10_000, 'the blockers running');
    const queued = cluster.submit('print', 7, '');
    queued.id = 'cancelled-7';
    assert.equal(await cluster.cancel(queued), 0);
    await queued.wait().catch(() => undefined);
    writeFileSync(release, '');
    await Promise.all(blockers.map((j) => j.wait()));

    let h = await history();
    assert.equal(h.capacity, SIZE);
    assert.equal(h.size, 8);
    assert.equal(h.jobs.length, 8);
    assert.deepEqual(
      h.jobs.map((j: any) => j.hid),
      [...h.jobs.map((j: any) => j.hid)].sort((a: number, b: number) => b - a),
      'newest first',
    );
    const byId = new Map<string, any>(h.jobs.map((j: any) => [j.job_id, j]));
    const p0 = byId.get('print-0');
    assert.equal(p0.status, 'Finished');
    assert.equal(p0.args, 'print, 0, ');
    assert.equal(p0.cluster, 'history');
    assert.ok(
      nodes.some((n) => n.host === p0.node),
      p0.node,
    );
    assert.equal(p0.stdout_length, 'hello 0\n'.length + 10_001);
    assert.equal(p0.stdout.length, 4096, 'the tail of a long stdout');
    assert.ok(p0.stdout.endsWith('y\n'));
    assert.equal(p0.stderr, 'warn 0\n');
    assert.ok(p0.submit_time_ms <= p0.start_time_ms && p0.start_time_ms <= p0.end_time_ms);
    const f3 = byId.get('fail-3');
    assert.equal(f3.status, 'Terminated');
    assert.match(f3.exception, /Error: boom 3/);
    const c7 = byId.get('cancelled-7');
    assert.equal(c7.status, 'Cancelled');
    assert.equal(c7.node, null, 'it never ran anywhere');
    assert.equal(c7.start_time_ms, null);

    // Filters.
    const failed = await history('?status=failed');
    assert.deepEqual(failed.jobs.map((j: any) => j.job_id).sort(), ['cancelled-7', 'fail-3', 'fail-4']);
    assert.equal(failed.matched, 3);
    const node = nodes[0]!.host;
    const onNode = await history(`?node=${node}`);
    assert.ok(onNode.jobs.length > 0 && onNode.jobs.every((j: any) => j.node === node));
    assert.equal((await history('?status=Cancelled')).jobs.length, 1);
    const page1 = await history('?limit=3');
    assert.equal(page1.jobs.length, 3);
    assert.equal(page1.more, true);
    const page2 = await history(`?limit=3&before=${page1.jobs[2].hid}`);
    assert.ok(page2.jobs.every((j: any) => j.hid < page1.jobs[2].hid));
    assert.deepEqual((await history(`?hid=${p0.hid}`)).job, p0);

    // Bounded: two more records push the two oldest out.
    const oldest = h.jobs.slice(-2).map((j: any) => j.hid);
    await run('print', 8, 9);
    h = await history();
    assert.equal(h.size, SIZE);
    assert.equal(h.jobs.length, SIZE);
    assert.ok(!h.jobs.some((j: any) => oldest.includes(j.hid)), 'the oldest are gone');
    assert.ok(h.jobs.some((j: any) => j.job_id === 'print-9'));
    const gone = await request(`${base}/job_history?hid=${oldest[0]}`);
    assert.equal(gone.status, 404);
    assert.match(gone.json().error.message, /keeps the latest 8 finished jobs/);

    // Bad input.
    for (const [q, msg] of [
      ['?status=Done', /`status` must be one of Finished, Terminated, Cancelled, Abandoned, failed/],
      ['?limit=0', /`limit` must be an integer from 1 to 1000/],
      ['?limit=x', /`limit` must be an integer/],
      ['?node=a%20b', /`node` must be a node address or name/],
      ['?before=-1', /`before` must be an integer/],
    ] as const) {
      const r = await request(`${base}/job_history${q}`);
      assert.equal(r.status, 400, q);
      assert.match(r.json().error.message, msg, q);
    }
  });

  test('Jobs page (Chromium): lists, filters by status and node, opens the detail view, follows new jobs', {
    skip: unavailable ?? false,
  }, async () => {
    browser = await launchChromium();
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page: Page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const rows = () =>
      page.$$eval('[data-testid=history-table] tbody tr[data-hid]', (trs) =>
        trs.map((t) => ({
          hid: Number((t as HTMLElement).dataset.hid),
          status: (t as HTMLElement).dataset.status!,
          node: t.querySelector('[data-testid=history-node]')!.textContent!.trim(),
        })),
      );
    await page.goto(`${base}/jobs.html`);
    await until(async () => (await rows()).length === SIZE, 10_000, 'every kept job listed');
    const h = await history();
    assert.deepEqual(
      (await rows()).map((r) => r.hid),
      h.jobs.map((j: any) => j.hid),
    );
    assert.match(
      (await page.locator('[data-testid=history-count]').textContent()) ?? '',
      /Showing 8 of 8 matching; the server keeps the latest 8 finished jobs/,
    );

    // Status filter: failed ones only; the address says so.
    await page.locator('[data-testid=filter-status]').selectOption('failed');
    await until(
      async () => {
        const r = await rows();
        return r.length === 3 && r.every((x) => x.status !== 'Finished');
      },
      10_000,
      'failed jobs only',
    );
    assert.equal(new URL(page.url()).searchParams.get('status'), 'failed');

    // Detail view of a failed job: its exception.
    const fail = h.jobs.find((j: any) => j.job_id === 'fail-4');
    await page.locator(`tr[data-hid="${fail.hid}"] [data-testid=history-open]`).click();
    const detail = page.locator('[data-testid=history-detail]');
    await detail.waitFor({ state: 'visible' });
    assert.match((await detail.locator('[data-testid=history-exception]').textContent()) ?? '', /Error: boom 4/);
    assert.equal((await detail.locator('[data-field=status]').textContent())?.trim(), 'Terminated');
    assert.equal(new URL(page.url()).searchParams.get('job'), String(fail.hid));
    await page.keyboard.press('Escape');
    await detail.waitFor({ state: 'detached' });

    // Node filter (every status).
    await page.locator('[data-testid=filter-status]').selectOption('');
    const node = nodes[1]!.host;
    await page.locator('[data-testid=filter-node]').selectOption(node);
    const want = h.jobs.filter((j: any) => j.node === node).length;
    await until(
      async () => {
        const r = await rows();
        return r.length === want && r.every((x) => x.node === node);
      },
      10_000,
      `jobs of ${node} only`,
    );
    await page.locator('[data-testid=filter-node]').selectOption('');

    // A job that ends while the page is open appears at the top.
    const [fresh] = await run('print', 10);
    await until(async () => (await rows())[0]?.hid === h.seq + 1, 10_000, 'the new job listed first');
    assert.equal(fresh!.status, 11);

    // `?job=` opens the detail view directly: stdout and stderr tails.
    const p9 = (await history()).jobs.find((j: any) => j.job_id === 'print-9');
    await page.goto(`${base}/jobs.html?job=${p9.hid}`);
    await detail.waitFor({ state: 'visible' });
    assert.equal((await detail.locator('[data-testid=history-stdout]').textContent())?.trim(), 'hello 9');
    assert.equal((await detail.locator('[data-testid=history-stderr]').textContent())?.trim(), 'warn 9');
    assert.equal(await detail.locator('[data-field=node] a').getAttribute('href'), `node.html?host=${encodeURIComponent(p9.node)}`);
    await ctx.close();
  });
});
