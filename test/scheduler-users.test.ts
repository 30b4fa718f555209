/**
 * The scheduler's monitor with users (`--httpd-users`, hashes from `dispyts hash-password`): no
 * credentials, no page; a viewer reads but cannot act; an admin acts. Bad input to both
 * commands is a clear error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_SECRET, runCli as cli } from './helpers/daemon.js';
import { post, request } from './helpers/http-client.js';
import { CLUSTER_SECRET, startScheduler } from './helpers/scheduler.js';

const HOST = '127.0.0.167';

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

test('hash-password reads the password from stdin; a short one is refused', async () => {
  const ok = await cli(['hash-password'], 'correct horse battery staple\n');
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+\n$/);
  const short = await cli(['hash-password'], 'short\n');
  assert.equal(short.code, 2);
  assert.match(short.err, /DISPY_ERR_INVALID_OPTION: hash-password: expected a password of 8 to 1024 characters on standard input, got 5/);
});

test('the scheduler monitor with --httpd-users: viewers read, admins act, nobody else gets in', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-sched-users-'));
  try {
    const hash = (await cli(['hash-password'], 'admin passphrase 42')).out.trim();
    const users = join(dir, 'users.json');
    writeFileSync(
      users,
      JSON.stringify({ alice: { passwordHash: hash, role: 'admin' }, bob: { password: 'viewer passphrase', role: 'viewer' } }),
    );
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"alice": ');
    const refused = await cli([
      'scheduler',
      '--host',
      HOST,
      '--port',
      '0',
      '--cluster-secret',
      CLUSTER_SECRET,
      '--node-secret',
      TEST_SECRET,
      '--dest-path-prefix',
      dir,
      '--httpd',
      `${HOST}:0`,
      '--httpd-users',
      bad,
    ]);
    assert.equal(refused.code, 2);
    assert.match(refused.err, /--httpd-users: cannot read .*bad\.json as JSON/);
    const noHttpd = await cli(['scheduler', '--host', HOST, '--httpd-users', users]);
    assert.match(noHttpd.err, /--httpd-users, --httpd-cert-file and --httpd-key-file need --httpd/);

    const s = await startScheduler({ host: HOST, nodes: [], args: ['--httpd', `${HOST}:0`, '--httpd-users', users] });
    try {
      const base = s.httpUrl!;
      assert.equal((await request(`${base}/cluster_status`)).status, 401, 'no credentials, even on loopback');
      assert.equal(
        (await request(`${base}/cluster_status`, { headers: { authorization: basic('alice', 'wrong passphrase') } })).status,
        401,
      );
      const seen = await request(`${base}/cluster_status`, { headers: { authorization: basic('bob', 'viewer passphrase') } });
      assert.equal(seen.status, 200);
      assert.deepEqual(seen.json(), []);
      const viewerAct = await post(base, '/update', { timeout: 2 }, { authorization: basic('bob', 'viewer passphrase') });
      assert.equal(viewerAct.status, 403);
      assert.equal(viewerAct.json().error.code, 'DISPY_ERR_ROLE');
      const adminAct = await post(base, '/update', { timeout: 2 }, { authorization: basic('alice', 'admin passphrase 42') });
      assert.equal(adminAct.status, 200);
      assert.equal(adminAct.json().timeout, 2);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
