/**
 * A real daemon fed hostile bytes, one raw connection per case: it closes that connection, logs
 * why, and keeps serving real clients.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { JobCluster } from '../src/index.js';
import { connectChannel } from '../src/protocol/channel.js';
import { encodeFrame } from '../src/protocol/frame.js';
import { packMessage } from '../src/protocol/wire-codec.js';
import { nodeMessageSchema } from '../src/protocol/messages.js';
import { TEST_SECRET, alive, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
const sockets = new Set<net.Socket>();

before(async () => {
  node = await startNode({ host: '127.0.0.11', cpus: 2 });
});

after(async () => {
  for (const s of sockets) s.destroy();
  await node?.stop();
});

interface LogLine {
  msg: string;
  peer?: string;
  code?: string;
  reason?: string;
}

function logLines(): LogLine[] {
  return node
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** Waits for the daemon's 'connection refused' / 'connection closed' line about `peer`. */
async function logAbout(peer: string): Promise<LogLine> {
  return (await until(
    () => logLines().find((l) => l.peer === peer && (l.msg === 'connection refused' || l.msg === 'connection closed') && l.code),
    5000,
    `a log line about ${peer}`,
  ))!;
}

function peerOf(s: net.Socket): string {
  const p = peers.get(s) ?? `${s.localAddress}:${s.localPort}`;
  assert.doesNotMatch(p, /undefined/);
  return p;
}

/** `address:port` of each of our sockets as the daemon sees it, recorded on connect. */
const peers = new WeakMap<net.Socket, string>();

function tcp(): net.Socket {
  const s = net.connect({ host: node.host, port: node.port });
  sockets.add(s);
  s.once('connect', () => peers.set(s, `${s.localAddress}:${s.localPort}`));
  s.resume();
  return s;
}

async function raw(): Promise<net.Socket> {
  const s = tcp();
  await once(s, 'connect');
  return s;
}

/** Resolves once the daemon closed `s` (or it was closed). */
function closed(s: net.Socket): Promise<void> {
  return s.closed ? Promise.resolve() : once(s, 'close').then(() => undefined);
}

/** A real client still gets correct results. */
async function assertServes(): Promise<void> {
  assert.ok(alive(node.pid), 'daemon alive');
  const cluster = new JobCluster((x: number) => x + 1, clusterOn(node));
  try {
    const jobs = [1, 2, 3].map((x) => cluster.submit(x));
    assert.deepEqual(await Promise.all(jobs.map((j) => j.wait())), [2, 3, 4]);
  } finally {
    await cluster.close();
  }
}

test('garbage bytes: closed with DISPY_ERR_BAD_FRAME, logged', async () => {
  const s = await raw();
  const peer = peerOf(s);
  s.write(encodeFrame(Buffer.alloc(12, 0xc1))); // 0xc1 is never valid msgpack
  await closed(s);
  const line = await logAbout(peer);
  assert.equal(line.msg, 'connection refused');
  assert.equal(line.code, 'DISPY_ERR_BAD_FRAME');
  assert.match(line.reason!, /handshake/);
  await assertServes();
});

test('a truncated frame then close: logged as closed during the handshake', async () => {
  const s = await raw();
  const peer = peerOf(s);
  const frame = encodeFrame(packMessage({ t: 'hello', v: 1, role: 'client', nonce: randomBytes(32), clientId: 'x' }));
  s.end(frame.subarray(0, frame.length - 5));
  await closed(s);
  const line = await logAbout(peer);
  assert.equal(line.code, 'DISPY_ERR_CONNECTION');
  assert.match(line.reason!, /closed the connection during the handshake/);
  await assertServes();
});

test('an oversize length prefix: closed with DISPY_ERR_FRAME_TOO_LARGE before any body', async () => {
  const s = await raw();
  const peer = peerOf(s);
  s.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  await closed(s);
  const line = await logAbout(peer);
  assert.equal(line.code, 'DISPY_ERR_FRAME_TOO_LARGE');
  assert.match(line.reason!, /4294967295/);
  await assertServes();
});

test('a frame with a bad MAC after a correct handshake: closed with DISPY_ERR_BAD_MAC', async () => {
  const ch = await connectChannel({
    host: node.host,
    port: node.port,
    secret: Buffer.from(TEST_SECRET),
    schema: nodeMessageSchema,
    clientId: 'hostile-mac',
  });
  sockets.add(ch.socket);
  const peer = peerOf(ch.socket);
  const closeP = once(ch, 'close');
  ch.socket.write(encodeFrame(randomBytes(16), packMessage({ t: 'ping', rid: 1 })));
  await closeP;
  const line = await logAbout(peer);
  assert.equal(line.msg, 'connection closed');
  assert.equal(line.code, 'DISPY_ERR_BAD_MAC');
  await assertServes();
});

test('a wrong secret: the client is refused, the daemon logs the connection', async () => {
  let socket: net.Socket | undefined;
  await assert.rejects(
    connectChannel({
      host: node.host,
      port: node.port,
      secret: Buffer.from('not-the-test-secret-0123456789'),
      schema: nodeMessageSchema,
      clientId: 'hostile-secret',
      createSocket: () => (socket = tcp()),
    }),
    { code: 'DISPY_ERR_AUTH' },
  );
  await closed(socket!);
  const line = await logAbout(peerOf(socket!));
  assert.equal(line.msg, 'connection refused');
  await assertServes();
});

test('a wrong secret is logged by the daemon as DISPY_ERR_AUTH', async () => {
  let socket: net.Socket | undefined;
  await assert.rejects(
    connectChannel({
      host: node.host,
      port: node.port,
      secret: Buffer.from('not-the-test-secret-0123456789'),
      schema: nodeMessageSchema,
      clientId: 'hostile-secret-2',
      createSocket: () => (socket = tcp()),
    }),
    { code: 'DISPY_ERR_AUTH' },
  );
  const line = await logAbout(peerOf(socket!));
  assert.equal(line.code, 'DISPY_ERR_AUTH');
});

test('a forged auth proof is refused with DISPY_ERR_AUTH in the log', async () => {
  const s = await raw();
  const peer = peerOf(s);
  s.write(encodeFrame(packMessage({ t: 'hello', v: 1, role: 'client', nonce: randomBytes(32), clientId: 'forger' })));
  s.write(encodeFrame(packMessage({ t: 'auth', proof: randomBytes(32) })));
  await closed(s);
  const line = await logAbout(peer);
  assert.equal(line.code, 'DISPY_ERR_AUTH');
  await assertServes();
});
