/**
 * The HTTP login limiter (src/httpd/login-limiter.ts) on its own, on a given clock: waits per
 * (address, name) and per address, growing and capped, forgotten after a quiet window, and a
 * bounded memory. test/httpd-login-limits.test.ts covers it behind a real server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoginLimiter } from '../src/httpd/login-limiter.js';

test('the rate limiter: per (address, name) and per address, a growing delay, never a lock on a name', () => {
  const l = new LoginLimiter({ attempts: 2, attemptsPerAddress: 3, windowSec: 10, maxDelaySec: 8 });
  const k = LoginLimiter.keys('127.0.0.66', 'alice');
  assert.equal(l.retryAfter(k, 0), 0);
  l.fail(k, 0);
  assert.equal(l.retryAfter(k, 0), 0, 'free attempts');
  l.fail(k, 1000);
  assert.equal(l.retryAfter(k, 1000), 1, 'then 1 s');
  assert.equal(l.retryAfter(LoginLimiter.keys('127.0.0.1', 'alice'), 1000), 0, 'the name from a clean address is not limited');
  l.fail(k, 2000);
  assert.equal(l.retryAfter(k, 2000), 2, 'the wait doubles');
  l.fail(k, 4000);
  assert.equal(l.retryAfter(k, 4000), 4);
  // Another name from that address: its own pair is clean, the address has 4 failures (3 free).
  assert.equal(l.retryAfter(LoginLimiter.keys('127.0.0.66', 'bob'), 4000), 2, 'the address is slowed down for every name');
  for (let t = 8000; t <= 20_000; t += 2000) l.fail(k, t);
  assert.equal(l.retryAfter(k, 20_000), 8, 'at most maxDelaySec');
  assert.equal(l.retryAfter(k, 28_001), 0);
  // Quiet for the window after the last wait: forgotten.
  assert.equal(l.retryAfter(k, 38_001), 0);
  l.fail(k, 38_001);
  assert.equal(l.retryAfter(k, 38_001), 0, 'counting starts again');
  // A success forgets its pair, not its address.
  const m = new LoginLimiter({ attempts: 1, attemptsPerAddress: 2, windowSec: 60 });
  const mk = LoginLimiter.keys('127.0.0.7', 'carol');
  m.fail(mk, 0);
  m.fail(mk, 0);
  m.succeed(mk);
  assert.equal(m.retryAfter(LoginLimiter.keys('127.0.0.7', 'dave'), 0), 1);
});

test('defaults: 5 free attempts per (address, name), 4 times that per address, a 60 s window, waits of 300 s at most', () => {
  const l = new LoginLimiter();
  assert.deepEqual([l.attempts, l.attemptsPerAddress, l.windowMs, l.maxDelayMs], [5, 20, 60_000, 300_000]);
  assert.equal(new LoginLimiter({ attempts: 3 }).attemptsPerAddress, 12);
  const k = LoginLimiter.keys('127.0.0.66', 'alice');
  for (let i = 0; i < 4; i++) l.fail(k, 0);
  assert.equal(l.retryAfter(k, 0), 0, 'four failures are free');
  l.fail(k, 0);
  assert.equal(l.retryAfter(k, 0), 1, 'the fifth makes the next attempt wait');
});

test('a wait is told in whole seconds, at least 1, until it is over', () => {
  const l = new LoginLimiter({ attempts: 1, windowSec: 60 });
  const k = LoginLimiter.keys('127.0.0.66', 'alice');
  l.fail(k, 0);
  l.fail(k, 0);
  assert.equal(l.retryAfter(k, 0), 2, 'the second failure past the free one: 2 s');
  assert.equal(l.retryAfter(k, 1001), 1, '0.999 s left rounds up');
  assert.equal(l.retryAfter(k, 1999), 1);
  assert.equal(l.retryAfter(k, 2000), 0);
});

test('keys: an unknown address is one key of its own; names are compared on their first 64 characters', () => {
  assert.deepEqual(LoginLimiter.keys(undefined, 'alice'), { pair: 'pair:?|alice', address: 'addr:?' });
  const long = 'x'.repeat(64);
  assert.deepEqual(LoginLimiter.keys('127.0.0.66', `${long}a`), LoginLimiter.keys('127.0.0.66', `${long}b`));
  const l = new LoginLimiter({ attempts: 1, attemptsPerAddress: 100 });
  l.fail(LoginLimiter.keys(undefined, 'alice'), 0);
  assert.equal(l.retryAfter(LoginLimiter.keys(undefined, 'alice'), 0), 1);
  assert.equal(l.retryAfter(LoginLimiter.keys('127.0.0.66', 'alice'), 0), 0, 'a known address is not the unknown one');
});

test('memory is bounded: beyond 10,000 keys the least recently failed are forgotten first', () => {
  const l = new LoginLimiter({ attempts: 1, attemptsPerAddress: 1, windowSec: 3600 });
  const first = LoginLimiter.keys('10.0.0.1', 'alice');
  const second = LoginLimiter.keys('10.0.0.2', 'alice');
  l.fail(first, 0);
  l.fail(second, 1);
  assert.equal(l.retryAfter(first, 2), 1);
  // Each failure tracks two keys (pair and address): 4,998 more addresses make 10,000 keys.
  for (let i = 0; i < 4998; i++) l.fail(LoginLimiter.keys(`a${i}`, 'bob'), 2);
  assert.equal(l.retryAfter(first, 2), 1, 'at 10,000 keys nothing is dropped');
  l.fail(LoginLimiter.keys('b', 'bob'), 2);
  assert.equal(l.retryAfter(first, 2), 0, 'the oldest is dropped beyond');
  assert.equal(l.retryAfter(second, 2), 1, 'the next oldest is kept');
  l.fail(second, 3);
  for (let i = 0; i < 2; i++) l.fail(LoginLimiter.keys(`c${i}`, 'bob'), 4);
  assert.equal(l.retryAfter(second, 4), 2, 'a key that failed again counts as recent');
});
