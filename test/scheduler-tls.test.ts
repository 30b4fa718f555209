/**
 * TLS on both sides of `dispyts scheduler`: clients reach it over TLS (its certificate's SAN is
 * its address, verified against a test CA), and it reaches a TLS node as a verifying client.
 * A plain-TCP client is refused with a clear error naming the scheduler, which keeps serving.
 * Certificates are made at run time by the `openssl` CLI.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SharedJobCluster, type DispyError } from '../src/index.js';
import { startNode, until, type TestNode } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler, type TestScheduler } from './helpers/scheduler.js';

const SCHED_HOST = '127.0.0.251';
const NODE_HOST = '127.0.0.252';
let dir = '';
const f = (name: string): string => join(dir, name);
let node: TestNode;
let scheduler: TestScheduler;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
let serial = 1;
function makeCert(name: string, ext: string[]): void {
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
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-set_serial',
    String(serial++),
    '-days',
    '2',
    '-out',
    `${name}.pem`,
    '-extfile',
    `${name}.ext`,
  );
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dispyts-sched-tls-'));
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
  openssl(
    'req',
    '-x509',
    '-config',
    'openssl.cnf',
    '-extensions',
    'ca_ext',
    ...EC,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=dispyts test scheduler CA',
  );
  makeCert('node', ['extendedKeyUsage = serverAuth', `subjectAltName = IP:${NODE_HOST}`]);
  makeCert('sched', ['extendedKeyUsage = serverAuth', `subjectAltName = IP:${SCHED_HOST}`]);
  node = await startNode({ host: NODE_HOST, cpus: 1, logLevel: 'info', args: ['--cert-file', f('node.pem'), '--key-file', f('node.key')] });
  scheduler = await startScheduler({
    host: SCHED_HOST,
    nodes: [`${NODE_HOST}:${node.port}`],
    logLevel: 'info',
    args: ['--node-ca-file', f('ca.pem'), '--cert-file', f('sched.pem'), '--key-file', f('sched.key')],
  });
});

after(async () => {
  await scheduler?.stop();
  await node?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a SharedJobCluster over TLS to the scheduler, the scheduler over TLS to a TLS node', async () => {
  const cluster = new SharedJobCluster((x: number) => x * 7, {
    schedulerHost: SCHED_HOST,
    schedulerPort: scheduler.port,
    secret: CLUSTER_SECRET,
    caFile: f('ca.pem'),
  });
  try {
    const jobs = [1, 2, 3].map((x) => cluster.submit(x));
    assert.deepEqual(await Promise.all(jobs.map((j) => j.wait())), [7, 14, 21]);
    assert.ok(jobs.every((j) => j.ipAddr === NODE_HOST));
  } finally {
    await cluster.close();
  }
  assert.match(node.log(), /"tls":"tls"/);
  assert.match(node.log(), /serving a new client/);
});

test('a plain-TCP client of a TLS scheduler gets a clear error naming it; the scheduler keeps serving', async () => {
  const plain = new SharedJobCluster((x: number) => x, {
    schedulerHost: SCHED_HOST,
    schedulerPort: scheduler.port,
    secret: CLUSTER_SECRET,
    logLevel: 'silent',
  });
  const errors: DispyError[] = [];
  plain.on('error', (e) => errors.push(e));
  const job = plain.submit(1);
  await assert.rejects(job.wait());
  const where = `${SCHED_HOST}:${scheduler.port}`;
  // The error event is delivered after the job settled (events keep their order).
  await until(() => errors.length > 0, 5_000, 'an error event');
  assert.ok(job.exception?.includes(where), `the job says which scheduler: ${job.exception}`);
  assert.ok(
    errors.some((e) => e.message.includes(where) && /TLS/.test(e.message)),
    `an error event names the scheduler and TLS: ${errors.map((e) => `${e.code}: ${e.message}`).join(' | ')}`,
  );
  await plain.close({ terminate: true }).catch(() => undefined);
  const good = new SharedJobCluster((x: number) => x + 1, {
    schedulerHost: SCHED_HOST,
    schedulerPort: scheduler.port,
    secret: CLUSTER_SECRET,
    caFile: f('ca.pem'),
  });
  try {
    assert.equal(await good.submit(41).wait(), 42);
  } finally {
    await good.close();
  }
});
