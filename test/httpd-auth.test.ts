/**
 * Users and roles over HTTP, against a real cluster on a real node (127.0.0.150): options
 * validated with clear errors, the login form (good, wrong and missing fields), sessions in
 * signed cookies (a tampered or revoked one is refused), logout, HTTP Basic for scripts, the
 * viewer role (reads allowed, every action 403 DISPY_ERR_ROLE), an admin's actions carried out
 * and audited (who, what, result) in the event log, scrypt hashes, and the login rate limit.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DispyHTTPServer, JobCluster, hashPassword, verifyPassword } from '../src/index.js';
import { SessionSigner } from '../src/httpd/sessions.js';
import { startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';
import { form, post, request, type Reply } from './helpers/http-client.js';

const ALICE = 'alice-has-a-long-password';
const BOB = 'bob-watches-the-cluster';

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

function sessionCookie(r: Reply): string {
  const set = ([] as string[]).concat(r.headers['set-cookie'] ?? []);
  const c = set.find((s) => s.startsWith('dispyts_session_'));
  assert.ok(c, `a session cookie is set (got ${JSON.stringify(set)})`);
  return c.split(';')[0]!;
}

async function compute(x: number): Promise<number> {
  return x * 2;
}

describe('options', () => {
  test('bad users and auth options are refused with messages that say what was expected', async () => {
    const bad: [unknown, RegExp][] = [
      [{ users: {} }, /auth\.users.*at least one user/],
      [{ users: { alice: { password: ALICE } } }, /auth\.users\.alice\.role.*'admin' or 'viewer'/],
      [{ users: { alice: { role: 'root', password: ALICE } } }, /'admin' or 'viewer'.*"root"/],
      [{ users: { alice: { role: 'admin' } } }, /exactly one of `password` and `passwordHash`/],
      [{ users: { alice: { role: 'admin', password: 'short' } } }, /auth\.users\.alice\.password.*8 to 1024 characters/],
      [{ users: { alice: { role: 'admin', passwordHash: 'md5$abc' } } }, /passwordHash.*hashPassword/],
      [{ users: { 'bad name': { role: 'admin', password: ALICE } } }, /user name of 1 to 64/],
      [{ users: { alice: { role: 'admin', password: ALICE } }, sessionSecret: 'short' }, /sessionSecret.*at least 32 characters/],
      [{ users: { alice: { role: 'admin', password: ALICE } }, loginRateLimit: { attempts: 0 } }, /loginRateLimit\.attempts.*1 to 1000/],
      [{ users: { alice: { role: 'admin', password: ALICE } }, sessionMaxAgeSec: 1 }, /sessionMaxAgeSec.*60 to 2592000/],
      [{ sessionSecret: 'x'.repeat(40) }, /auth\.sessionSecret.*only with `auth\.users`/],
    ];
    for (const [auth, message] of bad) {
      assert.throws(
        () => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, auth: auth as never, logLevel: 'silent' }),
        (err: Error & { code?: string }) => err.code === 'DISPY_ERR_INVALID_OPTION' && message.test(err.message),
        JSON.stringify(auth),
      );
    }
    assert.throws(
      () => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, metrics: 'open' as never }),
      /Expected `metrics` to be 'public' or 'protected'/,
    );
  });

  test('scrypt hashes: verified, salted, and a malformed hash never matches', async () => {
    const h1 = await hashPassword('a passphrase');
    const h2 = await hashPassword('a passphrase');
    assert.match(h1, /^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
    assert.notEqual(h1, h2, 'a random salt per hash');
    assert.equal(await verifyPassword('a passphrase', h1), true);
    assert.equal(await verifyPassword('a passphrasE', h1), false);
    assert.equal(await verifyPassword('a passphrase', 'scrypt$1$1$1$xx$yy'), false);
  });

  test('session cookies: a forged, altered, expired or revoked one is refused', () => {
    const s = new SessionSigner(Buffer.alloc(32, 7), 60);
    const t0 = Date.now();
    const { value, session } = s.issue('alice', t0);
    assert.deepEqual(s.verify(value, t0 + 1000), session);
    const [v, payload, mac] = value.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ u: 'mallory', s: session.sid, e: session.exp })).toString('base64url');
    assert.equal(s.verify(`${v}.${forgedPayload}.${mac}`, t0), null, 'another user under the same MAC');
    assert.equal(s.verify(`${v}.${payload}.${mac!.slice(0, -2)}AA`, t0), null, 'an altered MAC');
    assert.equal(new SessionSigner(Buffer.alloc(32, 8), 60).verify(value, t0), null, 'another key');
    assert.equal(s.verify(value, session.exp + 1), null, 'expired');
    assert.equal(s.verify('garbage', t0), null);
    s.revoke(session);
    assert.equal(s.verify(value, t0 + 1000), null, 'revoked');
  });
});

describe('users and roles (127.0.0.150)', () => {
  let node: TestNode;
  let cluster: JobCluster;
  let server: DispyHTTPServer;
  let base: string;
  let origin: string;
  let nodeIp: string;

  before(async () => {
    node = await startNode({ host: '127.0.0.150', cpus: 2, logLevel: 'warn' });
    nodeIp = node.host;
    cluster = new JobCluster(compute, { ...clusterOn(node), name: 'auth' });
    server = new DispyHTTPServer(cluster, {
      host: '127.0.0.1',
      port: 0,
      pollSec: 1,
      logLevel: 'silent',
      auth: { users: { alice: { password: ALICE, role: 'admin' }, bob: { passwordHash: await hashPassword(BOB), role: 'viewer' } } },
    });
    const a = await server.listening;
    base = a.url.replace('localhost', '127.0.0.1');
    origin = base;
    await until(() => cluster.status().nodes.length === 1, 15_000, 'the node up');
  });
  after(async () => {
    await server?.shutdown({ wait: false });
    await cluster?.close({ terminate: true });
    await node?.stop();
  });

  const login = (user: string, password: string, extra: Record<string, string> = {}, headers: Record<string, string> = {}) =>
    request(`${base}/login`, {
      method: 'POST',
      body: form({ user, password, ...extra }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin, accept: 'text/html', ...headers },
    });

  test('signed out: pages go to the login form, the API answers 401 (Basic offered to scripts), /healthz and /login are open', async () => {
    const page = await request(`${base}/monitor.html?x=1`, { headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
    assert.equal(page.status, 302);
    assert.equal(page.headers.location, `/login?next=${encodeURIComponent('/monitor.html?x=1')}`);
    const api = await request(`${base}/cluster_status`);
    assert.equal(api.status, 401);
    assert.equal(api.json().error.code, 'DISPY_ERR_UNAUTHORIZED');
    assert.match(api.json().error.message, /sign in first/);
    assert.match(String(api.headers['www-authenticate']), /^Basic realm="dispyts"/);
    assert.equal(api.headers['x-dispyts-login'], 'login');
    // A page's own fetch gets no Basic challenge (the browser would pop up a dialog).
    assert.equal(
      (await request(`${base}/cluster_status`, { headers: { 'sec-fetch-mode': 'cors', 'sec-fetch-site': 'same-origin' } })).headers[
        'www-authenticate'
      ],
      undefined,
    );
    assert.equal((await request(`${base}/healthz`)).status, 200);
    const form = await request(`${base}/login?next=/jobs.html`);
    assert.equal(form.status, 200);
    assert.match(form.body, /<form class="login" method="post" action="login"/);
    assert.match(form.body, /name="next" value="\/jobs.html"/);
    assert.match(String(form.headers['content-security-policy']), /script-src 'self'/);
    assert.equal((await request(`${base}/login.css`)).status, 200);
    // Loopback peers are not trusted once users are configured.
    assert.equal((await post(base, '/update', { timeout: 3 })).status, 401);
  });

  test('the login form: missing fields (400), wrong password or user (401), then a session cookie and the page asked for', async () => {
    const missing = await login('alice', '');
    assert.equal(missing.status, 400);
    assert.match(missing.body, /data-testid="login-error">Enter a password\.</);
    assert.match(missing.body, /value="alice"/, 'the name typed is kept');
    const json = await request(`${base}/login`, {
      method: 'POST',
      body: form({ user: '', password: '' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
    });
    assert.equal(json.status, 400);
    assert.deepEqual(json.json().error, { code: 'DISPY_ERR_BAD_REQUEST', message: 'enter a user name and a password' });
    const wrong = await login('alice', 'not-her-password');
    assert.equal(wrong.status, 401);
    assert.match(wrong.body, /Wrong user name or password\./);
    assert.equal(wrong.headers['set-cookie'], undefined);
    const unknown = await login('mallory', ALICE);
    assert.equal(unknown.status, 401);
    assert.match(unknown.body, /Wrong user name or password\./, 'an unknown user reads the same');
    // A foreign page cannot post the login form (login CSRF).
    assert.equal((await login('alice', ALICE, {}, { origin: 'http://evil.example' })).status, 403);

    const ok = await login('alice', ALICE, { next: '/jobs.html?status=failed' });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.location, '/jobs.html?status=failed');
    const set = String(ok.headers['set-cookie']);
    assert.match(set, /HttpOnly/);
    assert.match(set, /SameSite=Strict/);
    assert.match(set, /Max-Age=43200/);
    const cookie = sessionCookie(ok);
    const me = await request(`${base}/whoami`, { headers: { cookie } });
    assert.deepEqual(me.json(), {
      user: 'alice',
      role: 'admin',
      via: 'session',
      can_act: true,
      login: true,
      session_expires_ms: me.json().session_expires_ms,
    });
    assert.equal((await request(`${base}/cluster_status`, { headers: { cookie } })).status, 200);
    // No open redirect through `next`.
    for (const next of ['//evil.example/x', 'https://evil.example', '/\\evil.example']) {
      const r = await login('alice', ALICE, { next });
      assert.equal(r.headers.location, '/', next);
    }
  });

  test('a tampered session cookie is refused with a clear error; pages are sent to sign in again', async () => {
    const cookie = sessionCookie(await login('alice', ALICE));
    const [name, value] = cookie.split('=') as [string, string];
    const parts = value.split('.');
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString());
    parts[1] = Buffer.from(JSON.stringify({ ...payload, u: 'bob' })).toString('base64url');
    const tampered = `${name}=${parts.join('.')}`;
    const api = await request(`${base}/cluster_status`, { headers: { cookie: tampered } });
    assert.equal(api.status, 401);
    assert.equal(api.json().error.message, 'your session is invalid or has expired: sign in again');
    const page = await request(`${base}/`, { headers: { cookie: tampered, 'sec-fetch-mode': 'navigate' } });
    assert.equal(page.status, 302);
    assert.match(String(page.headers.location), /^\/login\?next=%2F&expired=1$/);
    const again = await request(`${base}${page.headers.location}`);
    assert.match(again.body, /Your session has ended: sign in again\./);
  });

  test('logout ends the session: the same cookie is refused afterwards', async () => {
    const cookie = sessionCookie(await login('alice', ALICE));
    const out = await request(`${base}/logout`, { method: 'POST', headers: { cookie, origin, accept: 'text/html' } });
    assert.equal(out.status, 303);
    assert.equal(out.headers.location, '/login?signed_out=1');
    assert.match(String(out.headers['set-cookie']), /^dispyts_session_\d+=; .*Max-Age=0/);
    assert.equal((await request(`${base}/cluster_status`, { headers: { cookie } })).status, 401, 'a copy of the cookie is revoked too');
    assert.match((await request(`${base}/login?signed_out=1`)).body, /You are signed out\./);
  });

  test('a viewer reads (POST /node_info included) but every action is refused with 403 DISPY_ERR_ROLE and audited', async () => {
    const cookie = sessionCookie(await login('bob', BOB));
    const h = { cookie, origin };
    const me = (await request(`${base}/whoami`, { headers: { cookie } })).json();
    assert.equal(me.role, 'viewer');
    assert.equal(me.can_act, false);
    assert.equal((await request(`${base}/cluster_status`, { headers: { cookie } })).status, 200);
    const info = await post(base, '/node_info', { host: nodeIp }, h);
    assert.equal(info.status, 200);
    assert.equal(info.json().node.ip_addr, nodeIp);
    const actions: [string, Record<string, string | string[]>][] = [
      ['/set_cpus', { [nodeIp]: '1' }],
      ['/close_node', { cluster: 'auth', nodes: JSON.stringify([nodeIp]) }],
      ['/deallocate_node', { cluster: 'auth', nodes: JSON.stringify([nodeIp]) }],
      ['/allocate_node', { cluster: 'auth', nodes: JSON.stringify([nodeIp]) }],
      ['/add_node', { host: '127.0.0.151' }],
      ['/cancel_jobs', { uid: ['1'] }],
      ['/update', { timeout: '3' }],
    ];
    for (const [path, fields] of actions) {
      const r = await post(base, path, fields, h);
      assert.equal(r.status, 403, path);
      assert.equal(r.json().error.code, 'DISPY_ERR_ROLE', path);
      assert.match(r.json().error.message, /bob is a viewer/);
    }
    // Basic credentials of a viewer: the same.
    assert.equal((await post(base, '/update', { timeout: 3 }, { authorization: basic('bob', BOB) })).status, 403);
    assert.equal(cluster.status().nodes[0]!.status, 4, 'the node is still in use: nothing was done');
    const log = (await request(`${base}/event_log`, { headers: { cookie } })).json();
    const refused = log.entries.filter((e: any) => e.kind === 'action' && e.user === 'bob');
    assert.equal(refused.length, actions.length + 1);
    assert.ok(refused.every((e: any) => e.result === 'refused' && e.role === 'viewer'));
    assert.ok(refused.some((e: any) => e.action === 'close_node' && /bob \(viewer\) tried to close nodes: refused/.test(e.text)));
  });

  test("an admin's actions run and are audited with who, what and the result", async () => {
    const cookie = sessionCookie(await login('alice', ALICE));
    const r = await post(base, '/set_cpus', { [nodeIp]: '1' }, { cookie, origin });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json(), { [nodeIp]: 1 });
    await until(() => cluster.status().nodes[0]!.cpus === 1, 5000, 'cpus 1');
    const bad = await post(base, '/set_cpus', { [nodeIp]: 'many' }, { cookie, origin });
    assert.equal(bad.status, 400);
    const entries = (await request(`${base}/event_log`, { headers: { cookie } })).json().entries as any[];
    const mine = entries.filter((e) => e.kind === 'action' && e.user === 'alice');
    assert.ok(
      mine.some(
        (e) => e.result === 'ok' && e.action === 'set_cpus' && e.text === `alice (admin): set CPUs of ${nodeIp} to 1: ${nodeIp}: now 1`,
      ),
      JSON.stringify(mine),
    );
    assert.ok(mine.some((e) => e.result === 'failed' && e.action === 'set_cpus' && /must be an integer/.test(e.text)));
    // The CPU change is in the log as a node event too.
    await until(
      async () =>
        (await request(`${base}/event_log`, { headers: { cookie } }))
          .json()
          .entries.some((e: any) => e.kind === 'node-cpus' && e.node === nodeIp),
      5000,
      'the CPU change logged',
    );
    const logins = entries.filter((e) => e.kind === 'login');
    assert.ok(logins.some((e) => e.result === 'ok' && e.user === 'alice'));
    assert.ok(logins.some((e) => e.result === 'failed' && /sign-in as alice from 127\.0\.0\.1 failed/.test(e.text)));
    // A name that is no user's (perhaps a password typed in the wrong field) is not logged.
    assert.ok(logins.some((e) => e.result === 'failed' && e.user === '(an unknown name)'));
    assert.ok(!JSON.stringify(entries).includes('mallory'));
  });

  test('HTTP Basic for scripts: reads and, with no Origin, actions; wrong credentials are 401', async () => {
    const good = { authorization: basic('alice', ALICE) };
    assert.equal((await request(`${base}/cluster_status`, { headers: good })).status, 200);
    assert.equal((await request(`${base}/whoami`, { headers: good })).json().via, 'basic');
    const act = await post(base, '/update', { timeout: 2 }, good);
    assert.equal(act.status, 200, act.body);
    const wrong = await request(`${base}/cluster_status`, { headers: { authorization: basic('alice', 'nope-nope-nope') } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json().error.message, 'wrong user name or password');
    const garbled = await request(`${base}/cluster_status`, { headers: { authorization: 'Basic !!!' } });
    assert.equal(garbled.status, 401);
  });
});

test('failed logins slow down their address and name: 429 with Retry-After, even for the right password from there', async () => {
  const server = new DispyHTTPServer(null, {
    host: '127.0.0.1',
    port: 0,
    logLevel: 'silent',
    auth: { users: { carol: { password: ALICE, role: 'admin' } }, loginRateLimit: { attempts: 1, windowSec: 60 } },
  });
  const base = (await server.listening).url.replace('localhost', '127.0.0.1');
  try {
    const attempt = (password: string) =>
      request(`${base}/login`, {
        method: 'POST',
        body: form({ user: 'carol', password }),
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
      });
    // One free failure, then waits of 1, 2 and 4 s: the third wrong password comes too early.
    assert.equal((await attempt('wrong-0')).status, 401);
    assert.equal((await attempt('wrong-1')).status, 429);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await attempt('wrong-2')).status, 401);
    await new Promise((r) => setTimeout(r, 2100));
    assert.equal((await attempt('wrong-3')).status, 401);
    const limited = await attempt(ALICE);
    assert.equal(limited.status, 429);
    assert.equal(limited.json().error.code, 'DISPY_ERR_TOO_MANY_REQUESTS');
    assert.match(limited.json().error.message, /too many failed sign-ins; try again in \d+ s/);
    assert.ok(Number(limited.headers['retry-after']) >= 1 && Number(limited.headers['retry-after']) <= 4);
    // Basic credentials count against the same limit.
    const basicLimited = await request(`${base}/cluster_status`, { headers: { authorization: basic('carol', ALICE) } });
    assert.equal(basicLimited.status, 429);
    // The failures are in the event log; the refused flood is not (it would push the rest out).
    const events = server.eventLog.since(0).entries.filter((e) => e.kind === 'login');
    assert.deepEqual(
      events.map((e) => e.result),
      ['failed', 'failed', 'failed'],
    );
    for (let i = 0; i < 20; i++) await attempt('hammering');
    assert.equal(server.eventLog.size, 3);
    // Once the wait is over, the right password works.
    await new Promise((r) => setTimeout(r, Number(limited.headers['retry-after']) * 1000 + 100));
    assert.equal((await attempt(ALICE)).status, 200);
  } finally {
    await server.shutdown({ wait: false });
  }
});

test('users plus a token: the token acts as an admin named `token`', async () => {
  const token = 'a-token-for-scripts-0123456789';
  const server = new DispyHTTPServer(null, {
    host: '127.0.0.1',
    port: 0,
    logLevel: 'silent',
    auth: { token, users: { dave: { password: ALICE, role: 'viewer' } } },
  });
  const base = (await server.listening).url.replace('localhost', '127.0.0.1');
  try {
    const me = await request(`${base}/whoami`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(me.json().user, 'token');
    assert.equal(me.json().role, 'admin');
    assert.equal((await post(base, '/update', { timeout: 2 }, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await request(`${base}/whoami`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401);
  } finally {
    await server.shutdown({ wait: false });
  }
});
