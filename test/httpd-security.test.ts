/**
 * Safe by default (DESIGN.md §4): the token (generated and logged, given, or off), the
 * same-origin rule for mutations, the Host-header guard against DNS rebinding, bounded bodies,
 * security headers. Every server binds 127.0.0.1; names are only `localhost` and literals sent
 * as headers (nothing is resolved).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import pino from 'pino';
import os from 'node:os';
import { DispyHTTPServer, type DispyError } from '../src/index.js';
import { HostPolicy, resolveAuth, hostName, isLoopbackAddress } from '../src/httpd/security.js';
import { post, request } from './helpers/http-client.js';
import { startServer } from './helpers/httpd.js';

const TOKEN = 'token-for-the-tests-0123456789';

/** A raw HTTP/1.x exchange, for requests clients refuse to send (no Host, absolute targets). */
function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(text));
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

test('the token decision: generated beyond loopback, none on loopback, explicit, or off (flagged insecure)', () => {
  for (const host of ['', '0.0.0.0', '::', '10.1.2.3', 'myhost.example']) {
    const p = resolveAuth(host, undefined);
    assert.equal(p.generated, true, host);
    assert.ok(p.token && p.token.length >= 32, host);
    assert.equal(p.insecure, false);
  }
  for (const host of ['127.0.0.1', '127.0.0.200', '::1', 'localhost']) assert.equal(resolveAuth(host, undefined).token, null, host);
  assert.deepEqual(resolveAuth('', false), { token: null, trustLoopback: true, generated: false, insecure: true });
  assert.equal(resolveAuth('127.0.0.1', false).insecure, false);
  assert.deepEqual(resolveAuth('', { token: TOKEN }), { token: TOKEN, trustLoopback: true, generated: false, insecure: false });
  assert.equal(resolveAuth('127.0.0.1', { trustLoopback: false }).generated, true);
  assert.notEqual(resolveAuth('', undefined).token, resolveAuth('', undefined).token);
  assert.ok(isLoopbackAddress('::ffff:127.0.0.9') && !isLoopbackAddress('10.0.0.1') && !isLoopbackAddress('128.0.0.1'));
  assert.equal(hostName('[::1]:8181'), '::1');
  assert.equal(hostName('Example.COM.:80'), 'example.com');
  assert.equal(hostName('a b'), null);
  assert.equal(hostName('evil.com:80@x'), null);
});

test("Host policies without binding: any address of the machine for host '', the address (and localhost for loopback) otherwise", () => {
  const all = new HostPolicy('');
  const addresses = Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address));
  for (const h of ['localhost', os.hostname(), ...addresses.map((a) => (a.includes(':') ? `[${a}]:8181` : `${a}:8181`))])
    assert.ok(all.allows(h), h);
  assert.equal(all.allows('evil.example'), false);
  const one = new HostPolicy('10.1.2.3', ['dispy.example']);
  assert.ok(one.allows('10.1.2.3:8181') && one.allows('dispy.example'));
  for (const h of ['localhost', '127.0.0.1', 'evil.example', os.hostname()]) assert.equal(one.allows(h), false, h);
  const lo = new HostPolicy('127.0.0.1');
  assert.ok(lo.allows('localhost:1') && lo.allows('127.0.0.1'));
  assert.equal(lo.allows(os.hostname()), false);
});

