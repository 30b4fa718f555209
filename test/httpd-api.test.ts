/**
 * DispyHTTPServer's JSON API against a real cluster: every endpoint and field in dispy's shapes
 * (test/fixtures/dispy-http), the job counters (cancel while queued, terminate, reentrant
 * re-run), a closed cluster staying visible, and the document root (templating, confinement).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, DispyJob, DispyNode } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';
import { post, request } from './helpers/http-client.js';
import { C, assertNode, assertShape, compute, dispySample, startServer } from './helpers/httpd.js';

let nodes: TestNode[];
before(async () => {
  nodes = [
    await startNode({ host: '127.0.0.90', cpus: 2, name: 'alpha', logLevel: 'warn' }),
    await startNode({ host: '127.0.0.91', cpus: 2, name: 'beta', logLevel: 'warn' }),
  ];
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

const spec = (n: TestNode, cpus?: number) => ({ host: n.host, port: n.port, ...(cpus ? { cpus } : {}) });

test("every endpoint answers in dispy's shapes with our fields; job args are toString()s", async () => {
  const cluster = new JobCluster(compute, { depends: [C], nodes: nodes.map((n) => spec(n)), secret: TEST_SECRET });
  const { server, base } = await startServer(cluster);
  try {
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].nodes.length === 2, 10_000, 'two nodes shown');
    const jobs = Array.from({ length: 6 }, (_, i) => {
      const j = cluster.submit(new C(String(i), 1.5 + i), 1.2);
      j.id = i;
      return j;
    });
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.running === 4, 10_000, '4 running');

    const status = await request(`${base}/cluster_status`);
    assert.equal(status.status, 200);
    assert.equal(status.headers['content-type'], 'application/json; charset=utf-8');
    const st = status.json();
    assertShape(st, dispySample('cluster_status'));
    assert.equal(st.length, 1);
    assert.equal(st[0].name, 'compute');
    assert.deepEqual(Object.keys(st[0].jobs).sort(), ['done', 'failed', 'queued', 'running', 'submitted']);
    assert.deepEqual(st[0].jobs, { submitted: 4, done: 0, queued: 2, running: 4, failed: 0 });
    for (const n of st[0].nodes) assertNode(n);
    const byIp = Object.fromEntries(st[0].nodes.map((n: any) => [n.ip_addr, n]));
    assert.equal(byIp['127.0.0.90'].name, 'alpha');
    assert.equal(byIp['127.0.0.90'].port, nodes[0]!.port);
    assert.equal(byIp['127.0.0.90'].cpus, 2);
    assert.equal(byIp['127.0.0.90'].busy, 2);
    assert.equal(byIp['127.0.0.90'].status, DispyNode.Initialized);

    const ns = await request(`${base}/nodes`);
    assert.equal(ns.headers['content-type'], 'application/json; charset=utf-8');
    assertShape(ns.json(), dispySample('nodes'));
    assert.deepEqual(Object.keys(ns.json()[0]).sort(), ['name', 'nodes']);

    const info = await post(base, '/node_info', { host: '127.0.0.90' });
    assert.equal(info.status, 200);
    assert.equal(info.headers['content-type'], 'application/json; charset=utf-8');
    const ni = info.json();
    assertShape(ni, dispySample('node_info'));
    assertNode(ni.node);
    const running = ni.cluster_jobs.compute;
    assert.equal(running.length, 2);
    for (const j of running) {
      const job = jobs[Number(j.job_id)]!;
      assert.equal(j.uid, job._uid);
      assert.equal(j.args, `${String(job.args[0])}, 1.2`);
      assert.match(j.args, /^C\(\d, \d+\.\d{4}\), 1\.2$/);
      assert.equal(j.kwargs, '');
      assert.equal(j.cluster, 'compute');
      assert.equal(j.start_time_ms, job.startTime);
    }
    // By node name (no DNS), unknown node (404 JSON), missing host (400 JSON).
    assert.equal((await post(base, '/node_info', { host: 'beta' })).json().node.ip_addr, '127.0.0.91');
    const unknown = await post(base, '/node_info', { host: '127.0.0.99' });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json().error.code, 'DISPY_ERR_NODE_UNKNOWN');
    const missing = await post(base, '/node_info', {});
    assert.equal(missing.status, 400);
    assert.equal(missing.json().error.code, 'DISPY_ERR_BAD_REQUEST');

    // /update answers, hides the arguments, and sets the interval of new page loads.
    const upd = await post(base, '/update', { timeout: 3, show_job_args: 'false' });
    assert.equal(upd.status, 200);
    assert.deepEqual(upd.json(), { timeout: 3, show_job_args: false });
    const hidden = (await post(base, '/node_info', { host: '127.0.0.90' })).json();
    for (const j of hidden.cluster_jobs.compute) assert.equal(j.args, '');
    assert.deepEqual((await post(base, '/update', { show_job_args: 'true', timeout: 0.5 })).json(), { timeout: 0, show_job_args: true });
    assert.equal((await post(base, '/update', { timeout: 'soon' })).status, 400);

    assert.ok(await cluster.wait(20));
    // dispy's pages: the first /cluster_updates without a cookie gets everything, the next
    // (with the cookie it was given) nothing new: dispy's second capture.
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.done === 6, 10_000, 'the server to count 6 jobs done');
    const first = await request(`${base}/cluster_updates`);
    assertShape(first.json(), dispySample('cluster_updates'));
    assert.equal(first.json()[0].nodes.length, 2);
    const cookie = (first.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ');
    assert.match(cookie, /^dispyts_cursor_\d+=/);
    const second = await request(`${base}/cluster_updates`, { headers: { cookie } });
    assert.deepEqual(Object.keys(second.json()[0]).sort(), Object.keys(dispySample('cluster_updates_2nd')[0]).sort());
    assert.deepEqual(second.json()[0].nodes, []);
    assert.deepEqual(second.json()[0].jobs, { submitted: 6, done: 6, queued: 0, running: 0, failed: 0 });

    const health = await request(`${base}/healthz`);
    assert.equal(health.json().status, 'ok');
    const nf = await request(`${base}/no_such_thing`);
    assert.equal(nf.status, 404);
    assert.equal(nf.json().error.code, 'DISPY_ERR_NOT_FOUND');
    assert.equal((await post(base, '/no_such_action', { a: 1 })).status, 404);
    assert.equal((await request(`${base}/cluster_status`, { method: 'DELETE' })).status, 404);
    assert.equal((await request(`${base}/cluster_status`, { method: 'HEAD' })).status, 200);
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close();
  }
});

test('counters: a job cancelled while queued counts in none, a terminated one is done and failed; done <= submitted throughout', async () => {
  const cluster = new JobCluster(compute, { depends: [C], nodes: [spec(nodes[0]!, 1)], secret: TEST_SECRET });
  const { server, base } = await startServer(cluster);
  const seen: any[] = [];
  let polling = true;
  // Bounded: it stops when told, or after 60 s.
  const pollUntil = Date.now() + 60_000;
  const poller = (async () => {
    while (polling && Date.now() < pollUntil) {
      const j = (await request(`${base}/cluster_status`)).json()[0].jobs;
      seen.push(j);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    await until(() => cluster.status().nodes.length === 1, 10_000, 'node');
    const [j1, j2, j3] = [0, 1, 2].map((i) => cluster.submit(new C(String(i), 1), i === 1 ? 0.3 : 5));
    await until(() => j1!.status === DispyJob.Running, 10_000, 'j1 running');
    assert.equal(await cluster.cancel(j3!), 0);
    await assert.rejects(j3!.wait());
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.queued === 1, 5_000, 'queued 1');
    assert.deepEqual((await request(`${base}/cluster_status`)).json()[0].jobs, { submitted: 1, done: 0, queued: 1, running: 1, failed: 0 });
    assert.equal(await cluster.cancel(j1!), 0);
    await assert.rejects(j1!.wait());
    assert.equal(await j2!.wait(), 0.3);
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.done === 2, 5_000, 'done 2');
    assert.deepEqual((await request(`${base}/cluster_status`)).json()[0].jobs, { submitted: 2, done: 2, queued: 0, running: 0, failed: 1 });
  } finally {
    polling = false;
    await poller;
    await server.shutdown({ wait: false });
    await cluster.close();
  }
  assert.ok(seen.length > 5);
  for (const j of seen) {
    assert.ok(j.done <= j.submitted, `done ${j.done} <= submitted ${j.submitted}`);
    assert.ok(j.queued >= 0 && j.running >= 0 && j.failed <= j.done);
  }
});

test('a reentrant job re-run after its node died is submitted once; the dead node stays, Closed', async () => {
  const victim = await startNode({ host: '127.0.0.106', cpus: 1, logLevel: 'warn' });
  const cluster = new JobCluster(compute, {
    depends: [C],
    nodes: [spec(nodes[1]!, 1), spec(victim)],
    secret: TEST_SECRET,
    reentrant: true,
  });
  const { server, base } = await startServer(cluster);
  try {
    await until(() => cluster.status().nodes.length === 2, 10_000, 'two nodes');
    const jobs = [0, 1].map((i) => cluster.submit(new C(String(i), 2), 1.5));
    await until(() => jobs.every((j) => j.status === DispyJob.Running), 10_000, 'both running');
    const onVictim = jobs.find((j) => j.ipAddr === victim.host)!;
    assert.ok(onVictim, 'one job runs on the victim');
    await victim.stop('SIGKILL');
    assert.equal(await onVictim.wait(), 3);
    await Promise.all(jobs.map((j) => j.wait()));
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.done === 2, 5_000, 'done 2');
    const st = (await request(`${base}/cluster_status`)).json()[0];
    assert.deepEqual(st.jobs, { submitted: 2, done: 2, queued: 0, running: 0, failed: 0 });
    const dead = st.nodes.find((n: any) => n.ip_addr === victim.host);
    assert.equal(dead.status, DispyNode.Closed);
    assert.equal(dead.busy, 0);
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close();
    await victim.stop();
  }
});

test('a closed cluster stays visible until delCluster; an unknown delCluster is false', async () => {
  const cluster = new JobCluster(compute, { depends: [C], nodes: [spec(nodes[0]!)], secret: TEST_SECRET, name: 'short-lived' });
  const { server, base } = await startServer(cluster);
  try {
    await cluster.submit(new C('x', 1), 0.1).wait();
    await cluster.close();
    await until(
      async () => (await request(`${base}/cluster_status`)).json()[0].nodes[0]?.status === DispyNode.Closed,
      5_000,
      'node closed',
    );
    const st = (await request(`${base}/cluster_status`)).json();
    assert.equal(st[0].name, 'short-lived');
    assert.deepEqual(st[0].jobs, { submitted: 1, done: 1, queued: 0, running: 0, failed: 0 });
    assert.equal((await post(base, '/node_info', { host: nodes[0]!.host })).status, 200);
    assert.equal(server.delCluster(cluster), true);
    assert.equal(server.delCluster(cluster), false);
    assert.deepEqual((await request(`${base}/cluster_status`)).json(), []);
    assert.equal((await post(base, '/node_info', { host: nodes[0]!.host })).status, 404);
  } finally {
    await server.shutdown({ wait: false });
  }
});

/** A CSP hash source (without quotes) of a script's text, regex-escaped. */
function sha256(text: string): string {
  return `sha256-${createHash('sha256').update(text).digest('base64')}`.replace(/[+/]/g, (c) => `\\${c}`);
}

