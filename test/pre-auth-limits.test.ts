/**
 * Nothing unauthenticated costs memory: before authentication a frame may be 4 KiB at most (the
 * connection is closed at the length prefix of a larger one, so a stranger's 16 MiB "hello"s do
 * not grow the daemon), and the connections in their handshake are capped per daemon and per
 * peer address (refusals logged once per address a while). The same holds on the scheduler's
 * port for clients.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { JobCluster, SharedJobCluster } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler, type TestScheduler } from './helpers/scheduler.js';

let open: TestNode;
let capped: TestNode;
let sched: TestScheduler;
const sockets = new Set<net.Socket>();

before(async () => {
  [open, capped] = await Promise.all([
    startNode({ host: '127.0.0.43', cpus: 1 }),
    startNode({ host: '127.0.0.44', cpus: 1, args: ['--max-handshakes', '3', '--max-handshakes-per-peer', '2'] }),
  ]);
  sched = await startScheduler({
    host: '127.0.0.45',
    nodes: [`${open.host}:${open.port}`],
    args: ['--max-handshakes', '2', '--max-handshakes-per-peer', '1'],
  });
});

after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all([open?.stop(), capped?.stop(), sched?.stop()]);
});

interface LogLine {
  msg: string;
  peer?: string;
  code?: string;
  reason?: string;
}

function lines(log: string): LogLine[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** A raw TCP connection to `port` from `localAddress`, connected. */
async function raw(host: string, port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const s = net.connect({ host, port, localAddress });
  sockets.add(s);
  s.on('error', () => undefined);
  s.resume();
  await once(s, 'connect');
  return s;
}

function closed(s: net.Socket, ms = 5000): Promise<void> {
  if (s.closed) return Promise.resolve();
  return until(() => s.closed, ms, 'the connection to be closed').then(() => undefined);
}

/** A frame header announcing `len` bytes. */
function header(len: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(len);
  return h;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** Resolves once `s` may take more data, or is closed (an EPIPE from the peer's close included). */
function writable(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
}

/** Writes `bytes` zeros after a header announcing them, until written or the peer closes. */
async function floodHello(s: net.Socket, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(1024 * 1024);
  let written = 0;
  if (!s.write(header(bytes))) await writable(s);
  while (written < bytes && !s.destroyed && !s.closed) {
    written += chunk.length;
    if (!s.write(chunk)) await writable(s);
  }
  return written;
}

test('before authentication a frame over 4 KiB closes the connection at its length prefix', async () => {
  const s = await raw(open.host, open.port);
  const peer = `${s.localAddress}:${s.localPort}`;
  s.write(header(4097));
  await closed(s);
  const line = await until(
    () => lines(open.log()).find((l) => l.peer === peer && l.msg === 'connection refused'),
    5000,
    'the refusal logged',
  );
  assert.equal(line!.code, 'DISPY_ERR_FRAME_TOO_LARGE');
  assert.match(line!.reason!, /before authentication, frame of 4097 bytes exceeds the maximum of 4096/);
});

test("8 strangers' 16 MiB hellos do not grow the daemon: each is closed after its length prefix", async () => {
  const before = rssOf(open.pid);
  const conns = await Promise.all(Array.from({ length: 8 }, () => raw(open.host, open.port)));
  await Promise.all(conns.map((s) => floodHello(s, 16 * 1024 * 1024)));
  const grown = rssOf(open.pid) - before;
  assert.ok(grown < 24 * 1024 * 1024, `the daemon grew by ${(grown / 1048576).toFixed(1)} MiB`);
  await Promise.all(conns.map((s) => closed(s)));
  // It still serves a client that knows the secret.
  const cluster = new JobCluster((x: number) => x + 1, { nodes: [{ host: open.host, port: open.port }], secret: TEST_SECRET });
  try {
    assert.equal(await cluster.submit(1).wait(), 2);
  } finally {
    await cluster.close();
  }
});

test('connections in their handshake are capped per peer and in all; refusals are logged once per address', async () => {
  const peerA = '127.0.0.47';
  // An authenticated client does not count against the caps.
  const cluster = new JobCluster((x: number) => x * 2, { nodes: [{ host: capped.host, port: capped.port }], secret: TEST_SECRET });
  try {
    assert.equal(await cluster.submit(2).wait(), 4);
    const a1 = await raw(capped.host, capped.port, peerA);
    const a2 = await raw(capped.host, capped.port, peerA);
    const a3 = await raw(capped.host, capped.port, peerA);
    await closed(a3);
    const a4 = await raw(capped.host, capped.port, peerA);
    await closed(a4);
    const b1 = await raw(capped.host, capped.port, '127.0.0.48');
    const c1 = await raw(capped.host, capped.port, '127.0.0.49');
    await closed(c1);
    // Refused in order: a1, a2 and b1 were counted (and are still open) when a3, a4 and c1 were refused.
    assert.ok(!a1.closed && !a2.closed && !b1.closed, 'admitted connections stay open');
    const refusals = () => lines(capped.log()).filter((l) => /too many connections not yet authenticated/.test(l.msg));
    await until(() => refusals().length >= 2, 5000, 'the refusals logged');
    assert.equal(refusals().filter((l) => l.peer === peerA).length, 1, 'two refusals of one address, logged once');
    assert.equal(refusals().filter((l) => l.peer === '127.0.0.49').length, 1);
    assert.ok(refusals().every((l) => l.code === 'DISPY_ERR_TOO_MANY_REQUESTS'));
    // The authenticated client is still served meanwhile.
    assert.equal(await cluster.submit(3).wait(), 6);
    // Closing them frees the places (once the daemon has seen them close): a new connection
    // from that address is admitted, and then refused for its frame, not for the cap.
    for (const s of [a1, a2, b1]) s.destroy();
    const admitted = async (): Promise<boolean> => {
      const again = await raw(capped.host, capped.port, peerA);
      const peer = `${again.localAddress}:${again.localPort}`;
      again.write(header(4097));
      await closed(again);
      return until(() => lines(capped.log()).some((l) => l.peer === peer && l.code === 'DISPY_ERR_FRAME_TOO_LARGE'), 1000, 'x').then(
        () => true,
        () => false,
      );
    };
    await until(admitted, 10_000, 'a new connection from that address to be admitted');
  } finally {
    await cluster.close();
  }
});

test("the scheduler's port for clients: 4 KiB before authentication, handshakes capped", async () => {
  const s = await raw(sched.host, sched.port);
  const peer = `${s.localAddress}:${s.localPort}`;
  s.write(header(4097));
  await closed(s);
  const line = await until(
    () => lines(sched.log()).find((l) => l.peer === peer && l.msg === 'client connection refused'),
    5000,
    'the refusal logged',
  );
  assert.equal(line!.code, 'DISPY_ERR_FRAME_TOO_LARGE');
  const held = await raw(sched.host, sched.port, '127.0.0.47');
  const refused = await raw(sched.host, sched.port, '127.0.0.47');
  await closed(refused);
  assert.ok(!held.closed);
  await until(
    () => lines(sched.log()).some((l) => l.peer === '127.0.0.47' && /too many connections not yet authenticated/.test(l.msg)),
    5000,
    'the refusal logged',
  );
  // A client from another address is served meanwhile.
  const cluster = new SharedJobCluster((x: number) => x - 1, {
    schedulerHost: sched.host,
    schedulerPort: sched.port,
    secret: CLUSTER_SECRET,
    host: '127.0.0.48',
  });
  try {
    assert.equal(await cluster.submit(10).wait(), 9);
  } finally {
    held.destroy();
    await cluster.close();
  }
});
