/**
 * Behind a reverse proxy on the same machine (DESIGN.md §4, "Proxies"), with a real nginx
 * (Debian's, started here on 127.0.0.192 with the README's site block, HTTPS with a throwaway
 * certificate) in front of a DispyHTTPServer on 127.0.0.191 and a node's own page on
 * 127.0.0.193: nobody coming through the proxy is trusted as a local user (with the README's
 * config, or nginx's default that forwards nothing); forwarded headers from anyone else are not
 * honoured and cost the loopback trust; the forwarded client address keys the caps; a browser
 * (Chromium, the name mapped to nginx's address inside Chromium, no DNS) signs in and acts
 * through the HTTPS proxy; the node's page accepts its actions through it too; a loopback server
 * refuses a non-loopback allowedHosts name unless the proxy is named.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyHTTPServer, type DispyError } from '../src/index.js';
import { CHROMIUM, CHROMIUM_ARGS, browserUnavailable } from './helpers/browser.js';
import { selfSignedCert } from './helpers/certs.js';
import { CLI, TEST_SECRET } from './helpers/daemon.js';
import { form, request } from './helpers/http-client.js';
import { freePort, nginxUnavailable, readmeNginxBlock, replaceOnce, startNginx, type TestNginx } from './helpers/nginx.js';

const SERVER_HOST = '127.0.0.191';
const NGINX_HOST = '127.0.0.192';
const NODE_HOST = '127.0.0.193';
const TOKEN = 'proxy-test-token-0123456789';
const NODE_TOKEN = 'proxy-test-node-token-0123456789';

const noNginx = nginxUnavailable();
if (noNginx) console.log(`# nginx tests skipped: ${noNginx}`);
const noBrowser = browserUnavailable();
if (noBrowser) console.log(`# browser test skipped: ${noBrowser}`);

let dir: string;
let ca: Buffer;
let server: DispyHTTPServer;
let nginx: TestNginx | null = null;
let node: ChildProcess | null = null;
/** nginx ports: the README site (HTTPS), the node page through the README site, nginx's default config (HTTP). */
let httpsPort = 0;
let nodePort = 0;
let plainPort = 0;
let publicUrl = '';
let nodePublicUrl = '';

/** The README's site block for `name`, listening on nginx's address, proxying to `target`. */
function site(name: string, port: number, target: string, cert: { certFile: string; keyFile: string }): string {
  let b = readmeNginxBlock();
  b = replaceOnce(b, /listen 443 ssl;/, `listen ${NGINX_HOST}:${port} ssl;`);
  b = replaceOnce(b, /server_name monitor\.example\.org;/, `server_name ${name};`);
  b = replaceOnce(b, /ssl_certificate\s+\S+;/, `ssl_certificate ${cert.certFile};`);
  b = replaceOnce(b, /ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${cert.keyFile};`);
  b = replaceOnce(b, /proxy_pass http:\/\/127\.0\.0\.1:8181;/, `proxy_pass http://${target};`);
  return b;
}

before(async () => {
  if (noNginx) return;
  dir = mkdtempSync(join(tmpdir(), 'dispyts-proxy-'));
  const cert = selfSignedCert(dir, 'proxy', { dns: ['monitor.example.org', 'node.example.org'], ip: [NGINX_HOST] });
  ca = readFileSync(cert.certFile);
  [httpsPort, nodePort, plainPort] = await Promise.all([freePort(NGINX_HOST), freePort(NGINX_HOST), freePort(NGINX_HOST)]);
  publicUrl = `https://monitor.example.org:${httpsPort}`;
  nodePublicUrl = `https://node.example.org:${nodePort}`;
  // nginx connects to 127.0.0.x from 127.0.0.1 (Linux picks it): that is the proxy's address.
  server = new DispyHTTPServer(null, {
    host: SERVER_HOST,
    port: 0,
    pollSec: 1,
    logLevel: 'silent',
    auth: { token: TOKEN },
    trustedProxy: { address: '127.0.0.1', publicUrl },
    limits: { eventStreamsPerAddress: 1 },
  });
  const a = await server.listening;
  // A node with its page behind the same proxy.
  const pagePort = await freePort(NODE_HOST);
  node = spawn(
    process.execPath,
    [
      CLI,
      'node',
      '--host',
      NODE_HOST,
      '--port',
      '0',
      '--cpus',
      '1',
      '--secret',
      TEST_SECRET,
      '--dest-path-prefix',
      join(dir, 'node'),
      '--log-level',
      'warn',
      '--parent-pid',
      String(process.pid),
      '--httpd',
      `${NODE_HOST}:${pagePort}`,
      '--httpd-token',
      NODE_TOKEN,
      '--httpd-trusted-proxy',
      '127.0.0.1',
      '--httpd-public-url',
      nodePublicUrl,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`node page not ready: ${out}`)), 30_000);
    node!.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (/node page on/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    node!.once('exit', (code) => reject(new Error(`node exited with ${code}: ${out}`)));
  });
  const defaultSite = `server {\n    listen ${NGINX_HOST}:${plainPort};\n    location / { proxy_pass http://${SERVER_HOST}:${a.port}; }\n}\n`;
  nginx = await startNginx(
    [
      site('monitor.example.org', httpsPort, `${SERVER_HOST}:${a.port}`, cert),
      site('node.example.org', nodePort, `${NODE_HOST}:${pagePort}`, cert),
      defaultSite,
    ].join('\n'),
    [httpsPort, nodePort, plainPort].map((port) => ({ host: NGINX_HOST, port })),
  );
});

