/**
 * A user's documentRoot under a strict CSP (DESIGN.md §4), in Chromium: a page built the way
 * dispy's own pages are (an external script, inline scripts using `%(TIMEOUT)s` and
 * `%(SHOW_JOB_ARGS)s`, node rows built as HTML strings from `/cluster_status`) works, while the
 * markup a node's name injects, `<img src=x onerror=...>` from a real node daemon named so, runs
 * nothing. After `/update` changes the timeout the page still works (the hash is per response).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { DispyHTTPServer, JobCluster } from '../src/index.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';
import { post } from './helpers/http-client.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser tests skipped: ${unavailable}`);

const EVIL = '<img src=x onerror="window.pwned=(window.pwned||0)+1;alert(1)">';

// A page in the style of dispy's monitor.html (written for this test).
const PAGE = `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<script type="text/javascript" src="page.js"></script>
<script type="text/javascript">
  var timeout = 1000 * %(TIMEOUT)s;
  var show_args = %(SHOW_JOB_ARGS)s;
  window.inlineRan = { timeout: timeout, show_args: show_args };
</script>
<title>nodes</title>
</head>
<body>
<p style="color: #123">100%% of nodes</p>
<table><tbody id="nodes"></tbody></table>
<script type="text/javascript">
  function show(status) {
    var rows = '';
    status.forEach(function (c) {
      c.nodes.forEach(function (n) { rows += '<tr><td>' + n.ip_addr + '</td><td>' + n.name + '</td></tr>'; });
    });
    document.getElementById('nodes').innerHTML = rows;
    window.rendered = true;
  }
  fetch('cluster_status').then(function (r) { return r.json(); }).then(show);
</script>
</body>
</html>
`;

let node: TestNode;
let cluster: JobCluster;
let server: DispyHTTPServer;
let browser: Browser | null = null;
let dir: string;
let base: string;

before(async () => {
  if (unavailable) return;
  dir = mkdtempSync(join(tmpdir(), 'dispyts-csp-'));
  writeFileSync(join(dir, 'monitor.html'), PAGE);
  writeFileSync(join(dir, 'page.js'), 'window.externalRan = true;\n');
  node = await startNode({ host: '127.0.0.227', cpus: 1, name: EVIL, logLevel: 'warn' });
  cluster = new JobCluster((x: number) => x, { ...clusterOn(node), logLevel: 'silent' });
  server = new DispyHTTPServer(cluster, {
    host: '127.0.0.228',
    port: 0,
    pollSec: 7,
    showJobArgs: false,
    documentRoot: dir,
    logLevel: 'silent',
  });
  base = (await server.listening).url;
  await until(() => cluster.status().nodes.length === 1, 20_000, 'the node set up');
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.shutdown({ wait: false });
  await cluster?.close();
  await node?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("dispy-style pages run their own scripts; a node name's injected handler runs nothing", { skip: unavailable ?? false }, async () => {
  for (const expected of [
    { timeout: 7000, show_args: false },
    { timeout: 3000, show_args: true },
  ]) {
    if (expected.timeout === 3000) assert.equal((await post(base, '/update', { timeout: 3, show_job_args: 'true' })).status, 200);
    const page = await browser!.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    const blocked: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/.test(m.text())) blocked.push(m.text());
    });
    try {
      await page.goto(`${base}/monitor.html`);
      await page.waitForFunction(() => (window as unknown as { rendered?: boolean }).rendered === true, null, { timeout: 10_000 });
      const state = await page.evaluate(() => {
        const w = window as unknown as { inlineRan?: unknown; externalRan?: boolean; pwned?: number };
        return {
          inline: w.inlineRan,
          external: w.externalRan === true,
          pwned: w.pwned ?? 0,
          img: document.querySelectorAll('#nodes img').length,
          text: document.querySelector('p')?.textContent,
        };
      });
      assert.deepEqual(state.inline, expected, 'the templated inline script ran');
      assert.equal(state.external, true);
      assert.equal(state.text, '100% of nodes');
      assert.equal(state.img, 1, "the node's name was inserted as markup (as dispy's pages do)");
      // The image fails to load; its onerror handler is refused by the CSP.
      await until(() => blocked.some((t) => /inline event handler/.test(t)), 5000, 'the CSP refusing the handler');
      assert.equal(state.pwned, 0);
      assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned ?? 0), 0);
      assert.deepEqual(dialogs, []);
    } finally {
      await page.close();
    }
  }
});
