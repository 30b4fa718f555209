/**
 * UDP discovery without any network: the datagram codec (authenticated, time-stamped, bounded,
 * replay-proof), the rate-limited drop log, interface and subnet arithmetic, anchored matching of
 * announced addresses, and "a loopback host opens no UDP socket at all".
 */
import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import dgram from 'node:dgram';
import type { NetworkInterfaceInfo } from 'node:os';
import pino from 'pino';
import { Packr } from 'msgpackr';
import {
  DISCOVERY_WINDOW,
  DiscoveryCodec,
  DropLog,
  MAX_DATAGRAM,
  broadcastAddress,
  discoveryInterface,
  discoveryKey,
  inSubnet,
  type DiscoveryMessageInput,
} from '../src/protocol/discovery.js';
import { ClusterDiscovery, specFor } from '../src/client/node-discovery.js';
import { NodeAnnouncer } from '../src/node/node-announcer.js';
import { parseNodeSpecs } from '../src/client/node-allocate.js';
import { JobCluster } from '../src/client/job-cluster.js';
import { TEST_SECRET } from './helpers/daemon.js';

const SECRET = Buffer.from(TEST_SECRET);
const announce: DiscoveryMessageInput = {
  t: 'announce',
  ipAddr: '10.0.0.5',
  port: 9701,
  nodeId: 'abc123',
  name: 'node-5',
  cpus: 4,
  busy: false,
  reason: 'start',
};
const discover: DiscoveryMessageInput = { t: 'discover', replyAddr: '10.0.0.9', replyPort: 40000 };
const silent = pino({ level: 'silent' });

/** A clock the test moves. */
function clock(start = 1_700_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
  };
}