after(async () => {
  await nginx?.stop();
  if (node && node.exitCode === null) {
    const gone = new Promise((r) => node!.once('exit', r));
    node.kill('SIGTERM');
    await gone;
  }
  await server?.shutdown({ wait: false });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A request to nginx's README site, as a browser or script elsewhere sends it. */
function viaProxy(path: string, opts: Parameters<typeof request>[1] = {}) {
  return request(`https://${NGINX_HOST}:${httpsPort}${path}`, {
    ca,
    ...opts,
    headers: { host: `monitor.example.org:${httpsPort}`, ...opts.headers },
  });
}

test('nobody coming through the proxy is a local user; its forwarded address is honoured; nobody else forwards', {
  skip: noNginx ?? false,
}, async () => {
  // The README's site (HTTPS) and nginx's default config (no forwarded headers, Host: 127.0.0.191:port).
  const readmeSite = await viaProxy('/whoami');
  assert.equal(readmeSite.status, 401, readmeSite.body);
  const defaultSite = await request(`http://${NGINX_HOST}:${plainPort}/whoami`);
  assert.equal(defaultSite.status, 401, defaultSite.body);
  const post = await viaProxy('/update', {
    method: 'POST',
    body: form({ timeout: 5 }),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  assert.equal(post.status, 401, 'a script through the proxy cannot act without credentials');
  // A script with the token acts through it.
  const withToken = await viaProxy('/update', {
    method: 'POST',
    body: form({ timeout: 5 }),
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(withToken.status, 200, withToken.body);

  // A local user (not the proxy's address) is still trusted, unless it sends forwarded headers.
  const base = `http://${SERVER_HOST}:${server.address!.port}`;
  const local = await request(`${base}/whoami`, { localAddress: '127.0.0.194' });
  assert.equal(local.status, 200);
  assert.equal(local.json().via, 'loopback');
  const forwarded: Record<string, string>[] = [
    { 'x-forwarded-for': '198.51.100.7' },
    { 'x-real-ip': '198.51.100.7' },
    { forwarded: 'for=198.51.100.7;proto=https' },
    { 'x-forwarded-proto': 'https' },
    { 'x-forwarded-host': 'monitor.example.org' },
  ];
  for (const h of forwarded) {
    const r = await request(`${base}/whoami`, { localAddress: '127.0.0.194', headers: h });
    assert.equal(r.status, 401, `${JSON.stringify(h)}: ${r.body}`);
  }

  // The client address nginx forwards keys the caps (one /events stream per address here):
  // two clients get one stream each; the second stream of one of them is refused.
  const sse = (from: string) =>
    viaProxy('/events?interval=60', { headersOnly: true, localAddress: from, headers: { authorization: `Bearer ${TOKEN}` } });
  const one = await sse('127.0.0.195');
  assert.equal(one.status, 200);
  assert.match(String(one.headers['content-type']), /text\/event-stream/);
  const held = viaProxy('/events?interval=60', {
    localAddress: '127.0.0.195',
    headers: { authorization: `Bearer ${TOKEN}` },
    timeoutMs: 60_000,
  });
  void held.catch(() => undefined);
  await new Promise((r) => setTimeout(r, 300));
  const other = await sse('127.0.0.196');
  assert.equal(other.status, 200, 'another client through the same proxy has its own cap');
  const second = await sse('127.0.0.195');
  assert.equal(second.status, 429, second.body);
  assert.ok(Number(second.headers['retry-after']) > 0);
});

test('a loopback server refuses a non-loopback allowedHosts name unless the proxy is named', { skip: noNginx ?? false }, () => {
  assert.throws(
    () => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, allowedHosts: ['monitor.example.org'] }),
    (e: DispyError) => e.code === 'DISPY_ERR_INVALID_OPTION' && /trustedProxy/.test(e.message) && /Behind nginx or Caddy/.test(e.message),
  );
  assert.throws(
    () => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, trustedProxy: { address: 'proxy.example', publicUrl } }),
    (e: DispyError) => e.code === 'DISPY_ERR_INVALID_OPTION' && /trustedProxy\.address/.test(e.message),
  );
  assert.throws(
    () =>
      new DispyHTTPServer(null, {
        host: '127.0.0.1',
        port: 0,
        trustedProxy: { address: '127.0.0.1', publicUrl: 'https://monitor.example.org/dispy/' },
      }),
    (e: DispyError) => e.code === 'DISPY_ERR_INVALID_OPTION' && /no path/.test(e.message),
  );
});

test("the node's page behind the proxy: its origin is the public URL's, loopback counts for nothing", {
  skip: noNginx ?? false,
}, async () => {
  const base = `https://${NGINX_HOST}:${nodePort}`;
  const headers = { host: `node.example.org:${nodePort}`, cookie: '' };
  // Signing in through the proxy: the token moves into a Secure cookie.
  const signIn = await request(`${base}/?token=${NODE_TOKEN}`, { ca, headers });
  assert.equal(signIn.status, 302);
  const set = String(signIn.headers['set-cookie']);
  assert.match(set, /; Secure/);
  const cookieValue = set.split(';')[0]!;
  // A browser's form post through the proxy carries the public origin: accepted.
  const drain = await request(`${base}/drain`, {
    ca,
    method: 'POST',
    body: form({ drain: 'off' }),
    headers: {
      host: `node.example.org:${nodePort}`,
      cookie: cookieValue,
      origin: nodePublicUrl,
      'content-type': 'application/x-www-form-urlencoded',
    },
  });
  assert.equal(drain.status, 200, drain.body);
  // Any other origin is refused, and without the token nothing is shown, proxy or not.
  const evil = await request(`${base}/drain`, {
    ca,
    method: 'POST',
    body: form({ drain: 'on' }),
    headers: {
      host: `node.example.org:${nodePort}`,
      cookie: cookieValue,
      origin: 'https://evil.example',
      'content-type': 'application/x-www-form-urlencoded',
    },
  });
  assert.equal(evil.status, 403);
  assert.equal((await request(`${base}/status.json`, { ca, headers: { host: `node.example.org:${nodePort}` } })).status, 401);
});

test('a browser signs in and acts through the HTTPS proxy', { skip: noNginx ?? noBrowser ?? false }, async () => {
  const { chromium } = await import('playwright-core');
  // The public name resolves to nginx inside Chromium only: nothing is looked up.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, `--host-resolver-rules=MAP monitor.example.org ${NGINX_HOST}`],
    headless: true,
  });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    const resp = await page.goto(`${publicUrl}/?token=${TOKEN}`);
    assert.equal(resp?.status(), 200);
    assert.equal(new URL(page.url()).searchParams.get('token'), null, 'the token left the address bar');
    const cookies = await context.cookies(publicUrl);
    assert.ok(cookies.some((c) => c.name.startsWith('dispyts_token_') && c.secure && c.httpOnly));
    // An action from the page, as its buttons send it (same origin: the public URL's).
    const status = await page.evaluate(async () => {
      const r = await fetch('/update', { method: 'POST', body: new URLSearchParams({ timeout: '3' }) });
      return r.status;
    });
    assert.equal(status, 200);
    const who = await page.evaluate(async () => (await fetch('/whoami')).json());
    assert.equal(who.via, 'token');
  } finally {
    await browser.close();
  }
});
