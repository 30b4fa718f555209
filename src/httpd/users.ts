/**
 * Users and roles of the HTTP server (`auth.users`): passwords hashed with scrypt (a plain
 * `password` option is hashed when the server starts), verified in constant time, and HTTP Basic
 * credentials remembered for a minute so a script polling with them does not cost a scrypt hash
 * per request.
 */
import { createHmac, randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { invalidOption } from '../errors.js';

/** What a user may do: `admin` watches and acts; `viewer` only watches. */
export type Role = 'admin' | 'viewer';

/** One entry of `auth.users`. */
export interface UserOptions {
  /**
   * The password in plain text (at least 8 characters); hashed with scrypt when the server
   * starts. Give this or `passwordHash`.
   * @default undefined
   */
  password?: string;
  /**
   * The password's hash from `hashPassword()` (`scrypt$N$r$p$salt$hash`), so the configuration
   * holds no password. Give this or `password`.
   * @default undefined
   * @example passwordHash: await hashPassword('correct horse battery staple')
   */
  passwordHash?: string;
  /** `admin` watches and acts; `viewer` sees the same pages without any action. */
  role: Role;
}

interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** scrypt's cost for new hashes: N=2^14, r=8, p=1 (Node's defaults: 16 MiB and tens of ms per hash). */
const DEFAULT_PARAMS: ScryptParams = { N: 16384, r: 8, p: 1 };
const KEY_LEN = 32;
const SALT_LEN = 16;
/** Longest password accepted (a bound on the work one request can cause). */
export const MAX_PASSWORD = 1024;
/** User names: letters, digits and `._@-`, 1 to 64 characters. */
export const USER_NAME_RE = /^[A-Za-z0-9._@-]{1,64}$/;

function scrypt(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const opts: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 128 * params.N * params.r * params.p * 2 + 1024 * 1024 };
  return new Promise((resolve, reject) =>
    scryptCallback(password.normalize('NFC'), salt, KEY_LEN, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** A hash as `hashPassword` writes it. */
interface ParsedHash extends ScryptParams {
  salt: Buffer;
  hash: Buffer;
}

/** Parses `scrypt$N$r$p$salt$hash` (salt and hash base64url); null when malformed or too costly. */
export function parsePasswordHash(text: string): ParsedHash | null {
  if (typeof text !== 'string' || text.length > 512) return null;
  const m = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9_-]{16,128})\$([A-Za-z0-9_-]{16,128})$/.exec(text);
  if (!m) return null;
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  // A power of two from 2^10 to 2^20, and a memory bound: a hash in the options must not stall the server.
  if (N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16 || 128 * N * r * p > 256 * 1024 * 1024)
    return null;
  const salt = Buffer.from(m[4]!, 'base64url');
  const hash = Buffer.from(m[5]!, 'base64url');
  if (salt.length < 8 || hash.length < 16) return null;
  return { N, r, p, salt, hash };
}

/**
 * Hashes a password for `auth.users.<name>.passwordHash`: scrypt with a random salt, written as
 * `scrypt$N$r$p$salt$hash`.
 */
export async function hashPassword(password: string): Promise<string> {
  if (typeof password !== 'string' || password.length === 0 || password.length > MAX_PASSWORD)
    throw invalidOption(
      'password',
      `a string of 1 to ${MAX_PASSWORD} characters`,
      typeof password === 'string' ? `${password.length} characters` : password,
    );
  const salt = randomBytes(SALT_LEN);
  const hash = await scrypt(password, salt, DEFAULT_PARAMS);
  const { N, r, p } = DEFAULT_PARAMS;
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** Whether `password` matches `hash` (from hashPassword); false for a malformed hash. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const h = parsePasswordHash(hash);
  if (!h || typeof password !== 'string' || password.length > MAX_PASSWORD) return false;
  return verifyParsed(password, h);
}

async function verifyParsed(password: string, h: ParsedHash): Promise<boolean> {
  const key = await scrypt(password, h.salt, h);
  return key.length === h.hash.length && timingSafeEqual(key, h.hash);
}

/** A user as the server knows it. */
export interface User {
  name: string;
  role: Role;
}

interface Entry {
  role: Role;
  hash: ParsedHash | null;
}

const BASIC_CACHE_MS = 60_000;
const BASIC_CACHE_MAX = 1000;

