/**
 * HTTPS: a certificate made by the `openssl` CLI, given as keyFile + certFile or as one PEM
 * holding both (certFile alone); the API, SSE and same-origin checks over TLS; Secure cookies.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyHTTPServer, JobCluster } from '../src/index.js';
import { startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';
import { SseViewer, form, request } from './helpers/http-client.js';
import { C, assertNode, compute, startServer } from './helpers/httpd.js';

let node: TestNode;
let dir: string;
let keyFile: string;
let certFile: string;
let bothFile: string;
let ca: Buffer;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dispyts-httpd-tls-'));
  keyFile = join(dir, 'key.pem');
  certFile = join(dir, 'cert.pem');
  bothFile = join(dir, 'both.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-sha256',
      '-days',
      '1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: 'ignore' },
  );
  writeFileSync(bothFile, readFileSync(keyFile, 'utf8') + readFileSync(certFile, 'utf8'));
  ca = readFileSync(certFile);
  node = await startNode({ host: '127.0.0.105', cpus: 2, logLevel: 'warn' });
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

for (const variant of ['keyFile + certFile', 'one PEM as certFile'] as const) {
  test(`HTTPS with ${variant}: API, SSE, same-origin POST, Secure cookies`, async () => {
    const cluster = new JobCluster(compute, { depends: [C], ...clusterOn(node) });
    const { server, base } = await startServer(cluster, variant === 'keyFile + certFile' ? { keyFile, certFile } : { certFile: bothFile });
    try {
      assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
      const sse = new SseViewer(`${base}/events?interval=0.1`, { ca });
      await cluster.submit(new C('tls', 2), 0.1).wait();
      const st = await request(`${base}/cluster_status`, { ca });
      assert.equal(st.status, 200);
      assertNode(st.json()[0].nodes[0]);
      assert.match(String(st.headers['set-cookie']), /; Secure/);
      await sse.until(() => sse.state.get('compute')?.jobs.done === 1, 5_000, 'job over SSE');
      const origin = `https://127.0.0.1:${server.address!.port}`;
      const upd = await request(`${base}/update`, {
        ca,
        method: 'POST',
        body: form({ timeout: 2 }),
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin, host: `127.0.0.1:${server.address!.port}` },
      });
      assert.equal(upd.status, 200);
      const cross = await request(`${base}/update`, {
        ca,
        method: 'POST',
        body: form({ timeout: 2 }),
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: `http://127.0.0.1:${server.address!.port}` },
      });
      assert.equal(cross.status, 403, 'http:// is another origin than https://');
      // Plain HTTP to the HTTPS port gets no answer of ours.
      const plain = await request(`${base.replace('https:', 'http:')}/cluster_status`).catch(() => null);
      assert.ok(plain === null || plain.status === 400);
      await until(() => sse.events.length > 0, 1_000);
      sse.close();
    } finally {
      await server.shutdown({ wait: false });
      await cluster.close();
    }
  });
}

test('unusable HTTPS files fail at construction with DISPY_ERR_TLS', () => {
  const junk = join(dir, 'junk.pem');
  writeFileSync(junk, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
  for (const opts of [{ certFile: junk }, { certFile, keyFile: junk }, { certFile: keyFile }, { certFile: join(dir, 'missing.pem') }]) {
    assert.throws(
      () => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, logLevel: 'silent', ...opts }),
      { code: 'DISPY_ERR_TLS' },
      JSON.stringify(opts),
    );
  }
});