describe('discovery datagrams', () => {
  test('seal and open both messages; version, timestamp and a 16-byte nonce are added', () => {
    const c = clock();
    const tx = new DiscoveryCodec(SECRET, { now: c.now });
    const rx = new DiscoveryCodec(SECRET, { now: c.now });
    for (const msg of [announce, discover]) {
      const d = tx.seal(msg);
      assert.ok(d.length <= MAX_DATAGRAM);
      const r = rx.open(d);
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(r.msg.t, msg.t);
      assert.equal(r.msg.ts, c.now());
      assert.equal(r.msg.nonce.length, 16);
      assert.deepEqual(
        { ...r.msg, v: undefined, ts: undefined, nonce: undefined },
        { ...msg, v: undefined, ts: undefined, nonce: undefined },
      );
    }
    // Each datagram gets its own nonce.
    assert.notDeepEqual(tx.seal(announce).subarray(36), tx.seal(announce).subarray(36));
  });

  test('forged: another secret, or any flipped bit, is a bad MAC', () => {
    const rx = new DiscoveryCodec(SECRET);
    const forged = new DiscoveryCodec(Buffer.from('not-the-secret-0123456789abcdef')).seal(announce);
    assert.deepEqual(rx.open(forged), { ok: false, reason: 'bad-mac' });
    const good = new DiscoveryCodec(SECRET).seal(announce);
    for (const at of [4, 20, 35, 36, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x01;
      assert.deepEqual(rx.open(bad), { ok: false, reason: 'bad-mac' }, `bit flipped at ${at}`);
    }
    assert.ok(rx.open(good).ok, 'the untouched datagram still passes');
  });

  test('the key is derived from the secret, not the secret itself', () => {
    assert.notDeepEqual(discoveryKey(SECRET), SECRET);
    assert.equal(discoveryKey(SECRET).length, 32);
    assert.deepEqual(discoveryKey(SECRET), discoveryKey(Buffer.from(TEST_SECRET)));
  });

  test(`stale: a timestamp more than ${DISCOVERY_WINDOW} s in the past or the future is dropped`, () => {
    const c = clock();
    const tx = new DiscoveryCodec(SECRET, { now: c.now });
    const rx = new DiscoveryCodec(SECRET, { now: c.now });
    const w = DISCOVERY_WINDOW * 1000;
    assert.equal(rx.open(tx.seal(announce, { ts: c.now() - w - 1 })).ok, false);
    assert.equal((rx.open(tx.seal(announce, { ts: c.now() - w - 1 })) as { reason: string }).reason, 'stale');
    assert.equal((rx.open(tx.seal(announce, { ts: c.now() + w + 1 })) as { reason: string }).reason, 'stale');
    assert.ok(rx.open(tx.seal(announce, { ts: c.now() - w + 10 })).ok, 'inside the window');
    assert.ok(rx.open(tx.seal(announce, { ts: c.now() + w - 10 })).ok, 'clock skew inside the window');
    // A datagram that was fresh becomes stale when it is held back.
    const held = tx.seal(discover);
    c.advance(w + 1);
    assert.equal((rx.open(held) as { reason: string }).reason, 'stale');
  });

  test('replayed: the same datagram is accepted once per receiver, as long as it is not stale', () => {
    const c = clock();
    const tx = new DiscoveryCodec(SECRET, { now: c.now });
    const rx = new DiscoveryCodec(SECRET, { now: c.now });
    const d = tx.seal(announce);
    assert.ok(rx.open(d).ok);
    assert.deepEqual(rx.open(d), { ok: false, reason: 'replayed' });
    c.advance(DISCOVERY_WINDOW * 1000 - 1);
    assert.deepEqual(rx.open(d), { ok: false, reason: 'replayed' }, 'still remembered at the end of the window');
    c.advance(2);
    assert.equal((rx.open(d) as { reason: string }).reason, 'stale', 'then too old to matter');
    // Another receiver (another socket, its own cache) accepts it once.
    const other = new DiscoveryCodec(SECRET, { now: c.now });
    const d2 = tx.seal(discover);
    assert.ok(rx.open(d2).ok);
    assert.ok(other.open(d2).ok);
    assert.equal((other.open(d2) as { reason: string }).reason, 'replayed');
  });

  test('the nonce cache is bounded: full of live nonces it fails closed, expired ones make room', () => {
    const c = clock();
    const tx = new DiscoveryCodec(SECRET, { now: c.now });
    const rx = new DiscoveryCodec(SECRET, { now: c.now, maxNonces: 3 });
    for (let i = 0; i < 3; i++) assert.ok(rx.open(tx.seal(announce)).ok);
    const fourth = tx.seal(announce);
    assert.deepEqual(rx.open(fourth), { ok: false, reason: 'nonce-cache-full' });
    c.advance(DISCOVERY_WINDOW * 1000 + 2000);
    for (let i = 0; i < 3; i++) assert.ok(rx.open(tx.seal(announce)).ok, 'the old nonces expired');
  });

  test('oversized: anything over 1 KiB is dropped before it is decoded; seal refuses to make one', () => {
    const rx = new DiscoveryCodec(SECRET);
    const good = new DiscoveryCodec(SECRET).seal(announce);
    const big = Buffer.concat([good, Buffer.alloc(MAX_DATAGRAM + 1 - good.length)]);
    assert.deepEqual(rx.open(big), { ok: false, reason: 'oversized', detail: `${MAX_DATAGRAM + 1} bytes` });
    assert.equal((rx.open(Buffer.alloc(65000)) as { reason: string }).reason, 'oversized');
    assert.throws(
      () => new DiscoveryCodec(SECRET).seal({ ...announce, name: 'n'.repeat(2000) } as DiscoveryMessageInput),
      (err: Error & { code?: string }) => err.code === 'DISPY_ERR_PAYLOAD_TOO_LARGE',
    );
  });

  test('malformed: junk, a short datagram, or an authentic body that is not a valid message', () => {
    const rx = new DiscoveryCodec(SECRET);
    for (const junk of [Buffer.alloc(0), Buffer.from('PING:hello'), Buffer.alloc(36), Buffer.from(`DTD\x02${'x'.repeat(60)}`)]) {
      assert.equal((rx.open(junk) as { reason: string }).reason, 'malformed', JSON.stringify(junk.toString()));
    }
    // Properly authenticated, but the schema refuses it (so it must come from a buggy sender
    // that knows the secret): still dropped, never thrown.
    const packr = new Packr({ useRecords: false, mapsAsObjects: true });
    const magic = Buffer.from([0x44, 0x54, 0x44, 0x01]);
    const seal = (value: unknown): Buffer => {
      const body = packr.pack(value);
      return Buffer.concat([magic, createHmac('sha256', discoveryKey(SECRET)).update(magic).update(body).digest(), body]);
    };
    const valid = {
      t: 'announce',
      v: 1,
      ts: Date.now(),
      nonce: Buffer.alloc(16, 7),
      ipAddr: '10.0.0.5',
      port: 9701,
      nodeId: 'x',
      name: 'n',
      cpus: 1,
      busy: false,
      reason: 'start',
    };
    assert.ok(rx.open(seal(valid)).ok, 'the hand-made datagram is right');
    for (const bad of [
      { ...valid, nonce: Buffer.alloc(15, 1) },
      { ...valid, nonce: Buffer.alloc(16, 2), ipAddr: 'example.com' },
      { ...valid, nonce: Buffer.alloc(16, 3), ipAddr: '::1' },
      { ...valid, nonce: Buffer.alloc(16, 4), port: 70000 },
      { ...valid, nonce: Buffer.alloc(16, 5), cpus: 0 },
      { ...valid, nonce: Buffer.alloc(16, 6), t: 'pulse' },
      { t: 'discover', v: 1, ts: Date.now(), nonce: Buffer.alloc(16, 8), replyAddr: '10.0.0.1', replyPort: 0 },
      'just a string',
    ]) {
      const r = rx.open(seal(bad));
      assert.equal(r.ok, false, JSON.stringify(bad));
      assert.equal((r as { reason: string }).reason, 'malformed');
    }
    const truncated = seal(valid).subarray(0, 50);
    assert.equal((rx.open(truncated) as { reason: string }).reason, 'bad-mac', 'a cut datagram fails its MAC');
  });
});

describe('drop log', () => {
  test('at most one line per reason per interval, then one with the number suppressed', () => {
    const lines: { fields: Record<string, unknown>; msg: string }[] = [];
    const log = { warn: (fields: Record<string, unknown>, msg: string) => lines.push({ fields, msg }) } as unknown as pino.Logger;
    const c = clock();
    const drops = new DropLog(log, 5000, c.now);
    for (let i = 0; i < 1000; i++) drops.drop('bad-mac', `10.0.0.${i % 250}:9700`);
    drops.drop('oversized', '10.0.0.1:1', '2000 bytes');
    assert.equal(lines.length, 2, 'one line for each reason');
    assert.deepEqual(
      lines.map((l) => l.fields.reason),
      ['bad-mac', 'oversized'],
    );
    assert.match(lines[0]!.msg, /bad MAC/);
    assert.equal(lines[1]!.fields.detail, '2000 bytes');
    c.advance(4999);
    drops.drop('bad-mac', 'x');
    assert.equal(lines.length, 2);
    c.advance(2);
    drops.drop('bad-mac', 'x');
    assert.equal(lines.length, 3);
    assert.equal(lines[2]!.fields.suppressed, 1000, '999 of the flood and one more');
  });
});

describe('interfaces and matching', () => {
  const ifaces = (address: string, netmask: string, internal = false): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [{ address, netmask, family: 'IPv4', mac: '02:00:00:00:00:01', internal, cidr: null }],
  });

  test('the broadcast address of an interface, and subnet membership', () => {
    assert.equal(broadcastAddress('10.77.0.4', '255.255.255.0'), '10.77.0.255');
    assert.equal(broadcastAddress('172.16.5.9', '255.255.0.0'), '172.16.255.255');
    assert.equal(broadcastAddress('192.168.1.130', '255.255.255.192'), '192.168.1.191');
    const iface = discoveryInterface('10.77.0.4', ifaces('10.77.0.4', '255.255.255.0'));
    assert.deepEqual(iface, { name: 'eth0', address: '10.77.0.4', netmask: '255.255.255.0', broadcast: '10.77.0.255' });
    assert.ok(typeof iface !== 'string' && inSubnet('10.77.0.200', iface));
    assert.ok(typeof iface !== 'string' && !inSubnet('10.77.1.2', iface));
    assert.ok(typeof iface !== 'string' && !inSubnet('not-an-ip', iface));
  });

  test('no discovery on loopback, unconfigured, wildcard, IPv6 or /32 addresses', () => {
    const i = ifaces('10.77.0.4', '255.255.255.0');
    for (const host of ['127.0.0.1', '127.0.0.5', 'localhost', '::1', '0.0.0.0', '', '10.77.0.5', 'fe80::1', 'node.example']) {
      assert.equal(typeof discoveryInterface(host, i), 'string', host);
    }
    assert.match(discoveryInterface('127.0.0.1', i) as string, /loopback/);
    assert.equal(typeof discoveryInterface('10.9.9.9', ifaces('10.9.9.9', '255.255.255.255')), 'string', 'no subnet');
    assert.equal(typeof discoveryInterface('10.9.9.9', ifaces('10.9.9.9', '255.255.255.0', true)), 'string', 'an internal interface');
  });

  test('announced addresses are matched anchored: 10.0.0.1 does not match 10.0.0.12', () => {
    const literal = parseNodeSpecs(['10.0.0.1']);
    assert.equal(specFor(literal, '10.0.0.1'), literal[0]);
    assert.equal(specFor(literal, '10.0.0.12'), undefined);
    assert.equal(specFor(literal, '110.0.0.1'), undefined);
    const suffix = parseNodeSpecs(['10.0.*.1']);
    assert.equal(specFor(suffix, '10.0.0.1'), suffix[0]);
    assert.equal(specFor(suffix, '10.0.0.12'), undefined, 'the pattern must end where the address ends');
    assert.equal(specFor(suffix, '110.0.0.1'), undefined, 'and start where it starts');
    const prefix = parseNodeSpecs(['10.0.0.1*']);
    assert.equal(specFor(prefix, '10.0.0.12'), prefix[0]);
    assert.equal(specFor(prefix, '10.0.0.1'), undefined, 'a star stands for at least one character');
    const mixed = parseNodeSpecs(['10.0.0.*', { host: '10.0.0.1', cpus: 1 }]);
    assert.equal(specFor(mixed, '10.0.0.1')!.cpus, 1, 'a listed address wins over a wildcard');
    assert.equal(specFor(mixed, '10.0.0.12')!.host, '10.0.0.*');
    assert.equal(specFor(parseNodeSpecs(['*']), '10.77.0.3')!.host, '*');
  });
});