test('documentRoot: dispy templating in .html, a CSP with the hashes of its inline scripts as sent, nothing outside the root', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-httpd-root-'));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(
    join(root, 'monitor.html'),
    '<script>var timeout = %(TIMEOUT)s * 1000; var show = %(SHOW_JOB_ARGS)s;</script> 100%% %d %(OTHER)s',
  );
  writeFileSync(join(root, 'sub', 'node.html'), 'node %(TIMEOUT)s');
  writeFileSync(join(root, 'dispy.css'), 'body {}');
  writeFileSync(join(root, 'dispy.js'), 'var x = 1;');
  writeFileSync(join(root, 'data.bin'), 'binary');
  writeFileSync(join(root, '.hidden.html'), 'hidden');
  writeFileSync(join(dir, 'secret.html'), 'SECRET');
  symlinkSync(join(dir, 'secret.html'), join(root, 'link.html'));
  const { server, base } = await startServer(null, { documentRoot: root, pollSec: 7, showJobArgs: false });
  try {
    for (const p of ['/', '/index.html', '/monitor.html']) {
      const r = await request(base + p);
      assert.equal(r.status, 200, p);
      assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
      assert.equal(r.body, '<script>var timeout = 7 * 1000; var show = false;</script> 100% %d %(OTHER)s');
      const csp = String(r.headers['content-security-policy']);
      assert.match(csp, new RegExp(`script-src 'self' '${sha256('var timeout = 7 * 1000; var show = false;')}';`));
      assert.doesNotMatch(csp.split(';').find((d) => d.includes('script-src'))!, /unsafe/);
      assert.match(csp, /frame-ancestors 'none'/);
    }
    await post(base, '/update', { timeout: 4, show_job_args: 'true' });
    assert.equal((await request(`${base}/sub/node.html`)).body, 'node 4');
    const updated = await request(`${base}/`);
    assert.match(updated.body, /timeout = 4 \* 1000; var show = true;/);
    // Hashed per response: the new timeout is in the script, and so in the hash.
    assert.match(
      String(updated.headers['content-security-policy']),
      new RegExp(`script-src 'self' '${sha256('var timeout = 4 * 1000; var show = true;')}';`),
    );
    const css = await request(`${base}/dispy.css`);
    assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
    assert.equal(css.headers['cache-control'], 'private, max-age=86400');
    assert.equal((await request(`${base}/dispy.js`)).headers['content-type'], 'text/javascript; charset=utf-8');
    for (const p of [
      '/data.bin',
      '/.hidden.html',
      '/link.html',
      '/../secret.html',
      '/%2e%2e/secret.html',
      '/..%2fsecret.html',
      '/sub/..%2f..%2fsecret.html',
      '/sub/%2e%2e/%2e%2e/secret.html',
      '/..%5csecret.html',
      '/sub%00.html',
      '/%2fetc%2fpasswd',
    ]) {
      const r = await request(base + p);
      assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
      assert.ok(!r.body.includes('SECRET'), p);
      assert.equal(r.json().error.code, r.status === 404 ? 'DISPY_ERR_NOT_FOUND' : 'DISPY_ERR_BAD_REQUEST');
    }
    const badEnc = await request(`${base}/%ff.html`);
    assert.equal(badEnc.status, 400);
  } finally {
    await server.shutdown({ wait: false });
    rmSync(dir, { recursive: true, force: true });
  }
  // Without a documentRoot: our UI (or, until it is built, a placeholder), strict CSP.
  const { server: s2, base: b2 } = await startServer(null);
  try {
    const r = await request(`${b2}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    const csp = String(r.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    if (r.body.includes('dispyts HTTP server')) assert.match(r.body, /href="cluster_status"/);
  } finally {
    await s2.shutdown({ wait: false });
  }
});
