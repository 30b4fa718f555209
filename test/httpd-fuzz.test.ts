/**
 * Hostile input to every endpoint (fast-check): invalid fields, wrong types, huge and repeated
 * fields, bad encodings, traversal paths, unknown nodes and uids, random methods, headers and
 * bodies, while a real cluster runs jobs. No answer is a 5xx, errors are JSON without stacks,
 * the server keeps serving, and every job of the cluster settles normally. Only loopback
 * addresses and `localhost` appear: nothing needs DNS.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { JobCluster, type DispyJob } from '../src/index.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';
import { request, type Reply } from './helpers/http-client.js';
import { C, compute, startServer } from './helpers/httpd.js';

let nodes: TestNode[];
before(async () => {
  nodes = await startNodes(2, { first: 100, cpus: 2, logLevel: 'warn' });
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

const ENDPOINTS = [
  '/cluster_status',
  '/cluster_updates',
  '/nodes',
  '/events',
  '/healthz',
  '/node_info',
  '/cancel_jobs',
  '/add_node',
  '/allocate_node',
  '/deallocate_node',
  '/close_node',
  '/update',
  '/set_cpus',
];
const TRAVERSALS = [
  '/',
  '/index.html',
  '/monitor.html',
  '/../../etc/passwd',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/..%2f..%2fetc%2fpasswd',
  '/%2fetc%2fpasswd',
  '/..%5c..%5cwindows%5cwin.ini',
  '/%00',
  '/a%00.html',
  '/%ff%fe.html',
  '/%',
  '/%zz',
  '//cluster_status',
  '/cluster_status/',
  '/CLUSTER_STATUS',
  '/cluster_status;x=1',
  '/.env',
  '/dist/../package.json',
  `/x.html${'/..'.repeat(50)}`,
  `/${'a'.repeat(5000)}.html`,
];
const FIELDS = [
  'host',
  'uid',
  'port',
  'cpus',
  'cluster',
  'id',
  'nodes',
  'timeout',
  'show_job_args',
  'terminate',
  '127.0.0.250',
  '10.0.0.1',
  '__proto__',
  'constructor',
  '',
];

/** Unknown nodes: addresses of this test's range where nothing listens, wildcards, garbage. */
const safeHost = fc.oneof(
  fc.integer({ min: 107, max: 110 }).map((n) => `127.0.0.${n}`),
  fc.tuple(fc.integer({ min: 200, max: 254 }), fc.integer({ min: 1, max: 254 })).map(([a, b]) => `127.${a}.${b}.250`),
  fc.constantFrom('127.0.0.25*', '127.9.*', '[::1]', '', ' ', '../etc', 'a b', 'x/y', '<script>', '127.0.0.1\u0000', 'é.example.\u2603'),
);
const hostile = fc.oneof(
  safeHost,
  fc.integer().map(String),
  fc.double().map(String),
  fc.constantFrom(
    '-1',
    '0',
    '1e309',
    'NaN',
    'Infinity',
    'true',
    'false',
    'null',
    '[]',
    '{}',
    '[1,2]',
    '["127.0.0.250"]',
    '["*"]',
    `[${'"127.0.0.250",'.repeat(200)}"x"]`,
    '{"__proto__":1}',
    '%',
    '%%',
    '\r\n',
    '*',
  ),
  fc.integer({ min: 1_000_000, max: 2 ** 53 }).map(String),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.string({ maxLength: 3000 }),
);
const field = fc.tuple(fc.oneof(fc.constantFrom(...FIELDS), fc.string({ unit: 'binary', maxLength: 12 })), hostile);

const enc = (s: string): string => {
  try {
    return encodeURIComponent(s);
  } catch {
    return '%ED%A0%80'; // a lone surrogate: malformed UTF-8 once decoded
  }
};

