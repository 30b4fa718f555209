/**
 * The "missed beats" rule (src/protocol/silence-watch.ts), one home for the four parties that
 * watch heartbeats: a peer silent for 5 of its intervals is gone, except in a round the watcher's
 * own timer ran late. Unit tests on an injected clock, and the regression on a real node daemon
 * stopped (SIGSTOP) longer than its client may stay silent: resumed, it must not cut the client off
 * for the node's own silence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connectChannel } from '../src/protocol/channel.js';
import { nodeMessageSchema, type ClientMessageInput, type NodeMessage } from '../src/protocol/messages.js';
import { MISSED_BEATS, missedBeatsMs, SilenceWatch, type Heard } from '../src/protocol/silence-watch.js';
import { TEST_SECRET, startNode, until } from './helpers/daemon.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('a peer silent for more than 5 intervals is gone, one heard within them is not', () => {
  assert.equal(MISSED_BEATS, 5);
  assert.equal(missedBeatsMs(0.2), 1000);
  const c = clock();
  const watch = new SilenceWatch({ roundMs: 500, now: c.now });
  const quiet: Heard = { lastHeard: c.now() };
  const chatty: Heard = { lastHeard: c.now() };
  const gone: Array<[Heard, number]> = [];
  const rule = { heard: (h: Heard) => h, limitMs: () => missedBeatsMs(0.2), gone: (h: Heard, ms: number) => gone.push([h, ms]) };
  for (let i = 0; i < 2; i++) {
    c.advance(500);
    chatty.lastHeard = c.now();
    assert.equal(watch.round([quiet, chatty], rule), null);
  }
  assert.deepEqual(gone, []); // 1000 ms: not more than the limit yet
  c.advance(500);
  chatty.lastHeard = c.now();
  assert.equal(watch.round([quiet, chatty], rule), null);
  assert.deepEqual(gone, [[quiet, 1500]]);
});

test('a peer whose limit is Infinity (closed, or not beating) is never judged', () => {
  const c = clock();
  const watch = new SilenceWatch({ roundMs: 500, now: c.now });
  const p: Heard = { lastHeard: c.now() - 1e9 };
  let gone = 0;
  c.advance(500);
  watch.round([p], { heard: (h) => h, limitMs: () => Number.POSITIVE_INFINITY, gone: () => gone++ });
  assert.equal(gone, 0);
});

test('a round that ran late judges nobody and gives every peer a fresh 5 intervals', () => {
  const c = clock();
  const watch = new SilenceWatch({ roundMs: 500, now: c.now });
  const p: Heard = { lastHeard: c.now() };
  const gone: number[] = [];
  const rule = { heard: (h: Heard) => h, limitMs: () => 1000, gone: (_: Heard, ms: number) => gone.push(ms) };
  // The watcher was stopped for 10 s: its timer fires once, late.
  c.advance(10_000);
  assert.equal(watch.round([p], rule), 10_000);
  assert.deepEqual(gone, []);
  assert.equal(p.lastHeard, c.now());
  // Counting starts again from the late round: still silent 5 intervals later, it is gone.
  c.advance(500);
  assert.equal(watch.round([p], rule), null);
  c.advance(600);
  assert.equal(watch.round([p], rule), null);
  assert.deepEqual(gone, [1100]);
  // Lateness is 2 rounds plus 1 s: 2000 ms after the previous round is on time.
  c.advance(2000);
  assert.equal(watch.round([p], rule), null);
  c.advance(2001);
  assert.equal(watch.round([p], rule), 2001);
});

test('a node resumed after SIGSTOP does not cut off its client for the node’s own silence', async () => {
  const node = await startNode({ host: '127.0.0.15', cpus: 1 });
  const ch = await connectChannel<NodeMessage, ClientMessageInput>({
    host: node.host,
    port: node.port,
    secret: Buffer.from(TEST_SECRET),
    clientId: randomBytes(12).toString('hex'),
    schema: nodeMessageSchema,
  });
  let closed = false;
  ch.on('close', () => {
    closed = true;
  });
  const replies: number[] = [];
  ch.on('message', (m) => {
    if (m.t === 'reply') replies.push(m.rid);
  });
  // Heartbeats every 0.2 s: the node cuts this client off after 1 s of silence.
  ch.send({ t: 'beat', every: 0.2 });
  const beats = setInterval(() => ch.send({ t: 'beat', every: 0.2 }), 200);
  try {
    await until(() => /"every":0\.2,"msg":"client heartbeat interval"/.test(node.log()), 10_000, 'the node to take the heartbeat interval');
    process.kill(node.pid, 'SIGSTOP');
    // The pause under test: twice what the client may stay silent.
    await new Promise((r) => setTimeout(r, 2000));
    process.kill(node.pid, 'SIGCONT');
    await until(() => closed || /heartbeat check ran late/.test(node.log()), 10_000, 'the node to notice its own late round');
    assert.equal(closed, false, `the node cut its client off after its own pause: ${node.log().split('\n').slice(-5).join('\n')}`);
    // And it still serves the connection.
    ch.send({ t: 'ping', rid: 7 });
    await until(() => replies.includes(7) || closed, 10_000, 'the ping reply');
    assert.equal(closed, false);
    assert.doesNotMatch(node.log(), /client sent no heartbeat/);
  } finally {
    clearInterval(beats);
    ch.close();
    process.kill(node.pid, 'SIGCONT');
    await node.stop();
  }
});
