/**
 * Signing in from Chromium, against a real cluster on a real node (127.0.0.161) running a job:
 * the login form (a wrong password, then the right one, back to the page asked for), an admin
 * sees the action controls on Monitor, Node and Manage; a viewer sees the same pages without any
 * (and its POSTs from the page are refused with 403 while POST /node_info works); signing out
 * ends the session. Screenshots of the login form and a viewer's Monitor go to test-results/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { DispyHTTPServer, JobCluster, type DispyJob } from '../src/index.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { ROOT, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser tests skipped: ${unavailable}`);

const SHOTS = join(ROOT, 'test-results');
const ADMIN_PW = 'frank-runs-the-cluster';
const VIEWER_PW = 'grace-only-watches';

async function block(file: string): Promise<number> {
  const fs = require('node:fs');
  // Bounded: a test that never creates the file fails on its own timeout, not a job that runs on.
  for (let i = 0; i < 3000 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 20));
  return 1;
}

describe('users and roles in Chromium (127.0.0.161)', { skip: unavailable ?? false }, () => {
  let node: TestNode;
  let cluster: JobCluster;
  let server: DispyHTTPServer;
  let base: string;
  let browser: Browser;
  let dir: string;
  let job: DispyJob;
  const pageErrors: string[] = [];
  const dialogs: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dispyts-auth-ui-'));
    mkdirSync(SHOTS, { recursive: true });
    node = await startNode({ host: '127.0.0.161', cpus: 2, logLevel: 'warn', name: 'node-161' });
    cluster = new JobCluster(block, { ...clusterOn(node), name: 'roles' });
    server = new DispyHTTPServer(cluster, {
      host: '127.0.0.1',
      port: 0,
      pollSec: 1,
      logLevel: 'silent',
      auth: { users: { frank: { password: ADMIN_PW, role: 'admin' }, grace: { password: VIEWER_PW, role: 'viewer' } } },
    });
    base = (await server.listening).url.replace('localhost', '127.0.0.1');
    await until(() => cluster.status().nodes.length === 1, 15_000, 'the node up');
    job = cluster.submit(join(dir, 'release'));
    job.id = 'held';
    await until(() => job.status === 6, 10_000, 'the job running');
    browser = await launchChromium();
  });
  after(async () => {
    writeFileSync(join(dir, 'release'), '');
    await browser?.close().catch(() => undefined);
    await server?.shutdown({ wait: false });
    await cluster?.close({ terminate: true });
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(pageErrors, [], 'no script error in the pages');
    assert.deepEqual(dialogs, [], 'no browser dialog (no Basic prompt)');
  });

  async function signIn(user: string, password: string, path = '/monitor.html'): Promise<Page> {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(`${base}${path}`);
    await page.waitForURL(/\/login\?next=/);
    await page.locator('#user').fill(user);
    await page.locator('#password').fill(password);
    await page.locator('button[type=submit]').click();
    await page.waitForURL((u) => u.pathname === path);
    await page.locator('[data-testid=whoami]').waitFor();
    return page;
  }

  test('the login form (a wrong password is said so; the right one leads to the page asked for); an admin sees every control', async () => {
    const ctx = await browser.newContext({ viewport: { width: 420, height: 760 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${base}/manage.html`);
    await page.waitForURL(/\/login\?next=%2Fmanage\.html$/);
    assert.equal(await page.locator('#user').evaluate((el) => el === document.activeElement), true, 'the name field has the focus');
    await page.locator('#user').fill('frank');
    await page.locator('#password').fill('not-the-password');
    await page.locator('button[type=submit]').click();
    const error = page.locator('[data-testid=login-error]');
    await error.waitFor();
    assert.equal(await error.textContent(), 'Wrong user name or password.');
    assert.equal(await page.locator('#user').inputValue(), 'frank');
    await page.screenshot({ path: join(SHOTS, 'login-error-phone.png') });
    await page.locator('#password').fill(ADMIN_PW);
    await page.locator('button[type=submit]').click();
    await page.waitForURL(/\/manage\.html$/);
    await page.locator('[data-testid=whoami][data-role=admin]').waitFor();
    assert.match((await page.locator('[data-testid=whoami]').textContent()) ?? '', /frank\s*admin/);

    // Manage, Monitor and Node pages with every action control.
    await page.locator('[data-testid=cpus-input]').waitFor();
    await page.locator('[data-testid=add-nodes]').waitFor();
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${base}/monitor.html`);
    await page.locator('[data-testid=execute]').waitFor();
    await page.locator('[data-testid=show-args]').waitFor();
    await page.locator('tr.row input[type=checkbox]').first().waitFor();
    assert.equal(await page.locator('[data-testid=viewer-note]').count(), 0);
    await page.goto(`${base}/node.html?host=${node.host}`);
    await page.locator(`tr[data-uid="${job._uid}"] input[type=checkbox]`).waitFor();
    await page.locator('[data-testid=terminate]').waitFor();
    await page.locator('[data-testid=node-action-card]').waitFor();
    await ctx.close();
  });

  test('a viewer sees the cluster without controls; its POSTs from the page are refused with 403; POST /node_info works', async () => {
    const page = await signIn('grace', VIEWER_PW);
    assert.match((await page.locator('[data-testid=whoami]').textContent()) ?? '', /grace\s*viewer/);
    // The page is live and complete...
    await until(async () => (await page.locator('tr.row').count()) === 1, 10_000, 'the node row');
    await until(
      async () => (await page.locator('[data-testid=jobs-running]').textContent())?.trim() === '1',
      10_000,
      'the running job counted',
    );
    await page.locator('[data-testid=viewer-note]').waitFor();
    // ...with no control to act.
    for (const sel of [
      '[data-testid=execute]',
      '[data-testid=node-actions]',
      '[data-testid=show-args]',
      'tr.row input[type=checkbox]',
      'thead input[type=checkbox]',
    ]) {
      assert.equal(await page.locator(sel).count(), 0, `no ${sel}`);
    }
    await page.screenshot({ path: join(SHOTS, 'monitor-viewer.png'), fullPage: true });
    // The server refuses what the page does not offer.
    // (Anonymous functions only inside evaluate: tsx would name others with a helper the page lacks.)
    const send = (path: string, body: Record<string, string>) =>
      page.evaluate(
        async ([p, b]) => {
          const r = await fetch(p, {
            method: 'POST',
            body: new URLSearchParams(b),
            credentials: 'same-origin',
            referrerPolicy: 'same-origin',
          });
          return { status: r.status, body: await r.json() };
        },
        [path, body] as const,
      );
    const replies = {
      close: await send('close_node', { cluster: 'roles', nodes: JSON.stringify([node.host]) }),
      cpus: await send('set_cpus', { [node.host]: '1' }),
      info: await send('node_info', { host: node.host }),
    };
    assert.equal(replies.close.status, 403);
    assert.equal(replies.close.body.error.code, 'DISPY_ERR_ROLE');
    assert.equal(replies.cpus.status, 403);
    assert.equal(replies.info.status, 200);
    assert.equal(replies.info.body.node.ip_addr, node.host);
    assert.equal(cluster.status().nodes[0]!.cpus, 2, 'nothing changed');

    await page.goto(`${base}/node.html?host=${node.host}`);
    const row = page.locator(`tr[data-uid="${job._uid}"]`);
    await row.waitFor();
    assert.equal(await row.locator('input[type=checkbox]').count(), 0);
    assert.equal(await page.locator('[data-testid=terminate]').count(), 0);
    assert.equal(await page.locator('[data-testid=node-action-card]').count(), 0);
    await page.locator('[data-testid=viewer-note]').waitFor();
    // The job detail view has no terminate button either.
    await row.getByRole('button', { name: /Details of job held/ }).click();
    await page.locator('[data-testid=job-detail]').waitFor();
    assert.equal(await page.locator('[data-testid=job-detail] button', { hasText: 'Terminate' }).count(), 0);
    await page.keyboard.press('Escape');

    await page.goto(`${base}/manage.html`);
    await page.locator('[data-testid=cpus-text]').waitFor();
    assert.equal(await page.locator('[data-testid=cpus-input]').count(), 0);
    assert.equal(await page.locator('[data-testid=update-cpus]').count(), 0);
    assert.equal(await page.locator('[data-testid=add-nodes]').count(), 0);
    assert.equal(job.status, 6, 'the job still runs');

    // Signing out ends the session: the pages lead back to the login form.
    await page.locator('[data-testid=sign-out]').click();
    await page.waitForURL(/\/login\?signed_out=1$/);
    assert.equal(await page.locator('[data-testid=login-info]').textContent(), 'You are signed out.');
    await page.goto(`${base}/monitor.html`);
    await page.waitForURL(/\/login\?next=%2Fmonitor\.html$/);
    await page.context().close();
    const log = server.eventLog.since(0).entries;
    assert.ok(log.some((e) => e.kind === 'logout' && e.user === 'grace'));
    assert.ok(log.some((e) => e.kind === 'action' && e.user === 'grace' && e.result === 'refused' && e.action === 'close_node'));
  });
});
