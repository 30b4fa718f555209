/** The generated per-user secret file: mode 0600, stable, and agreed on by racing processes. */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadOrCreateSecretFile, readSecretFile } from '../src/protocol/secret.js';
import { ROOT } from './helpers/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'dispyts-secret-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('creates the file (and its directory) with mode 0600 and returns the same secret again', () => {
  const file = join(dir, 'one', 'nested', 'secret');
  const first = loadOrCreateSecretFile(file);
  assert.ok(first.length >= 32, 'a long random secret');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(loadOrCreateSecretFile(file), first);
  assert.deepEqual(readdirSync(join(dir, 'one', 'nested')), ['secret'], 'no temporary file left behind');
  const otherFile = join(dir, 'two', 'secret');
  assert.notDeepEqual(loadOrCreateSecretFile(otherFile), first, 'each new file gets a fresh secret');
});

test('8 processes creating the file at once all end with the same secret', async () => {
  const file = join(dir, 'race', 'secret');
  const moduleUrl = pathToFileURL(join(ROOT, 'src', 'protocol', 'secret.ts')).href;
  // Each child loads the module, says ready, then creates the secret when told to go.
  const code = `
    const { loadOrCreateSecretFile } = await import(${JSON.stringify(moduleUrl)});
    process.stdout.write('ready\\n');
    process.stdin.once('data', () => {
      process.stdout.write(loadOrCreateSecretFile().toString('hex') + '\\n');
      process.exit(0);
    });`;
  const children = Array.from({ length: 8 }, () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: ROOT,
      env: { ...process.env, DISPYTS_SECRET_FILE: file },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', () => out.includes('ready\n') && resolve());
      child.once('exit', (c) => reject(new Error(`child exited (${c}) before it was ready: ${err}`)));
    });
    const done = new Promise<string>((resolve, reject) => {
      child.once('exit', (c) =>
        c === 0 ? resolve(out.replace('ready\n', '').trim()) : reject(new Error(`child exited with ${c}: ${err}`)),
      );
    });
    return { child, ready, done };
  });
  try {
    await Promise.all(children.map((c) => c.ready));
    for (const c of children) c.child.stdin.end('go\n');
    const secrets = await Promise.all(children.map((c) => c.done));
    assert.equal(secrets.length, 8);
    for (const s of secrets) assert.ok(s.length >= 32, `a secret was printed: ${JSON.stringify(s)}`);
    assert.equal(new Set(secrets).size, 1, 'every process got the same secret');
    assert.equal(loadOrCreateSecretFile(file).toString('hex'), secrets[0]);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(join(dir, 'race')), ['secret'], 'no temporary file left behind');
  } finally {
    for (const c of children) if (c.child.exitCode === null) c.child.kill();
  }
});

test('a too-short secret file is DISPY_ERR_SECRET_FILE', () => {
  const file = join(dir, 'short');
  writeFileSync(file, 'tooshort\n', { mode: 0o600 });
  assert.throws(
    () => loadOrCreateSecretFile(file),
    (err: Error & { code?: string }) => err.code === 'DISPY_ERR_SECRET_FILE' && err.message.includes(file),
  );
});

test('a path that cannot be read as a file is DISPY_ERR_SECRET_FILE', () => {
  const asDir = join(dir, 'is-a-directory');
  mkdirSync(asDir);
  assert.throws(() => loadOrCreateSecretFile(asDir), { code: 'DISPY_ERR_SECRET_FILE' });
});

test('--secret-file: its owner alone may read it, or also its group when root owns it (a Kubernetes secret volume with fsGroup)', (t) => {
  const at = (name: string, mode: number, uid = 0): string => {
    const file = join(dir, name);
    writeFileSync(file, 'a-secret-of-enough-length\n');
    chmodSync(file, mode);
    if (process.getuid?.() === 0) chownSync(file, uid, 0);
    return file;
  };
  const refused = (file: string) =>
    assert.throws(
      () => readSecretFile(file),
      (err: Error & { code?: string }) => err.code === 'DISPY_ERR_SECRET_FILE' && /readable by other users/.test(err.message),
      file,
    );
  assert.equal(readSecretFile(at('s600', 0o600)), 'a-secret-of-enough-length');
  assert.equal(readSecretFile(at('s400', 0o400)), 'a-secret-of-enough-length');
  refused(at('s644', 0o644));
  refused(at('s604', 0o604));
  if (process.getuid?.() !== 0) {
    t.diagnostic('not root: the files of other owners cannot be made, the rest is checked');
    return;
  }
  // As the kubelet leaves a secret volume's file with fsGroup: root, its group, 0440 behind a symlink.
  const k8s = at('s440', 0o440);
  const link = join(dir, 'secret-link');
  symlinkSync(k8s, link);
  assert.equal(readSecretFile(link), 'a-secret-of-enough-length');
  assert.equal(readSecretFile(at('s640', 0o640)), 'a-secret-of-enough-length');
  refused(at('s660', 0o660));
  refused(at('s444', 0o444));
  refused(at('s450', 0o450));
  // A group-readable file of anyone but root: its owner did not mean to share it.
  refused(at('s440-nobody', 0o440, 65534));
});
