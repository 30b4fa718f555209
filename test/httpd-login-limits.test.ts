/**
 * Sign-in limits an attacker cannot turn against a user (DESIGN.md §4): failures count per
 * (client address, name) and per client address, never per name alone, with a growing delay.
 * Real HTTP requests from distinct loopback addresses to a server on 127.0.0.197: six wrong
 * passwords for alice from 127.0.0.198 leave her right password from 127.0.0.199 working (form
 * and HTTP Basic); from 127.0.0.198 it waits the Retry-After, then works; one address trying many
 * names is slowed down for all of them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DispyHTTPServer } from '../src/index.js';
import { form, request } from './helpers/http-client.js';

const ALICE = 'alice-long-passphrase-1';
const BOB = 'bob-long-passphrase-22';
let server: DispyHTTPServer;
let base: string;

before(async () => {
  server = new DispyHTTPServer(null, {
    host: '127.0.0.197',
    port: 0,
    logLevel: 'silent',
    auth: {
      users: { alice: { password: ALICE, role: 'admin' }, bob: { password: BOB, role: 'viewer' } },
      loginRateLimit: { attemptsPerAddress: 8 },
    },
  });
  const a = await server.listening;
  base = `http://127.0.0.197:${a.port}`;
});

after(async () => {
  await server.shutdown({ wait: false });
});

function login(user: string, password: string, from: string) {
  return request(`${base}/login`, {
    method: 'POST',
    localAddress: from,
    body: form({ user, password }),
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
  });
}

function basicAuth(user: string, password: string, from: string) {
  return request(`${base}/whoami`, {
    localAddress: from,
    headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
  });
}

test('wrong passwords from one address never lock the user out from another', async () => {
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await login('alice', `wrong-${i}`, '127.0.0.198')).status);
  assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401]);
  assert.equal(statuses[5], 429, 'the sixth try from there comes too early (1 s after the fifth)');
  // The sixth wrong password once that wait is over: the next wait is 2 s.
  await new Promise((r) => setTimeout(r, 1100));
  assert.equal((await login('alice', 'wrong-6', '127.0.0.198')).status, 401);
  // From there, HTTP Basic and even the right password wait: a delay, not a lock.
  assert.equal((await basicAuth('alice', 'wrong-basic', '127.0.0.198')).status, 429);
  const early = await login('alice', ALICE, '127.0.0.198');
  assert.equal(early.status, 429);
  const wait = Number(early.headers['retry-after']);
  assert.ok(wait >= 1 && wait <= 2, `Retry-After ${wait}`);
  assert.match(early.json().error.message, /try again in \d+ s/);

  // Alice's right password from a clean address works, by form and by HTTP Basic.
  const ok = await login('alice', ALICE, '127.0.0.199');
  assert.equal(ok.status, 200, ok.body);
  assert.equal(ok.json().user, 'alice');
  const basic = await basicAuth('alice', ALICE, '127.0.0.199');
  assert.equal(basic.status, 200, basic.body);
  assert.equal(basic.json().via, 'basic');

  await new Promise((r) => setTimeout(r, wait * 1000 + 100));
  assert.equal((await login('alice', ALICE, '127.0.0.198')).status, 200);
});

test('one address trying many names is slowed down for every name; other addresses are not', async () => {
  const from = '127.0.0.204';
  for (const name of ['carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy'])
    assert.equal((await login(name, 'guess-guess', from)).status, 401, name);
  // Eight failures from the address: bob, never tried from there, waits too.
  const bob = await login('bob', BOB, from);
  assert.equal(bob.status, 429);
  assert.ok(Number(bob.headers['retry-after']) >= 1);
  assert.equal((await login('bob', BOB, '127.0.0.199')).status, 200);
});
