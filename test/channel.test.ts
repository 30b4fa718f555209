/** The authenticated Channel over real loopback TCP: handshake, batching, MACs, validation. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { type Channel, acceptChannel, connectChannel } from '../src/protocol/channel.js';
import { FrameDecoder, encodeFrame } from '../src/protocol/frame.js';
import { packMessage, unpackMessage } from '../src/protocol/wire-codec.js';
import type { DispyError } from '../src/errors.js';
import { until } from './helpers/daemon.js';

const HOST = '127.0.0.1';
const SECRET = Buffer.from('channel-test-secret-0123456789');
const schema = z.object({ t: z.literal('m'), n: z.number().int() });
type Msg = z.infer<typeof schema>;

interface Accepted {
  ch: Channel<Msg, Msg> | null;
  err: DispyError | null;
  socket: net.Socket;
  /** Frames the server socket received, decoded independently of the channel. */
  frames: Buffer[];
}

const sockets = new Set<net.Socket>();
const servers: net.Server[] = [];
after(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

async function startServer(opts: { secret?: Buffer; handshakeTimeout?: number } = {}) {
  const results: Promise<Accepted>[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const frames: Buffer[] = [];
    const tap = new FrameDecoder(1 << 20);
    socket.on('data', (d: Buffer) => {
      try {
        frames.push(...tap.push(d));
      } catch {
        // hostile input; the channel reports it
      }
    });
    results.push(
      acceptChannel<Msg, Msg>(socket, {
        secret: opts.secret ?? SECRET,
        schema,
        role: 'node',
        handshakeTimeout: opts.handshakeTimeout ?? 5,
      }).then(
        (ch) => ({ ch, err: null, socket, frames }),
        (err: DispyError) => ({ ch: null, err, socket, frames }),
      ),
    );
  });
  servers.push(server);
  server.listen(0, HOST);
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  let taken = 0;
  return {
    port,
    /** The next accepted connection's outcome. */
    async next(): Promise<Accepted> {
      const i = taken++;
      await until(() => results[i], 5000, `connection ${i}`);
      return results[i]!;
    },
  };
}

async function connect(port: number, secret = SECRET): Promise<Channel<Msg, Msg>> {
  const ch = await connectChannel<Msg, Msg>({ host: HOST, port, secret, schema, clientId: 'test-client', handshakeTimeout: 5 });
  sockets.add(ch.socket);
  return ch;
}

function closeReason(ch: Channel<Msg, Msg>): Promise<DispyError | null> {
  return once(ch, 'close').then(([r]) => r as DispyError | null);
}

async function rawSocket(port: number): Promise<net.Socket> {
  const s = net.connect({ host: HOST, port });
  sockets.add(s);
  await once(s, 'connect');
  return s;
}

/** Collects the plain frames a raw socket receives until it is closed. */
function readUntilClosed(s: net.Socket): Promise<unknown[]> {
  const dec = new FrameDecoder(1 << 20);
  const msgs: unknown[] = [];
  s.on('data', (d: Buffer) => {
    for (const f of dec.push(d)) msgs.push(unpackMessage(f));
  });
  return new Promise((resolve) => s.once('close', () => resolve(msgs)));
}

/** Makes the client's next socket writes pass through `fn` (which may alter or record them). */
function tapWrites(ch: Channel<Msg, Msg>, fn: (frame: Buffer) => Buffer): void {
  const socket = ch.socket as net.Socket & { write: (...a: unknown[]) => boolean };
  const orig = socket.write.bind(socket) as (...a: unknown[]) => boolean;
  socket.write = (chunk: unknown, ...rest: unknown[]) => orig(fn(Buffer.from(chunk as Buffer)), ...rest);
}

test('messages flow both ways after the handshake', async () => {
  const srv = await startServer();
  const client = await connect(srv.port);
  const { ch: server, err } = await srv.next();
  assert.equal(err, null);
  assert.equal(server!.peerHello?.clientId, 'test-client');
  assert.equal(client.peerHello?.role, 'node');
  const atServer: Msg[] = [];
  const atClient: Msg[] = [];
  server!.on('message', (m) => {
    atServer.push(m);
    server!.send({ t: 'm', n: m.n * 10 });
  });
  client.on('message', (m) => atClient.push(m));
  client.send({ t: 'm', n: 1 });
  await until(() => atClient.length === 1, 5000, 'reply');
  client.send({ t: 'm', n: 2 });
  await until(() => atClient.length === 2, 5000, 'second reply');
  assert.deepEqual(atServer, [
    { t: 'm', n: 1 },
    { t: 'm', n: 2 },
  ]);
  assert.deepEqual(atClient, [
    { t: 'm', n: 10 },
    { t: 'm', n: 20 },
  ]);
  const closed = closeReason(server!);
  client.end();
  assert.equal(await closed, null, 'an orderly close has no reason');
});

test('messages sent in one tick travel as one frame and arrive as separate events, in order', async () => {
  const srv = await startServer();
  const client = await connect(srv.port);
  const { ch: server, frames } = await srv.next();
  const got: number[] = [];
  server!.on('message', (m) => got.push(m.n));
  const framesBefore = frames.length; // hello + auth
  for (let i = 0; i < 200; i++) client.send({ t: 'm', n: i });
  await until(() => got.length === 200, 5000, '200 messages');
  assert.deepEqual(
    got,
    Array.from({ length: 200 }, (_, i) => i),
  );
  assert.equal(framesBefore, 2);
  assert.equal(frames.length - framesBefore, 1, 'one frame for the whole batch');
  client.end();
});

