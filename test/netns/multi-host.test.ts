/**
 * Multi-host tests on real network namespaces (issue 6): three test hosts running `dispyts node`
 * daemons and a client on a fourth, joined by a bridge in a namespace of its own, addresses in
 * 10.77.0.0/24 that exist only inside those namespaces. IP literals only, no DNS.
 * Skipped, with the reason printed, where the kernel refuses `ip netns add`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, TEST_SECRET } from '../helpers/daemon.js';
import { NetnsHarness, listNamespaces, netnsUnavailable, pidAlive, type NetnsHost, type NetnsNode, sweepStale } from './harness.js';

const skipReason = netnsUnavailable();
// Namespaces of an earlier run that was killed outright are removed first.
if (!skipReason) {
  const stale = sweepStale();
  if (stale.length) console.log(`removed stale test namespaces: ${stale.join(', ')}`);
}
if (skipReason) process.stdout.write(`# multi-host suite skipped: ${skipReason}\n`);

const harness = skipReason ? undefined : new NetnsHarness();
let hosts: NetnsHost[] = [];
/** The plain daemons on hosts 1–3. */
let nodes: NetnsNode[] = [];
let tlsNode: NetnsNode;
let mtlsNode: NetnsNode;
let certDir: string | undefined;
const f = (name: string): string => join(certDir!, name);

interface Results {
  results?: { x: number; value: number; ip: string }[];
  nodes?: { ip: string; name: string }[];
  error?: { code: string; message: string };
  jobStates?: string[];
  fatal?: string;
}

async function client(cfg: Record<string, unknown>): Promise<Results> {
  const r = await harness!.runClient(hosts[3]!, 'client', [JSON.stringify({ secret: TEST_SECRET, ...cfg })]);
  const json = r.json as Results | undefined;
  assert.ok(json && !json.fatal, `client failed (exit ${r.code ?? r.signal}): ${json?.fatal ?? ''}\n${r.stdout}\n${r.stderr}`);
  return json;
}