/** Validates `auth.users` (every problem is a DISPY_ERR_INVALID_OPTION naming the user). */
export function validateUsers(users: unknown): asserts users is Record<string, UserOptions> {
  if (users === null || typeof users !== 'object' || Array.isArray(users))
    throw invalidOption('auth.users', 'an object of users: { name: { password | passwordHash, role } }', users);
  const names = Object.keys(users);
  if (names.length === 0) throw invalidOption('auth.users', 'at least one user', users);
  if (names.length > 10_000) throw invalidOption('auth.users', 'at most 10000 users', `${names.length} users`);
  for (const name of names) {
    if (!USER_NAME_RE.test(name)) throw invalidOption(`auth.users key`, 'a user name of 1 to 64 letters, digits or ._@-', name);
    const u = (users as Record<string, unknown>)[name];
    const at = `auth.users.${name}`;
    if (u === null || typeof u !== 'object' || Array.isArray(u))
      throw invalidOption(at, "{ password | passwordHash, role: 'admin' | 'viewer' }", u);
    const { password, passwordHash, role } = u as Record<string, unknown>;
    if (role !== 'admin' && role !== 'viewer') throw invalidOption(`${at}.role`, "'admin' or 'viewer'", role);
    if ((password === undefined) === (passwordHash === undefined))
      throw invalidOption(at, 'exactly one of `password` and `passwordHash`', {
        password: password === undefined ? undefined : '…',
        passwordHash,
      });
    if (password !== undefined && (typeof password !== 'string' || password.length < 8 || password.length > MAX_PASSWORD)) {
      throw invalidOption(
        `${at}.password`,
        `a string of 8 to ${MAX_PASSWORD} characters`,
        typeof password === 'string' ? `${password.length} characters` : password,
      );
    }
    if (passwordHash !== undefined && (typeof passwordHash !== 'string' || !parsePasswordHash(passwordHash))) {
      throw invalidOption(`${at}.passwordHash`, 'a hash from hashPassword() (scrypt$N$r$p$salt$hash)', passwordHash);
    }
  }
}

/** The configured users, their hashes, and the check of a name and password. */
export class UserDirectory {
  readonly #users = new Map<string, Entry>();
  /** Verified Basic credentials: HMAC(header) -> user and expiry. */
  readonly #basic = new Map<string, { user: User; until: number }>();
  readonly #cacheKey = randomBytes(32);
  /** Compared against when the name is unknown, so that both cases take as long. */
  #dummy: ParsedHash | null = null;
  /** Resolves once every plain password is hashed. */
  readonly ready: Promise<void>;

  constructor(users: Record<string, UserOptions>) {
    validateUsers(users);
    const pending: Promise<void>[] = [];
    for (const [name, u] of Object.entries(users)) {
      const entry: Entry = { role: u.role, hash: u.passwordHash ? parsePasswordHash(u.passwordHash) : null };
      this.#users.set(name, entry);
      if (u.password !== undefined)
        pending.push(
          hashPassword(u.password).then((h) => {
            entry.hash = parsePasswordHash(h);
          }),
        );
    }
    pending.push(
      hashPassword(randomBytes(16).toString('hex')).then((h) => {
        this.#dummy = parsePasswordHash(h);
      }),
    );
    this.ready = Promise.all(pending).then(() => undefined);
  }

  get size(): number {
    return this.#users.size;
  }

  /** The user called `name`, if configured. */
  get(name: string): User | null {
    const e = this.#users.get(name);
    return e ? { name, role: e.role } : null;
  }

  /** The user when `password` is theirs; null otherwise (an unknown name takes as long). */
  async verify(name: string, password: string): Promise<User | null> {
    await this.ready;
    const e = typeof name === 'string' ? this.#users.get(name) : undefined;
    if (typeof password !== 'string' || password.length > MAX_PASSWORD) return null;
    const hash = e?.hash ?? this.#dummy;
    if (!hash) return null;
    const ok = await verifyParsed(password, hash);
    return ok && e ? { name, role: e.role } : null;
  }

  /** A recently verified `Authorization: Basic` header's user, without hashing again. */
  cachedBasic(header: string): User | null {
    const k = this.#key(header);
    const hit = this.#basic.get(k);
    if (!hit) return null;
    if (hit.until < Date.now() || !this.#users.has(hit.user.name)) {
      this.#basic.delete(k);
      return null;
    }
    return hit.user;
  }

  /** Remembers a verified Basic header for a minute. */
  rememberBasic(header: string, user: User): void {
    if (this.#basic.size >= BASIC_CACHE_MAX) {
      const now = Date.now();
      for (const [k, v] of this.#basic) if (v.until < now) this.#basic.delete(k);
      if (this.#basic.size >= BASIC_CACHE_MAX) this.#basic.delete(this.#basic.keys().next().value!);
    }
    this.#basic.set(this.#key(header), { user, until: Date.now() + BASIC_CACHE_MS });
  }

  #key(header: string): string {
    return createHmac('sha256', this.#cacheKey).update(header).digest('base64url');
  }
}

/** `Authorization: Basic base64(user:password)` decoded; null when absent or malformed. */
export function parseBasic(header: string | null | undefined): { user: string; password: string } | null {
  if (!header || header.length > 4096) return null;
  const m = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return null;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(m[1]!, 'base64'));
  } catch {
    return null;
  }
  const colon = text.indexOf(':');
  if (colon < 0) return null;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}
