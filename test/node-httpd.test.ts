/**
 * `dispyts node --httpd`: real daemons (127.0.0.158, 127.0.0.159) started from the CLI with
 * their own page. The token (given, or derived from the secret) is required; Host and Origin
 * are checked; `/status.json` tells the node's client, jobs and CPUs; an admin lowers the CPUs
 * (a second job then waits) and drains the node (a job sent meanwhile waits until it resumes);
 * the viewer token is refused actions; bad input is a 400 with a clear message and a bad
 * `--httpd` stops the CLI. In Chromium: the page signs in from the printed URL, follows the node
 * live, and its forms change the CPUs and drain it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { DispyJob, JobCluster } from '../src/index.js';
import { nodePageToken } from '../src/node/node-httpd.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { CLI, ROOT, TEST_SECRET, startNode, until, within } from './helpers/daemon.js';
import { request, type Reply } from './helpers/http-client.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser tests skipped: ${unavailable}`);

const SHOTS = join(ROOT, 'test-results');
const ADMIN = 'admin-token-for-node-159';
const VIEWER = 'viewer-token-for-node-159';

interface Daemon {
  proc: ChildProcess;
  port: number;
  pageUrl: string;
  loginUrl: string;
  stderr(): string;
  exited: Promise<number | null>;
}

const started = new Set<ChildProcess>();

/** Starts `dispyts node` with `args`; resolves once it printed both its ready line and its page's URL. */
function startDaemon(host: string, args: string[], prefix: string): Promise<Daemon> {
  const proc = spawn(
    process.execPath,
    [
      CLI,
      'node',
      '--host',
      host,
      '--port',
      '0',
      '--cpus',
      '2',
      '--secret',
      TEST_SECRET,
      '--dest-path-prefix',
      prefix,
      '--log-level',
      'info',
      '--parent-pid',
      String(process.pid),
      ...args,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  started.add(proc);
  let out = '';
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) =>
    proc.once('exit', (code) => {
      started.delete(proc);
      r(code);
    }),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${host} not ready: ${out} ${err}`)), 30_000);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const ready = /ready on [^\s]+:(\d+)/.exec(out);
      const page = /node page on (\S+) \(sign in: (\S+)\)/.exec(out);
      if (ready && page) {
        clearTimeout(timer);
        resolve({ proc, port: Number(ready[1]), pageUrl: page[1]!, loginUrl: page[2]!, stderr: () => err, exited });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`node ${host} exited with ${code}: ${err}`));
    });
  });
}

/** Runs the CLI to its end (for options it must refuse). */
function runCli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, [CLI, 'node', '--parent-pid', String(process.pid), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  started.add(proc);
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((r) =>
    proc.once('exit', (code) => {
      started.delete(proc);
      r({ code, stderr });
    }),
  );
}

/** Holds until `file` exists (at most 60 s: then it fails). */
async function hold(file: string): Promise<string> {
  const fs = require('node:fs');
  for (let i = 0; !fs.existsSync(file); i++) {
    if (i > 3000) throw new Error(`${file} never appeared`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return file;
}

describe('the node daemon page (127.0.0.158-159)', () => {
  let dir: string;
  let A: Daemon;
  let B: Daemon;
  let cluster: JobCluster | undefined;
  let browser: Browser | undefined;
  const pageErrors: string[] = [];
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  let token: string;

  const status = async (d = A, t = token): Promise<any> => {
    const r = await request(`${d.pageUrl}status.json`, { headers: bearer(t) });
    assert.equal(r.status, 200, r.body);
    return r.json();
  };
  const act = (path: string, body: string, t = token, d = A): Promise<Reply> =>
    request(`${d.pageUrl}${path}`, {
      method: 'POST',
      body,
      headers: { ...bearer(t), 'content-type': 'application/x-www-form-urlencoded' },
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dispyts-node-page-'));
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b'));
    [A, B] = await Promise.all([
      startDaemon('127.0.0.158', ['--httpd', '0'], join(dir, 'a')),
      startDaemon('127.0.0.159', ['--httpd', '127.0.0.159:0', '--httpd-token', ADMIN, '--httpd-viewer-token', VIEWER], join(dir, 'b')),
    ]);
    token = new URL(A.loginUrl).searchParams.get('token')!;
  });
  after(async () => {
    writeFileSync(join(dir, 'release'), '');
    await browser?.close().catch(() => undefined);
    await cluster?.close({ terminate: true });
    for (const p of started) p.kill('SIGTERM');
    await Promise.all([A?.exited, B?.exited]);
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(pageErrors, [], 'no script error in the page');
  });

  test('bad --httpd options stop the CLI with a clear error', async () => {
    const cases: [string[], RegExp][] = [
      [['--httpd', 'nonsense'], /--httpd: expected \[host:\]port with an IP address/],
      [['--httpd', 'localhost:80'], /--httpd: expected \[host:\]port with an IP address/],
      [['--httpd-token', 'a-token-without-a-page'], /--httpd-token and --httpd-viewer-token need --httpd/],
      [
        [
          '--host',
          '127.0.0.160',
          '--port',
          '0',
          '--secret',
          TEST_SECRET,
          '--dest-path-prefix',
          join(dir, 'c'),
          '--httpd',
          '0',
          '--httpd-token',
          'short',
        ],
        /Expected `httpd token` to be a string of 16 to 512 characters/,
      ],
    ];
    await Promise.all(
      cases.map(async ([args, message]) => {
        const r = await runCli(args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
      }),
    );
  });

  test('the token: derived from the secret unless given; required, on a page that names only itself', async () => {
    assert.equal(token, nodePageToken(TEST_SECRET), 'the printed URL carries the token derived from the secret');
    assert.equal(new URL(A.pageUrl).hostname, '127.0.0.158', 'a loopback node serves its page on its own address');
    const none = await request(`${A.pageUrl}status.json`);
    assert.equal(none.status, 401);
    assert.match(none.json().error.message, /a token is required/);
    assert.equal((await request(`${A.pageUrl}status.json`, { headers: bearer('wrong-token-0123456789') })).status, 401);
    // The sign-in URL puts the token in a cookie and takes it out of the address.
    const login = await request(A.loginUrl);
    assert.equal(login.status, 302);
    assert.equal(login.headers.location, '/');
    const cookie = String(login.headers['set-cookie']).split(';')[0]!;
    assert.match(String(login.headers['set-cookie']), /HttpOnly; SameSite=Strict/);
    const page = await request(A.pageUrl, { headers: { cookie } });
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.doesNotMatch(page.body, /<script>/, 'no inline script');
    // DNS rebinding and cross-site forms are refused.
    assert.equal((await request(`${A.pageUrl}status.json`, { headers: { ...bearer(token), host: 'evil.example' } })).status, 403);
    const foreign = await request(`${A.pageUrl}drain`, {
      method: 'POST',
      body: 'drain=on',
      headers: { cookie, origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(foreign.status, 403);
    const noOrigin = await request(`${A.pageUrl}drain`, {
      method: 'POST',
      body: 'drain=on',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(noOrigin.status, 403);
    assert.match(noOrigin.json().error.message, /need `Authorization: Bearer <token>`/);
    assert.equal((await status()).draining, false, 'nothing was drained');
    assert.equal((await request(`${A.pageUrl}healthz`)).status, 200);
  });

  test('status.json, CPUs and drain acting on real jobs; bad input is a 400', async () => {
    let s = await status();
    assert.equal(s.host, '127.0.0.158');
    assert.equal(s.port, A.port);
    assert.equal(s.cpus, 2);
    assert.equal(s.cpuLimit, 2);
    assert.equal(s.client, null);
    assert.equal(s.role, 'admin');
    assert.ok(s.uptimeSec >= 0 && s.availInfo.memory > 0);

    for (const [path, body, msg] of [
      ['cpus', 'cpus=abc', /`cpus` must be an integer from 1 to 2, got `abc`/],
      ['cpus', 'cpus=0', /`cpus` must be from 1 to 2 \(this node's --cpus\), got 0/],
      ['cpus', 'cpus=3', /got 3/],
      ['cpus', '', /`cpus` must be an integer/],
      ['drain', 'drain=maybe', /`drain` must be on or off, got `maybe`/],
    ] as const) {
      const r = await act(path, body);
      assert.equal(r.status, 400, `${path} ${body}`);
      assert.match(r.json().error.message, msg);
    }

    // One CPU: of two held jobs one runs; the client, told of the limit, keeps the other.
    assert.deepEqual((await act('cpus', 'cpus=1')).json(), { cpus: 1 });
    const release = join(dir, 'release');
    cluster = new JobCluster(hold, { nodes: [{ host: '127.0.0.158', port: A.port }], secret: TEST_SECRET, name: 'paged' });
    const jobs: DispyJob[] = [cluster.submit(release), cluster.submit(release)];
    await until(() => jobs.some((j) => j.status === DispyJob.Running), 15_000, 'one job running');
    s = await status();
    assert.equal(s.busy, 1);
    assert.equal(s.jobs.length, 1, 'one job on the node');
    assert.equal(s.jobs.filter((j: any) => j.state === 'running').length, 1);
    assert.equal(s.client.computations[0].cluster, 'paged');
    assert.equal(s.client.peers.length, 1);
    assert.deepEqual(jobs.map((j) => j.status).sort(), [DispyJob.Created, DispyJob.Running], 'the client sees one running, one waiting');
    const seen = () => cluster!.status().nodes[0]!;
    assert.equal(seen().cpus, 1, 'the client shows the CPUs the node runs jobs on');
    assert.equal(seen().availCpus, 1);
    // Two CPUs again: the client hears of it at once (not at the next pulse, 10 s away) and the
    // second job starts.
    assert.deepEqual((await act('cpus', 'cpus=2')).json(), { cpus: 2 });
    await until(() => jobs.every((j) => j.status === DispyJob.Running), 5_000, 'both running');
    assert.equal(seen().cpus, 2);
    assert.equal(seen().availCpus, 2);
    // Lowered while both run: both go on, and the client shows 1 at once.
    assert.deepEqual((await act('cpus', 'cpus=1')).json(), { cpus: 1 });
    await until(() => seen().cpus === 1, 5_000, 'the client shows 1 CPU');
    assert.equal(jobs.filter((j) => j.status === DispyJob.Running).length, 2);
    assert.deepEqual((await act('cpus', 'cpus=2')).json(), { cpus: 2 });
    await until(() => seen().cpus === 2, 5_000, 'the client shows 2 CPUs again');

    // Drained: running jobs finish; the client, told at once, keeps a job submitted meanwhile
    // until the node resumes (this cluster has no other node).
    assert.deepEqual((await act('drain', 'drain=on')).json(), { draining: true });
    const late = cluster.submit(release);
    writeFileSync(release, '');
    await Promise.all(jobs.map((j) => j.wait()));
    s = await status();
    assert.equal(s.draining, true);
    assert.equal(s.busy, 0);
    assert.equal(s.jobs.length, 0, 'nothing sent to a draining node');
    // It stays waiting over several looks (bounded).
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(late.status, DispyJob.Created, 'not sent while draining');
    }
    assert.deepEqual((await act('drain', 'drain=off')).json(), { draining: false });
    assert.equal(await late.wait(), release);
    assert.equal((await status()).jobs.length, 0);
    // The daemon's log has who did what.
    assert.match(A.stderr(), /"audit":true,"role":"admin".*"action":"\/drain".*node page: The node is draining/);
  });

  test('a viewer token reads but is refused actions; a given admin token replaces the derived one', async () => {
    const s = await status(B, VIEWER);
    assert.equal(s.role, 'viewer');
    assert.equal(s.host, '127.0.0.159');
    const r = await act('cpus', 'cpus=1', VIEWER, B);
    assert.equal(r.status, 403);
    assert.equal(r.json().error.code, 'DISPY_ERR_ROLE');
    assert.equal((await status(B, ADMIN)).cpuLimit, 2, 'nothing changed');
    assert.deepEqual((await act('cpus', 'cpus=1', ADMIN, B)).json(), { cpus: 1 });
    assert.equal((await request(`${B.pageUrl}status.json`, { headers: bearer(nodePageToken(TEST_SECRET)) })).status, 401);

    // A drained node takes no new client: the cluster is told why, and gets the node once it resumes.
    assert.deepEqual((await act('drain', 'drain=on', ADMIN, B)).json(), { draining: true });
    const there = join(dir, 'there');
    writeFileSync(there, '');
    const other = new JobCluster(hold, { nodes: [{ host: '127.0.0.159', port: B.port }], secret: TEST_SECRET, name: 'late' });
    try {
      const refused = await new Promise<Error & { code?: string }>((resolve) => other.once('error', resolve));
      assert.equal(refused.code, 'DISPY_ERR_NODE_BUSY');
      assert.match(refused.message, /127\.0\.0\.159 \(.*\) is draining: it takes no new client/);
      assert.equal(other.status().nodes.length, 0);
      assert.deepEqual((await act('drain', 'drain=off', ADMIN, B)).json(), { draining: false });
      assert.equal(await other.submit(there).wait(), there);
    } finally {
      await other.close();
    }
  });

  test('the page in Chromium: signs in from the printed URL, follows the node live, changes CPUs and drains it', {
    skip: unavailable ?? false,
  }, async () => {
    browser = await launchChromium();
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(A.loginUrl);
    await page.waitForURL(A.pageUrl);
    assert.equal(await page.locator('[data-testid=node-addr]').textContent(), `127.0.0.158:${A.port}`);
    assert.equal(await page.locator('[data-testid=role]').textContent(), 'admin');
    // The cluster of the previous test is still its client.
    assert.match((await page.locator('[data-testid=computations]').textContent()) ?? '', /paged/);

    // A job starts: the page shows it without a reload.
    const release2 = join(dir, 'release-2');
    const job = cluster!.submit(release2);
    await until(() => job.status === 6, 10_000, 'the job running');
    await page.locator(`[data-testid=node-jobs] tr[data-uid]`).waitFor({ timeout: 10_000 });
    await until(async () => (await page.locator('[data-testid=stat-busy]').textContent())?.startsWith('1'), 10_000, 'busy 1 on the page');
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'node-page.png'), fullPage: true });

    await page.locator('[data-testid=cpus-input]').fill('1');
    await page.locator('[data-testid=set-cpus]').click();
    await page.locator('[data-testid=flash]').waitFor();
    assert.equal(await page.locator('[data-testid=flash]').textContent(), 'The node now runs jobs on 1 CPU.');
    assert.equal((await status()).cpuLimit, 1);

    await page.locator('[data-testid=drain]').click();
    await page.waitForURL(/\?ok=/);
    assert.match((await page.locator('[data-testid=flash]').textContent()) ?? '', /draining/);
    assert.match((await page.locator('[data-testid=stat-state]').textContent()) ?? '', /Draining/);
    assert.equal((await status()).draining, true);
    writeFileSync(release2, '');
    await job.wait();
    await until(
      async () => (await page.locator('[data-testid=stat-state]').textContent())?.includes('Drained'),
      10_000,
      'drained on the page',
    );
    await page.locator('[data-testid=drain]').click();
    await page.waitForURL(/\?ok=/);
    assert.equal((await status()).draining, false);

    // The viewer's page has no controls.
    await page.goto(`${B.pageUrl}?token=${VIEWER}`);
    await page.locator('[data-testid=viewer-note]').waitFor();
    assert.equal(await page.locator('[data-testid=admin-controls]').count(), 0);
    await ctx.close();
  });
  test('draining hands waiting jobs back: they run on another node, each once; a job for that node alone waits until it resumes', async () => {
    const C = await startNode({ host: '127.0.0.162', cpus: 2, logLevel: 'info' });
    const ready = join(dir, 'drain-ready');
    const go = join(dir, 'drain-go');
    writeFileSync(ready, '');
    assert.deepEqual((await act('cpus', 'cpus=2')).json(), { cpus: 2 });
    const c2 = new JobCluster(hold, {
      nodes: [
        { host: '127.0.0.158', port: A.port },
        { host: C.host, port: C.port },
      ],
      secret: TEST_SECRET,
      name: 'drained',
    });
    const finals = new Map<unknown, number>();
    c2.on('status', (e) => {
      if (e.job && [DispyJob.Finished, DispyJob.Terminated, DispyJob.Cancelled, DispyJob.Abandoned].includes(e.status as never))
        finals.set(e.job, (finals.get(e.job) ?? 0) + 1);
    });
    try {
      // Short jobs first: known to be short, the cluster keeps many queued on each node.
      await within(Promise.all(Array.from({ length: 40 }, () => c2.submit(ready).wait())), 20_000, 'short jobs');
      const jobs = Array.from({ length: 30 }, () => c2.submit(go));
      await until(async () => (await status()).jobs.length > 2, 10_000, 'jobs waiting on A behind its running ones');

      assert.deepEqual((await act('drain', 'drain=on')).json(), { draining: true });
      const left = await until(
        async () => {
          const x = await status();
          return x.jobs.length > 0 && x.jobs.every((j: any) => j.state === 'running') ? x.jobs.length : null;
        },
        10_000,
        'only running jobs left on A',
      );
      assert.ok(left >= 1 && left <= 2, `${left} running on A`);
      writeFileSync(go, '');
      await within(Promise.all(jobs.map((j) => j.wait())), 30_000, 'every job');
      assert.equal(jobs.filter((j) => j.ipAddr === '127.0.0.158').length, left, 'only the jobs already running on A ran there');
      assert.equal(jobs.filter((j) => j.ipAddr === C.host).length, 30 - left, 'the others ran on C');
      await c2.wait();
      for (const j of jobs) assert.equal(finals.get(j), 1, 'one final status per job');

      // A job for A alone waits at the client while A drains, and runs there once it resumes.
      const pinned = c2.submitNode('127.0.0.158', ready);
      for (let k = 0; k < 5; k++) {
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(pinned.status, DispyJob.Created, 'not sent while A drains');
      }
      assert.equal((await status()).jobs.length, 0);
      assert.deepEqual((await act('drain', 'drain=off')).json(), { draining: false });
      assert.equal(await within(pinned.wait(), 10_000, 'the job for A'), ready);
      assert.equal(pinned.ipAddr, '127.0.0.158');
    } finally {
      writeFileSync(go, '');
      await c2.close({ terminate: true });
      await C.stop();
    }
  });
});