describe('loopback stays loopback', () => {
  test('a loopback client or node (or discovery off) opens no UDP socket', async (t) => {
    const created = t.mock.method(dgram, 'createSocket', () => {
      throw new Error('no UDP socket may be opened here');
    });
    assert.throws(() => dgram.createSocket('udp4'), /no UDP socket/, 'the mock is in place');
    const specs = parseNodeSpecs(['127.0.0.*', '*']);
    for (const [host, mode] of [
      ['127.0.0.1', 'broadcast'],
      ['127.0.0.1', 'multicast'],
      ['127.0.0.9', 'broadcast'],
      ['10.77.0.4', 'off'],
    ] as const) {
      const d = new ClusterDiscovery({
        host,
        port: 0,
        secret: SECRET,
        mode,
        pingInterval: 1,
        log: silent,
        specs: () => specs,
        onNode: () => assert.fail('no node'),
      });
      assert.equal(d.enabled, false);
      assert.equal(await d.discover(), false);
      d.close();
      const a = new NodeAnnouncer({
        host,
        port: 9701,
        secret: SECRET,
        mode,
        log: silent,
        state: () => ({ nodeId: 'x', name: 'n', cpus: 1, busy: false }),
      });
      assert.equal(await a.start(), false);
      a.announce('free');
      a.close();
    }
    // An address this machine does not have (10.77.0.0/24 exists only in the test namespaces):
    // nothing to bind, so nothing is opened either; the node keeps looking, until closed.
    assert.equal(
      await new ClusterDiscovery({
        host: '10.77.0.4',
        port: 0,
        secret: SECRET,
        log: silent,
        specs: () => specs,
        onNode: () => assert.fail('no node'),
      }).discover(),
      false,
    );
    const waiting = new NodeAnnouncer({
      host: '10.77.0.4',
      port: 9701,
      secret: SECRET,
      log: silent,
      state: () => ({ nodeId: 'x', name: 'n', cpus: 1, busy: false }),
    });
    assert.equal(await waiting.start(), false);
    waiting.close();
    // Without a wildcard nothing is even looked for.
    const literal = new ClusterDiscovery({
      host: '10.77.0.4',
      port: 0,
      secret: SECRET,
      pingInterval: 1,
      log: silent,
      specs: () => parseNodeSpecs(['10.77.0.1']),
      onNode: () => assert.fail('no node'),
    });
    assert.equal(await literal.discover(), false);
    literal.close();
    // The cluster: a wildcard on the default (loopback) host, with pingInterval and discoverNodes().
    const cluster = new JobCluster((x: number) => x, {
      nodes: ['127.0.0.*', '*'],
      secret: TEST_SECRET,
      pingInterval: 1,
      logLevel: 'silent',
    });
    assert.equal(await cluster.discoverNodes(), 0);
    assert.equal(await cluster.allocateNode('127.0.1.*'), -1, 'nothing known, nothing discovered');
    await cluster.close();
    assert.equal(await cluster.discoverNodes(), -1, 'closed');
    assert.equal(created.mock.callCount(), 1, 'only the check above');
    mock.restoreAll();
  });

  test('the discovery option is validated', () => {
    assert.throws(
      () => new JobCluster((x: number) => x, { discovery: 'anycast' as never, secret: TEST_SECRET }),
      (err: Error & { code?: string }) => err.code === 'DISPY_ERR_INVALID_OPTION' && /discovery/.test(err.message),
    );
  });
});