test('wrong secret: the client rejects with DISPY_ERR_AUTH and the server fails too', async () => {
  const srv = await startServer({ secret: Buffer.from('the-server-secret-0123456789') });
  await assert.rejects(connect(srv.port), { code: 'DISPY_ERR_AUTH' });
  const { ch, err } = await srv.next();
  assert.equal(ch, null);
  assert.ok(err);
});

test('wrong secret: the server side reports DISPY_ERR_AUTH as well', async () => {
  const srv = await startServer({ secret: Buffer.from('the-server-secret-0123456789') });
  await assert.rejects(connect(srv.port), { code: 'DISPY_ERR_AUTH' });
  const { err } = await srv.next();
  assert.equal(err?.code, 'DISPY_ERR_AUTH');
});

test('a client proving a wrong secret is refused by the server with DISPY_ERR_AUTH', async () => {
  const srv = await startServer();
  const s = await rawSocket(srv.port);
  const dec = new FrameDecoder(1 << 20);
  const replies: unknown[] = [];
  s.on('data', (d: Buffer) => {
    for (const f of dec.push(d)) replies.push(unpackMessage(f));
  });
  s.write(encodeFrame(packMessage({ t: 'hello', v: 1, role: 'client', nonce: randomBytes(32), clientId: 'raw' })));
  await until(() => replies.length === 1, 5000, 'server hello');
  assert.equal((replies[0] as { t: string }).t, 'hello');
  const closed = new Promise((r) => s.once('close', r));
  s.write(encodeFrame(packMessage({ t: 'auth', proof: randomBytes(32) })));
  const { err } = await srv.next();
  assert.equal(err?.code, 'DISPY_ERR_AUTH');
  await closed;
  assert.equal((replies[1] as { t: string; error: { code: string } }).error.code, 'DISPY_ERR_AUTH');
});

test('a hello with another protocol version gets an error answer and DISPY_ERR_VERSION', async () => {
  const srv = await startServer();
  const s = await rawSocket(srv.port);
  const replies = readUntilClosed(s);
  s.write(encodeFrame(packMessage({ t: 'hello', v: 999, role: 'client', nonce: randomBytes(32), clientId: 'raw' })));
  const { ch, err } = await srv.next();
  assert.equal(ch, null);
  assert.equal(err?.code, 'DISPY_ERR_VERSION');
  const msgs = (await replies) as { t: string; error?: { code: string } }[];
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0]!.t, 'error');
  assert.equal(msgs[0]!.error?.code, 'DISPY_ERR_VERSION');
});

test('a server answering with another protocol version makes connectChannel reject with DISPY_ERR_VERSION', async () => {
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const dec = new FrameDecoder(1 << 20);
    socket.on('data', (d: Buffer) => {
      for (const f of dec.push(d)) {
        const hello = unpackMessage(f) as { nonce: Uint8Array };
        void hello;
        socket.write(encodeFrame(packMessage({ t: 'hello', v: 999, role: 'node', nonce: randomBytes(32), proof: randomBytes(32) })));
      }
    });
  });
  servers.push(server);
  server.listen(0, HOST);
  await once(server, 'listening');
  await assert.rejects(connect((server.address() as net.AddressInfo).port), { code: 'DISPY_ERR_VERSION' });
});

test('a replayed authenticated frame closes the connection with DISPY_ERR_BAD_MAC', async () => {
  const srv = await startServer();
  const client = await connect(srv.port);
  const { ch: server } = await srv.next();
  const got: number[] = [];
  server!.on('message', (m) => got.push(m.n));
  const closed = closeReason(server!);
  const sent: Buffer[] = [];
  tapWrites(client, (f) => {
    sent.push(f);
    return f;
  });
  client.send({ t: 'm', n: 7 });
  await until(() => got.length === 1, 5000, 'first delivery');
  assert.equal(sent.length, 1);
  client.socket.write(sent[0]!);
  assert.equal((await closed)?.code, 'DISPY_ERR_BAD_MAC');
  assert.deepEqual(got, [7], 'the replayed message is not delivered');
});

test('a flipped bit in an authenticated frame closes the connection with DISPY_ERR_BAD_MAC', async () => {
  const srv = await startServer();
  const client = await connect(srv.port);
  const { ch: server } = await srv.next();
  const got: number[] = [];
  server!.on('message', (m) => got.push(m.n));
  const closed = closeReason(server!);
  tapWrites(client, (f) => {
    f[f.length - 1]! ^= 0x01;
    return f;
  });
  client.send({ t: 'm', n: 5 });
  assert.equal((await closed)?.code, 'DISPY_ERR_BAD_MAC');
  assert.deepEqual(got, []);
});

test('an authenticated message failing the schema closes the connection with DISPY_ERR_BAD_FRAME', async () => {
  const srv = await startServer();
  const client = await connect(srv.port);
  const { ch: server } = await srv.next();
  const got: unknown[] = [];
  server!.on('message', (m) => got.push(m));
  const closed = closeReason(server!);
  (client as unknown as Channel<Msg, unknown>).send({ t: 'm', n: 'not a number' });
  const reason = await closed;
  assert.equal(reason?.code, 'DISPY_ERR_BAD_FRAME');
  assert.match(reason!.message, /invalid message/);
  assert.deepEqual(got, []);
});

test('a peer that connects and says nothing times out the server handshake', async () => {
  const srv = await startServer({ handshakeTimeout: 0.2 });
  const s = await rawSocket(srv.port);
  const closed = new Promise((r) => s.once('close', r));
  s.resume();
  const t0 = Date.now();
  const { ch, err } = await srv.next();
  assert.equal(ch, null);
  assert.equal(err?.code, 'DISPY_ERR_TIMEOUT');
  assert.ok(Date.now() - t0 < 3000);
  await closed;
});
