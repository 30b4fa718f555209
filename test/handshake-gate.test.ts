/**
 * Connection admission (HandshakeGate) on its own, with real loopback sockets and no daemon:
 * the total and per-address caps, release on close or on authentication (once), and refusals
 * logged once per address per interval. Server on 127.0.0.144; peers 127.0.0.145 and .146.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import pino from 'pino';
import { HandshakeGate, checkHandshakeCaps } from '../src/protocol/handshake-gate.js';
import { DispyError } from '../src/index.js';
import { within } from './helpers/daemon.js';

const HOST = '127.0.0.144';
const PEERS = ['127.0.0.145', '127.0.0.146'] as const;

let server: net.Server;
/** Server-side sockets in the order they were accepted. */
const accepted: net.Socket[] = [];
const waiting: ((s: net.Socket) => void)[] = [];
const clients = new Set<net.Socket>();

before(async () => {
  server = net.createServer((s) => {
    const w = waiting.shift();
    if (w) w(s);
    else accepted.push(s);
  });
  server.listen(0, HOST);
  await once(server, 'listening');
});

after(async () => {
  for (const c of clients) c.destroy();
  for (const s of accepted) s.destroy();
  await new Promise((r) => server.close(r));
});

/** Connects from `from` and returns the server's side of that connection. */
async function connect(from: string): Promise<net.Socket> {
  const accept = new Promise<net.Socket>((r) => {
    const s = accepted.shift();
    if (s) r(s);
    else waiting.push(r);
  });
  const { port } = server.address() as net.AddressInfo;
  const c = net.connect({ host: HOST, port, localAddress: from });
  clients.add(c);
  c.on('error', () => {});
  return within(accept, 5_000, `a connection from ${from}`);
}

function memoryLogger(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      out.push(String(chunk));
      done();
    },
  });
  return {
    log: pino({ level: 'info' }, sink),
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

/** Destroys the server's side of a connection and waits for its 'close' event. */
async function destroy(s: net.Socket): Promise<void> {
  const closed = once(s, 'close');
  s.destroy();
  await within(closed, 5_000, 'the socket to close');
}

test('at most perPeer connections from one address and max in all; a refused one is destroyed', async () => {
  const { log } = memoryLogger();
  const gate = new HandshakeGate({ max: 3, perPeer: 2, log, what: 'node' });
  const a1 = await connect(PEERS[0]);
  const a2 = await connect(PEERS[0]);
  assert.ok(gate.admit(a1));
  assert.ok(gate.admit(a2));
  const a3 = await connect(PEERS[0]);
  assert.equal(gate.admit(a3), null, 'a third from the same address is refused');
  assert.ok(a3.destroyed);
  assert.equal(gate.pending, 2);
  const b1 = await connect(PEERS[1]);
  assert.ok(gate.admit(b1), 'another address still gets in');
  const b2 = await connect(PEERS[1]);
  assert.equal(gate.admit(b2), null, 'the total cap holds whatever the address');
  assert.equal(gate.pending, 3);
});

test('a connection frees its place when it authenticates or closes, once', async () => {
  const { log } = memoryLogger();
  const gate = new HandshakeGate({ max: 2, perPeer: 1, log, what: 'scheduler' });
  const a1 = await connect(PEERS[0]);
  const release = gate.admit(a1);
  assert.ok(release);
  assert.equal(gate.admit(await connect(PEERS[0])), null);
  release();
  release();
  assert.equal(gate.pending, 0, 'releasing twice counts once');
  const a2 = await connect(PEERS[0]);
  assert.ok(gate.admit(a2), 'the address has its place back after authentication');
  await destroy(a1);
  assert.equal(gate.pending, 1, "the authenticated connection's close does not release again");
  await destroy(a2);
  assert.equal(gate.pending, 0, 'a connection that closes in its handshake frees its place');
  assert.ok(gate.admit(await connect(PEERS[0])));
});

test('refusals are logged once per address per interval', async () => {
  const { log, lines } = memoryLogger();
  const gate = new HandshakeGate({ max: 10, perPeer: 1, logIntervalSec: 3600, log, what: 'node' });
  assert.ok(gate.admit(await connect(PEERS[0])));
  assert.ok(gate.admit(await connect(PEERS[1])));
  for (let i = 0; i < 3; i++) assert.equal(gate.admit(await connect(PEERS[0])), null);
  assert.equal(gate.admit(await connect(PEERS[1])), null);
  const warned = lines().filter((l) => l.code === 'DISPY_ERR_TOO_MANY_REQUESTS');
  assert.deepEqual(
    warned.map((l) => l.peer),
    [PEERS[0], PEERS[1]],
    'one line per address',
  );
  assert.match(String(warned[0]!.msg), /too many connections not yet authenticated \(1 from this address\)/);
  const quick = new HandshakeGate({ max: 10, perPeer: 1, logIntervalSec: 0, log, what: 'node' });
  assert.ok(quick.admit(await connect(PEERS[0])));
  assert.equal(quick.admit(await connect(PEERS[0])), null);
  assert.equal(quick.admit(await connect(PEERS[0])), null);
  assert.equal(lines().filter((l) => l.code === 'DISPY_ERR_TOO_MANY_REQUESTS').length, 4, 'an interval of 0 logs each refusal');
});

test('the caps given as options must be integers from 1 to 1000000', () => {
  checkHandshakeCaps({});
  checkHandshakeCaps({ maxHandshakes: 1, maxHandshakesPerPeer: 1_000_000 });
  for (const bad of [0, -1, 1.5, 1_000_001, Number.NaN, '8' as unknown as number]) {
    assert.throws(
      () => checkHandshakeCaps({ maxHandshakes: bad }),
      (e: unknown) => e instanceof DispyError && e.code === 'DISPY_ERR_INVALID_OPTION' && /maxHandshakes/.test(e.message),
      String(bad),
    );
    assert.throws(() => checkHandshakeCaps({ maxHandshakesPerPeer: bad }), /maxHandshakesPerPeer/);
  }
});
