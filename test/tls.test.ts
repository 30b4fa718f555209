/**
 * TLS between clusters and nodes, with certificates made at run time by the `openssl` CLI (EC
 * P-256, fast): a CA with a node certificate (IP SANs) and a client certificate, and an
 * unrelated CA with its own pair for the negative cases. Nodes on 127.0.0.50–59 only.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, JobStatus, type DispyError, type JobClusterOptions } from '../src/index.js';
import { TEST_SECRET, alive, startNode, until, type TestNode, within } from './helpers/daemon.js';

let dir: string;
/** Path of a generated file. */
const f = (name: string): string => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
let serial = 1;

function makeCa(name: string): void {
  openssl(
    'req',
    '-x509',
    '-config',
    'openssl.cnf',
    '-extensions',
    'ca_ext',
    ...EC,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    `/CN=dispyts test ${name}`,
  );
}

function makeCert(name: string, ca: string, ext: string[]): void {
  writeFileSync(
    f(`${name}.ext`),
    `${[
      'basicConstraints = CA:FALSE',
      'keyUsage = critical,digitalSignature',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      ...ext,
    ].join('\n')}\n`,
  );
  openssl('req', '-config', 'openssl.cnf', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=dispyts test ${name}`);
  openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-set_serial',
    String(serial++),
    '-days',
    '2',
    '-out',
    `${name}.pem`,
    '-extfile',
    `${name}.ext`,
  );
  // One PEM holding the certificate and its key.
  writeFileSync(f(`${name}-both.pem`), readFileSync(f(`${name}.pem`), 'utf8') + readFileSync(f(`${name}.key`), 'utf8'));
}

const SERVER = 'extendedKeyUsage = serverAuth';
const CLIENT = 'extendedKeyUsage = clientAuth';

/** TLS only (no client certificates asked for). */
let tlsNode: TestNode;
/** Mutual TLS, its certificate and key in one PEM. */
let mtlsNode: TestNode;
/** A certificate from the right CA whose SAN names another address. */
let wrongIpNode: TestNode;
/** No TLS at all. */
let plainNode: TestNode;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dispyts-tls-'));
  // Our own minimal config: no dependence on the system's openssl.cnf.
  writeFileSync(
    f('openssl.cnf'),
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = unused',
      '[ca_ext]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  makeCa('caA');
  makeCa('caB');
  makeCert('node', 'caA', [SERVER, 'subjectAltName = IP:127.0.0.50, IP:127.0.0.51']);
  makeCert('wrongip', 'caA', [SERVER, 'subjectAltName = IP:127.0.0.59']);
  makeCert('client', 'caA', [CLIENT]);
  makeCert('clientB', 'caB', [CLIENT]);
  [tlsNode, mtlsNode, wrongIpNode, plainNode] = await Promise.all([
    startNode({ host: '127.0.0.50', cpus: 1, args: ['--cert-file', f('node.pem'), '--key-file', f('node.key')] }),
    startNode({ host: '127.0.0.51', cpus: 1, args: ['--cert-file', f('node-both.pem'), '--ca-file', f('caA.pem')] }),
    startNode({ host: '127.0.0.52', cpus: 1, args: ['--cert-file', f('wrongip.pem'), '--key-file', f('wrongip.key')] }),
    startNode({ host: '127.0.0.54', cpus: 1 }),
  ]);
});

after(async () => {
  await Promise.all([tlsNode?.stop(), mtlsNode?.stop(), wrongIpNode?.stop(), plainNode?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const inc = (x: number): number => x + 1;

function cluster(nodes: TestNode[], opts: JobClusterOptions = {}): JobCluster<typeof inc> {
  return new JobCluster(inc, { nodes: nodes.map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET, ...opts });
}

/** Rejects instead of hanging when `p` does not settle in time. */
async function nextError(c: JobCluster): Promise<DispyError> {
  const [err] = (await within(once(c, 'error'), 5000, 'the error event')) as [DispyError];
  return err;
}

/** The daemon's log lines (pino JSON) that came after `from` characters. */
function logLines(node: TestNode, from = 0): Record<string, unknown>[] {
  return node
    .log()
    .slice(from)
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function tlsRefusalLogged(node: TestNode, from: number, reason: RegExp): Promise<Record<string, unknown>> {
  const line = await until(
    () => logLines(node, from).find((l) => l.code === 'DISPY_ERR_TLS' && reason.test(String(l.reason))),
    5000,
    `a DISPY_ERR_TLS line matching ${reason} in the log of ${node.host}`,
  );
  return line!;
}

/** A cluster that cannot reach its node: error checked, queued jobs cancelled by close. */
async function expectRefused(c: JobCluster<typeof inc>, node: TestNode, code: string, message: RegExp): Promise<void> {
  const errP = nextError(c);
  const job = c.submit(1);
  const waited = job.wait();
  waited.catch(() => undefined);
  try {
    const err = await errP;
    assert.equal(err.code, code, err.message);
    assert.ok(err.message.includes(`${node.host}:${node.port}`), `names the node: ${err.message}`);
    assert.match(err.message, message);
    assert.equal(job.status, JobStatus.Created, 'the job stays queued');
    assert.equal(c.status().nodes.length, 0, 'the node is not used');
  } finally {
    assert.equal(await within(c.close({ timeout: 0, terminate: true }), 5000, 'close'), true);
  }
  await assert.rejects(waited, { code: 'DISPY_ERR_JOB_CANCELLED' });
}

async function expectWorks(c: JobCluster<typeof inc>): Promise<void> {
  try {
    assert.deepEqual(await within(Promise.all([1, 2, 3].map((x) => c.submit(x).wait())), 10_000, 'jobs'), [2, 3, 4]);
  } finally {
    await within(c.close(), 5000, 'close');
  }
}

test('TLS: jobs run when the client trusts the CA; the node announces TLS', async () => {
  await expectWorks(cluster([tlsNode], { caFile: f('caA.pem') }));
  assert.ok(logLines(tlsNode).some((l) => l.msg === 'node ready' && l.tls === 'tls'));
  assert.ok(logLines(mtlsNode).some((l) => l.msg === 'node ready' && l.tls === 'mutual'));
});

test('mutual TLS: a client certificate from the CA (key apart, or one PEM with both)', async () => {
  await expectWorks(cluster([mtlsNode], { caFile: f('caA.pem'), certFile: f('client.pem'), keyFile: f('client.key') }));
  await expectWorks(cluster([mtlsNode], { caFile: f('caA.pem'), certFile: f('client-both.pem') }));
});

test('the authenticated channel still runs inside TLS: a wrong secret is DISPY_ERR_AUTH', async () => {
  await expectRefused(
    cluster([tlsNode], { caFile: f('caA.pem'), secret: 'not-the-test-secret-0123456789' }),
    tlsNode,
    'DISPY_ERR_AUTH',
    /secret/,
  );
});

test('a client trusting another CA gets DISPY_ERR_TLS; the node logs it and keeps serving', async () => {
  const from = tlsNode.log().length;
  await expectRefused(cluster([tlsNode], { caFile: f('caB.pem') }), tlsNode, 'DISPY_ERR_TLS', /not trusted/);
  await tlsRefusalLogged(tlsNode, from, /closed the connection during the TLS handshake/);
  await expectWorks(cluster([tlsNode], { caFile: f('caA.pem') }));
  assert.ok(alive(tlsNode.pid));
});

test('a node with --ca-file refuses a client without a certificate, or with one from another CA', async () => {
  let from = mtlsNode.log().length;
  await expectRefused(
    cluster([mtlsNode], { caFile: f('caA.pem') }),
    mtlsNode,
    'DISPY_ERR_TLS',
    /refused this client: the client sent no certificate/,
  );
  await tlsRefusalLogged(mtlsNode, from, /sent no certificate/);

  from = mtlsNode.log().length;
  await expectRefused(
    cluster([mtlsNode], { caFile: f('caA.pem'), certFile: f('clientB.pem'), keyFile: f('clientB.key') }),
    mtlsNode,
    'DISPY_ERR_TLS',
    /refused this client: the client certificate .* is not trusted/,
  );
  const line = await tlsRefusalLogged(mtlsNode, from, /client certificate .* is not trusted/);
  assert.match(String(line.peer), /^127\.0\.0\.1:\d+$/);

  await expectWorks(cluster([mtlsNode], { caFile: f('caA.pem'), certFile: f('client-both.pem') }));
  assert.ok(alive(mtlsNode.pid));
});

test('a certificate naming another IP is refused by the client; the jobs run on the other node', async () => {
  const c = cluster([wrongIpNode, tlsNode], { caFile: f('caA.pem') });
  try {
    const errP = nextError(c);
    const results = Promise.all([1, 2, 3, 4].map((x) => c.submit(x)).map(async (j) => [await j.wait(), j.ipAddr]));
    const err = await errP;
    assert.equal(err.code, 'DISPY_ERR_TLS', err.message);
    assert.ok(err.message.includes(`${wrongIpNode.host}:${wrongIpNode.port}`), err.message);
    assert.match(err.message, /does not name this address.*127\.0\.0\.52.*127\.0\.0\.59/);
    assert.deepEqual(
      await within(results, 10_000, 'jobs'),
      [2, 3, 4, 5].map((r) => [r, tlsNode.host]),
    );
    assert.deepEqual(
      c.status().nodes.map((n) => n.ipAddr),
      [tlsNode.host],
    );
  } finally {
    await within(c.close(), 5000, 'close');
  }
});

test('a plain-TCP client against a TLS node fails clearly; the node logs it and keeps serving', async () => {
  const from = tlsNode.log().length;
  const c = cluster([tlsNode]);
  const errP = nextError(c);
  const job = c.submit(1);
  job.wait().catch(() => undefined);
  try {
    const err = await errP;
    assert.ok(err.code === 'DISPY_ERR_CONNECTION' || err.code === 'DISPY_ERR_TLS', err.code);
    assert.ok(err.message.includes(`${tlsNode.host}:${tlsNode.port}`), err.message);
    assert.match(err.message, /serving TLS.*caFile/);
    assert.equal(job.status, JobStatus.Created);
  } finally {
    await within(c.close({ timeout: 0, terminate: true }), 5000, 'close');
  }
  await tlsRefusalLogged(tlsNode, from, /does not speak TLS/);
  await expectWorks(cluster([tlsNode], { caFile: f('caA.pem') }));
  assert.ok(alive(tlsNode.pid));
});

test('a TLS client against a plain-TCP node fails clearly; the node logs DISPY_ERR_TLS and keeps serving', async () => {
  const from = plainNode.log().length;
  await expectRefused(cluster([plainNode], { caFile: f('caA.pem') }), plainNode, 'DISPY_ERR_CONNECTION', /does the node serve TLS/);
  await tlsRefusalLogged(plainNode, from, /started a TLS handshake, but this side serves plain TCP/);
  await expectWorks(cluster([plainNode]));
});

test('clusters with other TLS files get their own connection; equal ones share it', async () => {
  const from = tlsNode.log().length;
  // The node asks for no client certificate; presenting one is allowed.
  const a = cluster([tlsNode], { caFile: f('caA.pem') });
  const b = cluster([tlsNode], { caFile: f('caA.pem'), certFile: f('client.pem'), keyFile: f('client.key') });
  const c = cluster([tlsNode], { caFile: f('caA.pem'), certFile: f('client-both.pem') });
  try {
    assert.deepEqual(await within(Promise.all([a, b, c].map((k) => k.submit(1).wait())), 10_000, 'jobs'), [2, 2, 2]);
  } finally {
    await Promise.all([a, b, c].map((k) => within(k.close(), 5000, 'close')));
  }
  assert.equal(logLines(tlsNode, from).filter((l) => l.msg === 'client authenticated').length, 2);
});

test('missing or unusable TLS files are clear errors at construction and at daemon start', async () => {
  const missing = f('no-such.pem');
  assert.throws(
    () => cluster([tlsNode], { caFile: missing }),
    (e: DispyError) => e.code === 'DISPY_ERR_TLS' && e.message.includes(missing) && /caFile/.test(e.message),
  );
  assert.throws(() => cluster([tlsNode], { certFile: missing, keyFile: f('client.key') }), { code: 'DISPY_ERR_TLS' });
  assert.throws(
    () => cluster([tlsNode], { certFile: f('client.pem') }),
    (e: DispyError) => e.code === 'DISPY_ERR_TLS' && /no private key.*keyFile/.test(e.message),
  );
  assert.throws(
    () => cluster([tlsNode], { certFile: f('client.pem'), keyFile: f('node.key') }),
    (e: DispyError) => e.code === 'DISPY_ERR_TLS' && /unusable TLS files/.test(e.message),
  );
  assert.throws(() => cluster([tlsNode], { keyFile: f('client.key') }), { code: 'DISPY_ERR_INVALID_OPTION' });
  assert.throws(
    () => cluster([tlsNode], { caFile: f('openssl.cnf') }),
    (e: DispyError) => e.code === 'DISPY_ERR_TLS' && /not a PEM file/.test(e.message),
  );

  await Promise.all([
    assert.rejects(startNode({ host: '127.0.0.53', args: ['--cert-file', missing, '--key-file', f('node.key')] }), (e: Error) => {
      assert.match(e.message, /exited with 2/);
      assert.match(e.message, /DISPY_ERR_TLS/);
      assert.ok(e.message.includes(missing), e.message);
      return true;
    }),
    assert.rejects(
      startNode({ host: '127.0.0.55', args: ['--ca-file', f('caA.pem')] }),
      /DISPY_ERR_INVALID_OPTION.*--ca-file.*needs.*--cert-file/,
    ),
  ]);
});