const body = fc.oneof(
  fc
    .array(field, { maxLength: 12 })
    .map((fs) => ({ type: 'application/x-www-form-urlencoded', data: Buffer.from(fs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&')) })),
  fc
    .array(field, { maxLength: 6 })
    .map((fs) => ({ type: 'application/x-www-form-urlencoded', data: Buffer.from(fs.map(([k, v]) => `${k}=${v}`).join('&'), 'latin1') })),
  fc.uint8Array({ maxLength: 2000 }).map((b) => ({ type: 'application/x-www-form-urlencoded', data: Buffer.from(b) })),
  fc.json().map((j) => ({ type: 'application/json', data: Buffer.from(j) })),
  fc
    .dictionary(fc.constantFrom(...FIELDS), fc.oneof(hostile, fc.array(hostile, { maxLength: 4 }), fc.jsonValue()))
    .map((o) => ({ type: 'application/json', data: Buffer.from(JSON.stringify(o)) })),
  fc
    .tuple(fc.constantFrom('uid', 'host', 'nodes', '127.0.0.250'), fc.integer({ min: 1000, max: 30_000 }))
    .map(([k, n]) => ({ type: 'application/x-www-form-urlencoded', data: Buffer.from(`${k}=1234567&`.repeat(n)) })),
  fc.array(field, { maxLength: 4 }).map((fs) => {
    const b = `xYz${Math.random().toString(36).slice(2)}`;
    const parts = fs
      .map(([k, v]) => `--${b}\r\nContent-Disposition: form-data; name="${k.replace(/["\r\n]/g, '')}"\r\n\r\n${v}\r\n`)
      .join('');
    return { type: `multipart/form-data; boundary=${b}`, data: Buffer.from(`${parts}--${b}--\r\n`) };
  }),
  fc.uint8Array({ maxLength: 500 }).map((b) => ({ type: 'multipart/form-data; boundary=zz', data: Buffer.from(b) })),
  fc.constantFrom(
    { type: 'text/plain', data: Buffer.from('uid=1') },
    { type: '', data: Buffer.alloc(0) },
    { type: 'application/json', data: Buffer.from('{"nodes":') },
    { type: 'multipart/form-data', data: Buffer.from('x') },
  ),
);

const query = fc.oneof(
  fc.constant(''),
  fc
    .array(fc.tuple(fc.constantFrom('since', 'epoch', 'interval', 'token', 'x', 'since'), hostile), { maxLength: 4 })
    .map((qs) => `?${qs.map(([k, v]) => `${k}=${enc(v)}`).join('&')}`),
  fc.constantFrom('?since=0', '?since=1', '?since=-1', `?since=${'9'.repeat(40)}`, '?interval=0.05', '?since=%zz', '?%', '?token=%00'),
);

const requestArb = fc.record({
  method: fc.constantFrom('GET', 'POST', 'POST', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'),
  path: fc.oneof(
    fc.constantFrom(...ENDPOINTS),
    fc.constantFrom(...TRAVERSALS),
    fc.webPath(),
    fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `/${enc(s)}`),
  ),
  query,
  body,
  headers: fc.record(
    {
      'last-event-id': hostile,
      cookie: fc.oneof(
        hostile.map((v) => `dispyts_cursor_1=${v}`),
        fc.constantFrom('a=b; dispyts_cursor=%%%; ;;', 'x'.repeat(6000)),
      ),
      origin: fc.constantFrom('http://evil.example', 'null'),
      authorization: fc.constantFrom('Bearer', 'Bearer x', 'Basic Zm9vOmJhcg=='),
      accept: fc.constantFrom('text/event-stream', '*/*'),
    },
    { requiredKeys: [] },
  ),
});

function assertAnswer(what: string, r: Reply): void {
  assert.ok(r.status >= 200 && r.status < 500, `${what}: status ${r.status} ${r.body.slice(0, 300)}`);
  assert.doesNotMatch(r.body, /\n\s+at .+:\d+:\d+/, `${what}: no stack trace`);
  if (String(r.headers['content-type'] ?? '').startsWith('application/json') && r.body) {
    const j = r.json();
    if (r.status >= 400) {
      assert.deepEqual(Object.keys(j), ['error'], what);
      assert.match(j.error.code, /^DISPY_ERR_[A-Z_]+$/, what);
      assert.equal(typeof j.error.message, 'string');
    }
  }
}

test('malformed and hostile requests to every endpoint: no 5xx, no crash, every job settles normally', async () => {
  const cluster = new JobCluster(compute, { depends: [C], nodes: nodes.map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET });
  // Network safety: /add_node makes the cluster connect to what it is given, and a hostile
  // value such as `12345` or `1.5` would resolve to an address beyond loopback. The server's
  // handling is what is fuzzed; the cluster is only let reach this test's own unused addresses
  // (and wildcards, which match only nodes this process knows).
  const allocate = cluster.allocateNode.bind(cluster);
  cluster.allocateNode = async (spec) => {
    const host = typeof spec === 'string' ? spec : (spec as { host?: unknown }).host;
    if (typeof host === 'string' && (/^127\.0\.0\.(10[7-9]|110)$/.test(host) || /^127\.[0-9.]*\*$/.test(host))) return allocate(spec);
    return -1;
  };
  const { server, base } = await startServer(cluster, { logLevel: 'silent' });
  const jobs: DispyJob<number>[] = [];
  let feeding = true;
  // Keep jobs running (and so uids, node changes and SSE traffic) during the whole fuzz run.
  const feedUntil = Date.now() + 170_000;
  const feeder = (async () => {
    let i = 0;
    while (feeding && Date.now() < feedUntil) {
      while (jobs.filter((j) => !j.settled).length < 6) {
        const j = cluster.submit(new C(String(i), i % 7), 0.1 + (i % 4) * 0.1);
        j.id = i++;
        jobs.push(j);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  let sent = 0;
  try {
    await until(() => cluster.status().nodes.length === 2, 10_000, 'nodes');
    await fc.assert(
      fc.asyncProperty(requestArb, async (rq) => {
        const url = base + rq.path + rq.query;
        const headers: Record<string, string> = { ...rq.headers };
        if (rq.method !== 'GET' && rq.method !== 'HEAD') headers['content-type'] = rq.body.type;
        const streaming = rq.path === '/events' && rq.method === 'GET';
        let r: Reply;
        try {
          r = await request(url, {
            method: rq.method,
            headers,
            ...(rq.method === 'GET' || rq.method === 'HEAD' ? {} : { body: rq.body.data }),
            timeoutMs: 15_000,
            headersOnly: streaming,
          });
        } catch (err) {
          // The client library refusing to send (unescaped characters, bad header): not the server's doing.
          const code = (err as NodeJS.ErrnoException).code ?? '';
          if (['ERR_UNESCAPED_CHARACTERS', 'ERR_INVALID_CHAR', 'ERR_INVALID_HTTP_TOKEN', 'ERR_HTTP_INVALID_HEADER_VALUE'].includes(code))
            return;
          // The server may close a connection whose request it rejected before reading it all.
          if (code === 'ECONNRESET' || code === 'EPIPE') return;
          throw err;
        }
        sent++;
        assertAnswer(`${rq.method} ${rq.path}${rq.query.slice(0, 80)}`, r);
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 400), seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31), endOnFailure: true },
    );
    assert.ok(sent > 300, `${sent} requests answered`);
    // Still serving, and consistent.
    assert.equal((await request(`${base}/healthz`)).json().status, 'ok');
  } finally {
    feeding = false;
    await feeder;
  }
  try {
    assert.ok(await cluster.wait(30), 'every job settled');
    for (const j of jobs) {
      assert.ok(j.settled);
      assert.equal(await j.wait(), (j.args[1] as number) * (j.args[0] as C).i, `job ${String(j.id)}`);
    }
    await until(async () => (await request(`${base}/cluster_status`)).json()[0].jobs.done === jobs.length, 5_000, 'view caught up');
    const st = (await request(`${base}/cluster_status`)).json()[0];
    assert.deepEqual(st.jobs, { submitted: jobs.length, done: jobs.length, queued: 0, running: 0, failed: 0 });
    assert.deepEqual(
      st.nodes.map((n: any) => n.cpus),
      [2, 2],
      'no node was changed by the fuzz',
    );
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close();
  }
});