const spec = (ns: NetnsNode[]) => ns.map((n) => ({ host: n.ip, port: n.port }));

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: certDir, stdio: ['ignore', 'pipe', 'pipe'] });
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
  openssl('req', '-config', 'openssl.cnf', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=dispyts netns ${name}`);
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

describe('multi-host on network namespaces', { skip: skipReason ?? false }, () => {
  before(async () => {
    hosts = harness!.create(4);
    // Certificates: a test CA, a node certificate whose SANs are the addresses of hosts 2 and 3,
    // and a client certificate.
    certDir = mkdtempSync(join(tmpdir(), 'dispyts-netns-tls-'));
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
      '/CN=dispyts netns test CA',
    );
    // A CA the nodes' certificates do not come from (a client trusting only it must refuse them).
    openssl(
      'req',
      '-x509',
      '-config',
      'openssl.cnf',
      '-extensions',
      'ca_ext',
      ...EC,
      '-keyout',
      'other-ca.key',
      '-out',
      'other-ca.pem',
      '-days',
      '2',
      '-subj',
      '/CN=dispyts netns other CA',
    );
    makeCert('node', ['extendedKeyUsage = serverAuth', `subjectAltName = IP:${hosts[1]!.ip}, IP:${hosts[2]!.ip}`]);
    makeCert('client', ['extendedKeyUsage = clientAuth']);
    writeFileSync(f('node-both.pem'), readFileSync(f('node.pem'), 'utf8') + readFileSync(f('node.key'), 'utf8'));
    const started = await Promise.all([
      harness!.startNode(hosts[0]!, { cpus: 1 }),
      harness!.startNode(hosts[1]!, { cpus: 2 }),
      harness!.startNode(hosts[2]!, { cpus: 2 }),
      harness!.startNode(hosts[1]!, { cpus: 1, name: 'host-2-tls', args: ['--cert-file', f('node.pem'), '--key-file', f('node.key')] }),
      harness!.startNode(hosts[2]!, { cpus: 1, name: 'host-3-mtls', args: ['--cert-file', f('node-both.pem'), '--ca-file', f('ca.pem')] }),
    ]);
    nodes = started.slice(0, 3);
    [tlsNode, mtlsNode] = started.slice(3) as [NetnsNode, NetnsNode];
  });

  after(async () => {
    await harness!.cleanup();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  test('the hosts are isolated: only lo and eth0, one route to the private /24, nothing in the root namespace', () => {
    for (const h of hosts) {
      const links = execFileSync('ip', ['-n', h.ns, '-o', 'link', 'show'], { encoding: 'utf8' }).trim().split('\n');
      assert.deepEqual(links.map((l) => l.split(':')[1]!.trim().split('@')[0]).sort(), ['eth0', 'lo']);
      const routes = execFileSync('ip', ['-n', h.ns, 'route', 'show'], { encoding: 'utf8' }).trim().split('\n');
      assert.deepEqual(
        routes.map((l) => l.split(' ')[0]),
        ['10.77.0.0/24'],
        `routes in ${h.ns}`,
      );
    }
    // The root namespace has none of the test addresses.
    assert.doesNotMatch(execFileSync('ip', ['-o', 'addr', 'show'], { encoding: 'utf8' }), /10\.77\.0\./);
  });

  test('60 jobs from a client on a 4th host spread over 3 hosts with correct results', async () => {
    const r = await client({ nodes: spec(nodes), jobs: 60 });
    assert.equal(r.results!.length, 60);
    for (const [i, res] of r.results!.entries()) assert.deepEqual({ x: res.x, value: res.value }, { x: i, value: i * i });
    assert.deepEqual([...new Set(r.results!.map((res) => res.ip))].sort(), nodes.map((n) => n.ip).sort(), 'every host ran jobs');
    assert.deepEqual(r.nodes!.map((n) => n.name).sort(), ['host-1', 'host-2', 'host-3']);
  });

  test('a wrong secret gives DISPY_ERR_AUTH naming the node; the node keeps serving a good client', async () => {
    const bad = await client({ nodes: spec([nodes[0]!]), jobs: 2, secret: 'not-the-secret-0123456789abcdef', expectError: true });
    assert.equal(bad.error!.code, 'DISPY_ERR_AUTH', bad.error!.message);
    assert.ok(bad.error!.message.includes(`${nodes[0]!.ip}:${nodes[0]!.port}`), `names the node: ${bad.error!.message}`);
    assert.deepEqual(bad.jobStates, ['rejected', 'rejected'], 'queued jobs cancelled by close');
    assert.ok(pidAlive(nodes[0]!.pid), 'the node is still running');
    const good = await client({ nodes: spec([nodes[0]!]), jobs: 5 });
    assert.deepEqual(
      good.results!.map((res) => [res.value, res.ip]),
      [0, 1, 4, 9, 16].map((v) => [v, nodes[0]!.ip]),
    );
  });

  test('TLS across hosts: certificate SAN is the node address, verified against the test CA', async () => {
    const r = await client({ nodes: spec([tlsNode]), jobs: 6, caFile: f('ca.pem') });
    assert.deepEqual(
      r.results!.map((res) => [res.value, res.ip]),
      [0, 1, 4, 9, 16, 25].map((v) => [v, tlsNode.ip]),
    );
    assert.match(tlsNode.log(), /"tls":"tls"/);
  });

  test('mutual TLS across hosts; a client without a certificate is refused, the node keeps serving', async () => {
    const r = await client({ nodes: spec([mtlsNode]), jobs: 4, caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client.key') });
    assert.deepEqual(
      r.results!.map((res) => [res.value, res.ip]),
      [0, 1, 4, 9].map((v) => [v, mtlsNode.ip]),
    );
    assert.match(mtlsNode.log(), /"tls":"mutual"/);
    const bad = await client({ nodes: spec([mtlsNode]), jobs: 1, caFile: f('ca.pem'), expectError: true });
    assert.equal(bad.error!.code, 'DISPY_ERR_TLS', bad.error!.message);
    assert.ok(bad.error!.message.includes(`${mtlsNode.ip}:${mtlsNode.port}`), `names the node: ${bad.error!.message}`);
    assert.ok(pidAlive(mtlsNode.pid));
    const again = await client({
      nodes: spec([mtlsNode]),
      jobs: 1,
      caFile: f('ca.pem'),
      certFile: f('client.pem'),
      keyFile: f('client.key'),
    });
    assert.deepEqual(
      again.results!.map((res) => res.value),
      [0],
    );
  });

  test('a node certificate the client does not trust gives DISPY_ERR_TLS naming the node; the node keeps serving', async () => {
    const bad = await client({ nodes: spec([tlsNode]), jobs: 1, caFile: f('other-ca.pem'), expectError: true });
    assert.equal(bad.error!.code, 'DISPY_ERR_TLS', bad.error!.message);
    assert.ok(bad.error!.message.includes(`${tlsNode.ip}:${tlsNode.port}`), `names the node: ${bad.error!.message}`);
    assert.match(bad.error!.message, /certificate/i, 'says why');
    assert.ok(pidAlive(tlsNode.pid));
    const good = await client({ nodes: spec([tlsNode]), jobs: 2, caFile: f('ca.pem') });
    assert.deepEqual(
      good.results!.map((res) => res.value),
      [0, 1],
    );
  });

  test('a daemon on a non-loopback address refuses to start without a secret, unless --insecure', async () => {
    const run = (extra: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = harness!.spawnIn(hosts[0]!, [
          process.execPath,
          CLI,
          'node',
          '--host',
          hosts[0]!.ip,
          '--port',
          '0',
          '--cpus',
          '1',
          '--dest-path-prefix',
          certDir!,
          '--name',
          'no-secret',
          '--parent-pid',
          String(process.pid),
          ...extra,
        ]);
        let out = '';
        let err = '';
        p.stdout!.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (/ready on/.test(out)) p.kill('SIGTERM');
        });
        p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
        const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
        p.once('close', (code) => {
          clearTimeout(timer);
          resolve({ code, out, err });
        });
      });
    const refused = await run([]);
    assert.equal(refused.code, 2, refused.err);
    assert.match(refused.err, /DISPY_ERR_INSECURE/);
    assert.doesNotMatch(refused.out, /ready on/);
    const insecure = await run(['--insecure']);
    assert.match(insecure.out, new RegExp(`ready on ${hosts[0]!.ip.replace(/\./g, '\\.')}:`), insecure.err);
  });
});

// Runs after the suite's after hook: nothing of this run may remain.
test('no namespace and no process of this run is left behind', { skip: skipReason ?? false }, async () => {
  await harness!.cleanup();
  const mine = listNamespaces().filter((n) => n.startsWith(`${harness!.prefix}-`));
  assert.deepEqual(mine, [], 'namespaces left behind');
  assert.ok(harness!.pids.size >= 5, `expected the daemons and clients to be tracked (${harness!.pids.size})`);
  assert.deepEqual(harness!.livePids(), [], 'processes left alive');
  for (const n of [...nodes, tlsNode, mtlsNode]) assert.equal(pidAlive(n.pid), false, `daemon ${n.name} (pid ${n.pid}) still alive`);
});