test('with a token: 401 without it; ?token= becomes a cookie (and leaves the URL); Bearer works; /healthz is open', async () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
  // trustLoopback: false makes this loopback server behave as one reached from the network.
  const { server, base } = await startServer(null, { auth: { trustLoopback: false }, logger });
  try {
    const token = server.token!;
    assert.ok(token.length >= 32);
    const port = server.address!.port;
    assert.ok(
      lines.some((l) => l.includes(`/?token=${token}`)),
      'the login URL is logged',
    );

    const none = await request(`${base}/cluster_status`);
    assert.equal(none.status, 401);
    assert.equal(none.json().error.code, 'DISPY_ERR_UNAUTHORIZED');
    assert.equal((await request(`${base}/cluster_status?token=wrong`)).status, 401);
    assert.equal((await request(`${base}/cluster_status`, { headers: { authorization: 'Bearer nope' } })).status, 401);
    assert.equal((await request(`${base}/healthz`)).status, 200);

    const login = await request(`${base}/?token=${token}`);
    assert.equal(login.status, 302);
    assert.equal(login.headers.location, '/');
    const set = String(login.headers['set-cookie']);
    assert.match(set, new RegExp(`^dispyts_token_${port}=`));
    assert.match(set, /HttpOnly/);
    assert.match(set, /SameSite=Strict/);
    const cookie = set.split(';')[0]!;
    assert.equal((await request(`${base}/cluster_status`, { headers: { cookie } })).status, 200);
    assert.equal((await request(`${base}/`, { headers: { cookie } })).status, 200);
    // No open redirect through the login URL.
    const sneaky = await request(`${base}//evil.example/x?token=${token}`);
    assert.ok(!String(sneaky.headers.location ?? '').startsWith('//'));

    const api = await request(`${base}/nodes?token=${token}`);
    assert.equal(api.status, 200);
    assert.match(String(api.headers['set-cookie']), /^dispyts_token_/);
    assert.equal((await request(`${base}/nodes`, { headers: { authorization: `Bearer ${token}` } })).status, 200);

    // Mutations: no Origin needs the token (bearer or cookie); a foreign Origin is refused even with it.
    assert.equal((await post(base, '/update', { timeout: 3 })).status, 401);
    assert.equal((await post(base, '/update', { timeout: 3 }, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await post(base, '/update', { timeout: 3 }, { cookie })).status, 200);
    const foreign = await post(base, '/update', { timeout: 3 }, { cookie, origin: 'http://evil.example' });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.json().error.code, 'DISPY_ERR_FORBIDDEN');
  } finally {
    await server.shutdown({ wait: false });
  }
});

