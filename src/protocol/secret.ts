/**
 * The shared secret: the one configured, or a generated per-user secret file
 * (`~/.config/dispyts/secret`, mode 0600) so that daemons and clients of one user on one machine
 * agree without configuration. Creation is atomic: concurrent first runs end with one secret.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { DispyError } from '../errors.js';

/** Where the generated secret lives; `DISPYTS_SECRET_FILE` overrides it. */
export function defaultSecretFile(): string {
  return process.env.DISPYTS_SECRET_FILE || join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'dispyts', 'secret');
}

/** Reads the per-user secret, creating it first if needed. */
export function loadOrCreateSecretFile(file = defaultSecretFile()): Buffer {
  try {
    return readSecret(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw wrap(file, err);
  }
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
    writeFileSync(tmp, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    try {
      // link() fails with EEXIST if another process won the race; then we read theirs.
      linkSync(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
    return readSecret(file);
  } catch (err) {
    throw wrap(file, err);
  }
}

function readSecret(file: string): Buffer {
  const text = readFileSync(file, 'utf8').trim();
  if (text.length < 16) throw new DispyError('DISPY_ERR_SECRET_FILE', `secret file ${file} is too short (at least 16 characters)`);
  return Buffer.from(text, 'utf8');
}

function wrap(file: string, err: unknown): DispyError {
  if (err instanceof DispyError) return err;
  return new DispyError('DISPY_ERR_SECRET_FILE', `cannot read or create the secret file ${file}: ${(err as Error).message}`, {
    cause: err,
  });
}

/** The secret to use: the given one, else the per-user secret file. */
export function resolveSecret(secret: string | undefined | null): Buffer {
  if (secret !== undefined && secret !== null && secret !== '') return Buffer.from(secret, 'utf8');
  return loadOrCreateSecretFile();
}

/**
 * Reads a shared secret from `file` (`--secret-file`: keeps the secret out of the process list):
 * its content without the trailing newline. A file other users may read is refused, except
 * that a file root owns may be readable by its group (at most mode 640, as PostgreSQL allows
 * for its keys): an administrator gave that group the secret on purpose. A Kubernetes secret
 * volume with `fsGroup` is such a file (root, group fsGroup, mode 440).
 */
export function readSecretFile(file: string): string {
  let text: string;
  try {
    const st = statSync(file);
    const mode = st.mode & 0o777;
    const groupRead = st.uid === 0 && (mode & 0o070) === 0o040;
    if (mode & 0o007 || (mode & 0o070 && !groupRead))
      throw new Error(`it is readable by other users (mode ${mode.toString(8)}); chmod 600 it (or, owned by root, 640)`);
    text = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new DispyError('DISPY_ERR_SECRET_FILE', `cannot use the secret file ${file}: ${(err as Error).message}`);
  }
  if (text.length === 0) throw new DispyError('DISPY_ERR_SECRET_FILE', `the secret file ${file} is empty`);
  return text;
}
