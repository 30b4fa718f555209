/**
 * The node's store of results whose client was away: kept on disk, handed out once, bounded
 * (oldest dropped, with a warning), read back by a restarted daemon, corrupt files dropped;
 * results recently sent on a connection are remembered (bounded) for a client that reconnects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { UndeliveredStore } from '../src/node/undelivered-store.js';
import type { JobDone } from '../src/protocol/messages.js';

function logger(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out.push(chunk.toString());
      cb();
    },
  });
  const log = pino({ level: 'debug' }, stream);
  return {
    log,
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const done = (uid: number, extra: Partial<JobDone> = {}): JobDone => ({
  t: 'done',
  uid,
  status: 'Finished',
  result: new Uint8Array([uid & 255, 1, 2, 3]),
  exception: null,
  code: null,
  stdout: `out ${uid}`,
  stderr: '',
  startTime: 1000,
  endTime: 2000,
  cpuTime: 0.5,
  ...extra,
});

function scratch(): string {
  return mkdtempSync(join(tmpdir(), 'dispyts-undelivered-'));
}

test('kept results survive a restart and are handed out once, by computation and uid', () => {
  const dir = scratch();
  try {
    const a = new UndeliveredStore(dir, logger().log);
    a.keep('comp-a', done(1, { tag: 'job-one' }));
    a.keep('comp-a', done(2));
    a.keep('comp-b', done(3, { status: 'Terminated', result: null, exception: 'killed' }));
    assert.equal(a.size, 3);
    // A new daemon on the same state directory finds them.
    const b = new UndeliveredStore(dir, logger().log);
    assert.equal(b.size, 3);
    const one = b.take('comp-a', new Set([1]));
    assert.equal(one.length, 1);
    assert.deepEqual({ ...one[0], result: [...one[0]!.result!] }, { ...done(1, { tag: 'job-one' }), result: [1, 1, 2, 3] });
    assert.deepEqual(b.take('comp-a', new Set([1])), [], 'handed out once');
    assert.deepEqual(
      b.take('comp-b', null).map((r) => [r.uid, r.status, r.exception]),
      [[3, 'Terminated', 'killed']],
    );
    assert.equal(b.forget('comp-a'), 1);
    assert.equal(b.size, 0);
    assert.deepEqual(new UndeliveredStore(dir, logger().log).size, 0, 'gone from disk too');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bounded: beyond maxResults or maxBytes the oldest results are dropped with a warning', () => {
  const dir = scratch();
  try {
    const { log, lines } = logger();
    const s = new UndeliveredStore(dir, log, { maxResults: 5 });
    for (let uid = 1; uid <= 8; uid++) s.keep('c', done(uid));
    assert.equal(s.size, 5);
    assert.deepEqual(
      s
        .take('c', null)
        .map((r) => r.uid)
        .sort((x, y) => x - y),
      [4, 5, 6, 7, 8],
    );
    assert.ok(lines().some((l) => l.level === 40 && /full: oldest results dropped/.test(String(l.msg))));

    const small = new UndeliveredStore(join(dir, 'small'), log, { maxBytes: 600 });
    small.keep('c', done(1, { stdout: 'x'.repeat(300) }));
    small.keep('c', done(2, { stdout: 'y'.repeat(300) }));
    assert.equal(small.size, 1, 'two results of ~400 bytes do not fit in 600');
    small.keep('c', done(3, { stdout: 'z'.repeat(5000) }));
    assert.ok(
      lines().some((l) => /larger than the store/.test(String(l.msg))),
      'a single oversized result is refused',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('corrupt or foreign files in the store are removed at start, not trusted', () => {
  const dir = scratch();
  try {
    const sub = join(dir, 'abc');
    mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, '1.msgpack'), Buffer.from([0xc1, 0xff, 0x00]));
    writeFileSync(join(sub, 'notes.txt'), 'hello');
    const { log, lines } = logger();
    const s = new UndeliveredStore(dir, log);
    assert.equal(s.size, 0);
    assert.deepEqual(readdirSync(sub), []);
    assert.equal(lines().filter((l) => /unreadable kept result removed/.test(String(l.msg))).length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('computation ids cannot name paths outside the store', () => {
  const dir = scratch();
  try {
    const s = new UndeliveredStore(join(dir, 'store'), logger().log);
    s.keep('../../escape', done(1));
    assert.deepEqual(readdirSync(dir), ['store']);
    assert.equal(s.take('../../escape', null).length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('results just sent are remembered (bounded) for a client that reconnects', () => {
  const dir = scratch();
  try {
    const s = new UndeliveredStore(dir, logger().log, { recentResults: 4 });
    for (let uid = 1; uid <= 20; uid++) s.sent('c', done(uid));
    const got = s
      .take('c', new Set([1, 2, 19, 20]))
      .map((r) => r.uid)
      .sort((x, y) => x - y);
    assert.ok(got.includes(19) && got.includes(20), `the newest are remembered: ${got}`);
    assert.ok(!got.includes(1), 'the oldest were forgotten');
    assert.deepEqual(s.take('c', new Set([19, 20])), [], 'handed out once');
    assert.deepEqual(s.take('other', new Set([18])), [], 'by computation');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
