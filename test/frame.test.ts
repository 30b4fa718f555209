/** FrameDecoder / encodeFrame: length-prefixed framing, split and coalesced chunks, limits. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameDecoder, encodeFrame } from '../src/protocol/frame.js';

const bodies = [Buffer.from('a'), Buffer.from('hello, world'), Buffer.alloc(300, 7), Buffer.from([0, 1, 2, 3, 4])];
const stream = Buffer.concat(bodies.map((b) => encodeFrame(b)));

function hasCode(code: string) {
  return (err: unknown) => (err as { code?: string }).code === code;
}

test('encodeFrame writes a 4-byte big-endian length then the parts', () => {
  const f = encodeFrame(Buffer.from('ab'), Buffer.from('cde'));
  assert.deepEqual([...f], [0, 0, 0, 5, 0x61, 0x62, 0x63, 0x64, 0x65]);
});

test('a stream split at every byte boundary yields the same frames', () => {
  for (let cut = 0; cut <= stream.length; cut++) {
    const d = new FrameDecoder(1024);
    const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
    assert.deepEqual(got, bodies, `cut at ${cut}`);
    assert.equal(d.buffered, 0);
  }
});

test('a stream fed one byte at a time yields every frame once, complete', () => {
  const d = new FrameDecoder(1024);
  const got: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) got.push(...d.push(stream.subarray(i, i + 1)));
  assert.deepEqual(got, bodies);
  assert.equal(d.buffered, 0);
});

test('several frames in one chunk come out in order, a trailing partial one is kept', () => {
  const d = new FrameDecoder(1024);
  const extra = encodeFrame(Buffer.from('tail'));
  const got = d.push(Buffer.concat([stream, extra.subarray(0, 6)]));
  assert.deepEqual(got, bodies);
  assert.equal(d.buffered, 6);
  assert.deepEqual(d.push(extra.subarray(6)), [Buffer.from('tail')]);
});

test('a frame of exactly maxFrame bytes is accepted', () => {
  const d = new FrameDecoder(16);
  assert.deepEqual(d.push(encodeFrame(Buffer.alloc(16, 1))), [Buffer.alloc(16, 1)]);
});

test('an announced length above maxFrame throws after only the 4 header bytes', () => {
  const d = new FrameDecoder(16);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(17);
  assert.throws(() => d.push(header), hasCode('DISPY_ERR_FRAME_TOO_LARGE'));
  const split = new FrameDecoder(1024);
  assert.deepEqual(split.push(Buffer.from([0xff, 0xff])), []);
  assert.throws(() => split.push(Buffer.from([0xff, 0xff])), hasCode('DISPY_ERR_FRAME_TOO_LARGE'));
});

test('an oversize frame behind a good one in the same chunk still throws', () => {
  const d = new FrameDecoder(16);
  const bad = Buffer.alloc(4);
  bad.writeUInt32BE(0xffffffff);
  assert.throws(() => d.push(Buffer.concat([encodeFrame(Buffer.from('ok')), bad])), hasCode('DISPY_ERR_FRAME_TOO_LARGE'));
});

test('an empty frame is DISPY_ERR_BAD_FRAME', () => {
  assert.throws(() => new FrameDecoder(1024).push(Buffer.alloc(4)), hasCode('DISPY_ERR_BAD_FRAME'));
  assert.throws(() => new FrameDecoder(1024).push(encodeFrame()), hasCode('DISPY_ERR_BAD_FRAME'));
});