test('mutations only from the same origin (Origin / Sec-Fetch-Site), or without Origin from loopback', async () => {
  const { server, base } = await startServer(null);
  try {
    assert.equal(server.token, null, 'no token on loopback by default');
    const port = server.address!.port;
    const ok = { timeout: 2 };
    assert.equal((await post(base, '/update', ok)).status, 200, 'curl from loopback');
    assert.equal((await post(base, '/update', ok, { origin: `http://127.0.0.1:${port}` })).status, 200);
    assert.equal((await post(base, '/update', ok, { origin: `http://localhost:${port}`, host: `localhost:${port}` })).status, 200);
    assert.equal((await post(base, '/update', ok, { 'sec-fetch-site': 'same-origin' })).status, 200);
    const refusedHeaders: Record<string, string>[] = [
      { origin: 'http://evil.example' },
      { origin: 'null' },
      { origin: `http://127.0.0.1:${port + 1}` },
      { origin: `https://127.0.0.1:${port}` },
      { origin: `http://localhost:${port}` },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { 'sec-fetch-site': 'none' },
      { origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of refusedHeaders) {
      for (const path of ['/update', '/cancel_jobs', '/set_cpus', '/add_node', '/close_node', '/node_info']) {
        const r = await post(base, path, { uid: 1, host: '127.0.0.1', nodes: '["127.0.0.1"]' }, headers);
        assert.equal(r.status, 403, `${path} ${JSON.stringify(headers)}`);
        assert.equal(r.json().error.code, 'DISPY_ERR_FORBIDDEN');
      }
    }
    // Reads carry no CORS headers: other origins cannot read them.
    const read = await request(`${base}/cluster_status`, { headers: { origin: 'http://evil.example' } });
    assert.equal(read.status, 200);
    assert.equal(read.headers['access-control-allow-origin'], undefined);
  } finally {
    await server.shutdown({ wait: false });
  }
});

test('the Host header must name this server (DNS-rebinding guard); allowedHosts adds names', async () => {
  // On loopback, a name that is not a loopback name can only come through a proxy: refused
  // unless the proxy is named.
  for (const allowedHosts of [['dispy.example'], ['*']])
    assert.throws(
      () => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, allowedHosts }),
      (e: DispyError) => e.code === 'DISPY_ERR_INVALID_OPTION' && /trustedProxy/.test(e.message),
    );
  const { server, base } = await startServer(null, {
    allowedHosts: ['dispy.example'],
    trustedProxy: { address: '127.0.0.9', publicUrl: 'https://proxy.example' },
  });
  try {
    const port = server.address!.port;
    for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LOCALHOST', `dispy.example:${port}`, 'proxy.example']) {
      assert.equal((await request(`${base}/cluster_status`, { headers: { host } })).status, 200, host);
    }
    for (const host of ['evil.example', `evil.example:${port}`, '127.0.0.2', '10.0.0.1', 'localhost.evil.example', `[::1]:${port}`]) {
      const r = await request(`${base}/cluster_status`, { headers: { host } });
      assert.equal(r.status, 403, host);
      assert.equal(r.json().error.code, 'DISPY_ERR_FORBIDDEN');
    }
    const absolute = await raw(
      port,
      `GET http://evil.example/cluster_status HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(absolute, /^HTTP\/1\.1 403/);
    const noHost = await raw(port, 'GET /cluster_status HTTP/1.0\r\n\r\n');
    assert.match(noHost, /^HTTP\/1\.[01] 400/);
    assert.match(noHost, /DISPY_ERR_BAD_REQUEST/);
    const badHost = await raw(port, `GET /cluster_status HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n`);
    assert.match(badHost, /^HTTP\/1\.1 (400|403)/);
  } finally {
    await server.shutdown({ wait: false });
  }
  const { server: any, base: anyBase } = await startServer(null, {
    allowedHosts: ['*'],
    trustedProxy: { address: '127.0.0.9', publicUrl: 'https://proxy.example' },
  });
  try {
    assert.equal((await request(`${anyBase}/healthz`, { headers: { host: 'whatever.example' } })).status, 200);
  } finally {
    await any.shutdown({ wait: false });
  }
});

test('bounded bodies (413 JSON), security headers on every answer, errors without stacks', async () => {
  const { server, base } = await startServer(null, { maxBodyBytes: 4096 });
  try {
    const port = server.address!.port;
    const big = `uid=${'1'.repeat(5000)}`;
    const r = await request(`${base}/cancel_jobs`, {
      method: 'POST',
      body: big,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(r.status, 413);
    assert.equal(r.json().error.code, 'DISPY_ERR_PAYLOAD_TOO_LARGE');
    // Without Content-Length (chunked), the bound holds while reading.
    const chunked = await raw(
      port,
      `POST /cancel_jobs HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${(5000).toString(16)}\r\n${'1'.repeat(5000)}\r\n0\r\n\r\n`,
    );
    assert.match(chunked, /^HTTP\/1\.1 413/);
    for (const path of ['/cluster_status', '/nope', '/']) {
      const res = await request(base + path);
      assert.equal(res.headers['x-content-type-options'], 'nosniff', path);
      assert.equal(res.headers['x-frame-options'], 'DENY', path);
      assert.equal(res.headers['referrer-policy'], 'no-referrer', path);
      assert.ok(res.headers['content-security-policy'], path);
      assert.doesNotMatch(res.body, /\n\s+at /, 'no stack trace');
    }
    assert.equal((await request(`${base}/cluster_status`)).headers['cache-control'], 'no-store');
    const malformed = await request(`${base}/update`, {
      method: 'POST',
      body: '%zz=1',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(malformed.status, 400);
    assert.deepEqual(Object.keys(malformed.json()), ['error']);
    assert.deepEqual(Object.keys(malformed.json().error).sort(), ['code', 'message']);
  } finally {
    await server.shutdown({ wait: false });
  }
});
