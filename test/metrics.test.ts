/**
 * `GET /metrics` scraped and parsed by a Prometheus text-format parser (parse-prometheus-text-
 * format, a port of the official Python client's parser), against a real cluster on two real
 * nodes (127.0.0.152, 127.0.0.153) that ran finished, failed and cancelled jobs: every family is
 * typed and documented, values are numbers, label values with quotes, backslashes and line feeds
 * round-trip, and the numbers match the cluster. Protected like the pages unless
 * `metrics: 'public'`; `/healthz` is always open.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { DispyHTTPServer, JobCluster, type DispyJob } from '../src/index.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';
import { request } from './helpers/http-client.js';

interface Family {
  name: string;
  help: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}
// The package ships CommonJS without type declarations.
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

/** A cluster name with every character the format must escape in a label value. */
const NAME = 'we"ird \\ name\nline 2';
const PASSWORD = 'metrics-reader-password';

async function work(kind: string, ms: number): Promise<string> {
  await new Promise((r) => setTimeout(r, ms));
  if (kind === 'fail') throw new Error('boom');
  return kind;
}

function basic(user: string, password: string): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` };
}

/** Parses an exposition and checks it is clean: typed, documented, numeric, no family split. */
function scrape(text: string): Map<string, Family> {
  const families = parsePrometheus(text);
  const typeLines = text.split('\n').filter((l) => l.startsWith('# TYPE ')).length;
  assert.equal(families.length, typeLines, 'one family per TYPE line (no family split or merged)');
  const byName = new Map<string, Family>();
  for (const f of families) {
    assert.ok(!byName.has(f.name), `${f.name} appears once`);
    byName.set(f.name, f);
    assert.match(f.name, /^dispyts_[a-z_]+$/);
    assert.ok(f.type === 'GAUGE' || f.type === 'COUNTER', `${f.name} is typed (${f.type})`);
    assert.ok(f.help.length > 10, `${f.name} has help`);
    if (f.type === 'COUNTER') assert.match(f.name, /_total$/, `${f.name}: counters end in _total`);
    for (const m of f.metrics)
      assert.ok(Number.isFinite(Number(m.value)), `${f.name} ${JSON.stringify(m.labels)} = ${m.value} is a number`);
  }
  return byName;
}

function value(fams: Map<string, Family>, name: string, labels: Record<string, string>): number {
  const f = fams.get(name);
  assert.ok(f, `family ${name}`);
  const m = f.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  assert.ok(m, `${name}${JSON.stringify(labels)} in ${JSON.stringify(f.metrics)}`);
  return Number(m.value);
}

describe('/metrics (127.0.0.152-153)', () => {
  let nodes: TestNode[];
  let cluster: JobCluster;
  let server: DispyHTTPServer;
  let publicServer: DispyHTTPServer;
  let base: string;
  let jobs: DispyJob[] = [];

  before(async () => {
    nodes = await startNodes(2, { first: 152, cpus: 1, logLevel: 'warn' });
    cluster = new JobCluster(work, { nodes: nodes.map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET, name: NAME });
    server = new DispyHTTPServer(cluster, {
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      auth: { users: { prom: { password: PASSWORD, role: 'viewer' } } },
    });
    base = (await server.listening).url.replace('localhost', '127.0.0.1');
    await until(() => cluster.status().nodes.length === 2, 15_000, 'two nodes up');
    // 4 finished, 1 failed; one more waits behind a long job and is cancelled while queued.
    jobs = ['ok', 'ok', 'ok', 'ok', 'fail'].map((k) => cluster.submit(k, 20));
    await Promise.allSettled(jobs.map((j) => j.wait()));
    const long = [cluster.submit('ok', 30_000), cluster.submit('ok', 30_000)];
    await until(() => long.every((j) => j.status === 6), 10_000, 'both long jobs running');
    const queued = cluster.submit('ok', 10);
    await cluster.cancel(queued);
    await Promise.allSettled([queued.wait()]);
    jobs.push(...long, queued);
  });
  after(async () => {
    await publicServer?.shutdown({ wait: false });
    await server?.shutdown({ wait: false });
    await cluster?.close({ terminate: true });
    await Promise.all((nodes ?? []).map((n) => n.stop()));
  });

  test('protected by default: 401 without credentials, /healthz open', async () => {
    const r = await request(`${base}/metrics`);
    assert.equal(r.status, 401);
    assert.equal(r.json().error.code, 'DISPY_ERR_UNAUTHORIZED');
    const h = await request(`${base}/healthz`);
    assert.equal(h.status, 200);
    assert.equal(h.json().status, 'ok');
  });

  test('a scrape parses cleanly and its numbers match the cluster', async () => {
    await until(() => server.jobHistory.size === 6, 5000, 'the history has every finished job');
    const r = await request(`${base}/metrics`, { headers: basic('prom', PASSWORD) });
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    const fams = scrape(r.body);
    const c = { cluster: NAME };
    // The label value came back exactly (escaping of ", \ and line feed).
    assert.deepEqual(fams.get('dispyts_jobs_done_total')!.metrics[0]!.labels, c);
    assert.equal(value(fams, 'dispyts_clusters', {}), 1);
    assert.equal(value(fams, 'dispyts_jobs_done_total', c), 5);
    assert.equal(value(fams, 'dispyts_jobs_failed_total', c), 1);
    // Named for what it counts (dispy's JSON calls it `submitted`); the old name is gone.
    assert.equal(value(fams, 'dispyts_jobs_started_total', c), 7);
    assert.equal(fams.get('dispyts_jobs_submitted_total'), undefined);
    assert.equal(fams.get('dispyts_node_available_cpu_percent'), undefined);
    assert.equal(value(fams, 'dispyts_jobs', { ...c, state: 'running' }), 2);
    assert.equal(value(fams, 'dispyts_jobs', { ...c, state: 'queued' }), 0);
    // Both nodes have 1 CPU and run a long job: full.
    assert.equal(value(fams, 'dispyts_nodes', { ...c, state: 'full' }), 2);
    assert.equal(value(fams, 'dispyts_nodes', { ...c, state: 'idle' }), 0);
    assert.equal(value(fams, 'dispyts_nodes', { ...c, state: 'closed' }), 0);
    assert.equal(value(fams, 'dispyts_cpus', c), 2);
    assert.equal(value(fams, 'dispyts_busy_cpus', c), 2);
    let done = 0;
    for (const n of cluster.status().nodes) {
      const l = { ...c, node: n.ipAddr };
      assert.equal(value(fams, 'dispyts_node_jobs_done_total', l), n.jobsDone);
      assert.equal(value(fams, 'dispyts_node_busy_cpus', l), 1);
      assert.equal(value(fams, 'dispyts_node_up', l), 1);
      assert.ok(Math.abs(value(fams, 'dispyts_node_job_time_seconds_total', l) - n.jobTime) < 1e-9);
      assert.ok(Math.abs(value(fams, 'dispyts_node_cpu_used_seconds_total', l) - n.cpuUsed) < 1e-9);
      assert.ok(value(fams, 'dispyts_node_available_memory_bytes', l) > 0);
      // A 0-1 ratio, the JSON's percent (dispy's meaning) divided by 100.
      const ratio = value(fams, 'dispyts_node_available_cpu_ratio', l);
      assert.ok(ratio >= 0 && ratio <= 1, `ratio ${ratio}`);
      const json = (await request(`${base}/cluster_status`, { headers: basic('prom', PASSWORD) })).json()[0].nodes;
      const pct = json.find((x: { ip_addr: string }) => x.ip_addr === n.ipAddr).avail_info.cpu;
      assert.ok(pct >= 0 && pct <= 100 && Math.abs(ratio - pct / 100) < 0.5, `ratio ${ratio} vs percent ${pct}`);
      assert.equal(fams.get('dispyts_node_info')!.metrics.find((m) => m.labels?.node === n.ipAddr)?.labels?.name, n.name);
      done += n.jobsDone;
    }
    assert.equal(done, 5);
    assert.equal(value(fams, 'dispyts_job_history_records', {}), 6);
    // HTTP requests so far: the 401 above and a /healthz, by route and code.
    assert.ok(value(fams, 'dispyts_http_requests_total', { method: 'GET', route: '/metrics', code: '401' }) >= 1);
    assert.ok(value(fams, 'dispyts_http_requests_total', { method: 'GET', route: '/healthz', code: '200' }) >= 1);
    assert.ok(value(fams, 'dispyts_http_logins_total', { result: 'ok' }) >= 1, 'the Basic sign-in counted');
  });

  test("metrics: 'public' answers without credentials (the pages stay protected)", async () => {
    publicServer = new DispyHTTPServer(cluster, {
      host: '127.0.0.1',
      port: 0,
      logLevel: 'silent',
      metrics: 'public',
      auth: { users: { prom: { password: PASSWORD, role: 'viewer' } } },
    });
    const pbase = (await publicServer.listening).url.replace('localhost', '127.0.0.1');
    const r = await request(`${pbase}/metrics`);
    assert.equal(r.status, 200);
    const fams = scrape(r.body);
    assert.equal(value(fams, 'dispyts_clusters', {}), 1);
    // It followed the cluster late: the nodes are there, the running jobs too.
    assert.equal(value(fams, 'dispyts_nodes', { cluster: NAME, state: 'full' }), 2);
    assert.equal((await request(`${pbase}/cluster_status`)).status, 401);
  });
});
