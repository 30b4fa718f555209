/**
 * Bounded connections (DESIGN.md §4): `/events` streams are capped per client address, per
 * signed-in user and in total, and open connections per address and in total; beyond a cap the
 * answer is 429 with Retry-After, and a slot freed is usable again. Real HTTP from loopback
 * addresses to servers on 127.0.0.205 (defaults) and 127.0.0.206 (lowered limits).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { DispyHTTPServer } from '../src/index.js';
import { SseViewer, request } from './helpers/http-client.js';
import { until } from './helpers/daemon.js';

const ALICE = 'alice-long-passphrase-1';

async function openStreams(url: string, n: number, opts: { localAddress?: string; headers?: Record<string, string> } = {}) {
  const list: SseViewer[] = [];
  for (let i = 0; i < n; i++) {
    const v = new SseViewer(url, opts);
    await v.opened;
    list.push(v);
  }
  return list;
}

test('one client cannot open 300 event streams: 32 per address by default, then 429 with Retry-After', async () => {
  const server = new DispyHTTPServer(null, { host: '127.0.0.205', port: 0, pollSec: 60, logLevel: 'silent' });
  const { port } = await server.listening;
  const url = `http://127.0.0.205:${port}/events?interval=60`;
  const streams = await openStreams(url, 40, { localAddress: '127.0.0.207' });
  try {
    const codes = streams.map((s) => s.status);
    assert.deepEqual(
      codes.slice(0, 32),
      Array.from({ length: 32 }, () => 200),
    );
    assert.deepEqual(
      codes.slice(32),
      Array.from({ length: 8 }, () => 429),
    );
    assert.ok(Number(streams[39]!.headers['retry-after']) > 0);
    // Another client is not affected; a stream closed frees its slot.
    const other = await openStreams(url, 1, { localAddress: '127.0.0.208' });
    assert.equal(other[0]!.status, 200);
    other[0]!.close();
    streams[0]!.close();
    let again: SseViewer[] = [];
    await until(
      async () => {
        for (const s of again) s.close();
        again = await openStreams(url, 1, { localAddress: '127.0.0.207' });
        return again[0]!.status === 200;
      },
      5000,
      'a freed slot used again',
    );
    for (const s of again) s.close();
  } finally {
    for (const s of streams) s.close();
    await server.shutdown({ wait: false });
  }
});

test('streams per signed-in user and in total; connections per address', async () => {
  const server = new DispyHTTPServer(null, {
    host: '127.0.0.206',
    port: 0,
    pollSec: 60,
    logLevel: 'silent',
    auth: { users: { alice: { password: ALICE, role: 'viewer' } }, trustLoopback: true },
    limits: { eventStreamsPerUser: 2, eventStreams: 4, connectionsPerAddress: 6 },
  });
  const { port } = await server.listening;
  const url = `http://127.0.0.206:${port}/events?interval=60`;
  const alice = { authorization: `Basic ${Buffer.from(`alice:${ALICE}`).toString('base64')}` };
  const open: SseViewer[] = [];
  try {
    // alice from two addresses: her third stream is refused wherever it comes from.
    open.push(...(await openStreams(url, 1, { localAddress: '127.0.0.207', headers: alice })));
    open.push(...(await openStreams(url, 1, { localAddress: '127.0.0.208', headers: alice })));
    const third = (await openStreams(url, 1, { localAddress: '127.0.0.209', headers: alice }))[0]!;
    open.push(third);
    assert.deepEqual(
      open.map((s) => s.status),
      [200, 200, 429],
    );
    assert.match(JSON.stringify(third.headers), /retry-after/);
    // Loopback viewers (no user) fill the total of 4.
    const more = await openStreams(url, 3, { localAddress: '127.0.0.209' });
    open.push(...more);
    assert.deepEqual(
      more.map((s) => s.status),
      [200, 200, 429],
    );

    // Connections: 6 open from one address, the 7th's request gets 429 and is closed.
    const idle: net.Socket[] = [];
    for (let i = 0; i < 6; i++)
      idle.push(
        await new Promise<net.Socket>((r) => {
          const s = net.connect({ port, host: '127.0.0.206', localAddress: '127.0.0.208' }, () => r(s));
        }),
      );
    try {
      // 127.0.0.208 also holds one stream: 7 connections.
      const r = await request(`http://127.0.0.206:${port}/healthz`, { localAddress: '127.0.0.208' });
      assert.equal(r.status, 429, r.body);
      assert.equal(r.json().error.code, 'DISPY_ERR_TOO_MANY_REQUESTS');
      assert.ok(Number(r.headers['retry-after']) > 0);
      assert.equal(r.headers.connection, 'close');
      // Another address is served.
      assert.equal((await request(`http://127.0.0.206:${port}/healthz`, { localAddress: '127.0.0.209' })).status, 200);
    } finally {
      for (const s of idle) s.destroy();
    }
    await until(
      async () => (await request(`http://127.0.0.206:${port}/healthz`, { localAddress: '127.0.0.208' })).status === 200,
      5000,
      'served again once the idle connections closed',
    );
  } finally {
    for (const s of open) s.close();
    await server.shutdown({ wait: false });
  }
});
