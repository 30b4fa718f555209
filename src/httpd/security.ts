/**
 * Safe by default (DESIGN.md §4): a token when the server listens beyond loopback (generated and
 * logged as a login URL unless the user gave one or said `auth: false`), mutations only from the
 * same origin (or from curl on loopback / with the token), a Host header that names this server
 * (DNS-rebinding guard), and security headers with a CSP that forbids inline script on our pages.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import os from 'node:os';
import { DispyError, invalidOption } from '../errors.js';
import type { LoginRateLimit } from './rate-limit.js';
import type { UserOptions } from './users.js';

/** The `auth` option. */
export interface AuthOptions {
  /**
   * The token browsers and scripts present (`?token=` once, then a cookie; or
   * `Authorization: Bearer <token>`). At least 16 characters. With `users`, a token is only
   * accepted when given here, and acts as an admin named `token`.
   * @default a random token, logged with the login URL (none when `users` are given)
   * @example token: process.env.DISPYTS_HTTP_TOKEN
   */
  token?: string;
  /**
   * Whether peers on loopback need no credentials. Set false on machines shared with other
   * users, who can reach loopback addresses too.
   * @default true, or false when `users` are given
   * @example trustLoopback: false
   */
  trustLoopback?: boolean;
  /**
   * Users who sign in with the login form (`/login`) or HTTP Basic, by name:
   * `{ alice: { password: '…', role: 'admin' }, bob: { passwordHash: await hashPassword('…'), role: 'viewer' } }`.
   * A viewer sees every page but no action controls, and its actions are refused with 403.
   * @default undefined (no users: the token rules alone)
   * @example { admin: { passwordHash: 'scrypt$16384$8$1$…', role: 'admin' } }
   */
  users?: Record<string, UserOptions>;
  /**
   * Key that signs session cookies (at least 32 characters). Give one to keep sessions valid
   * across restarts of the program.
   * @default random per server (sessions end when it stops)
   * @example sessionSecret: process.env.DISPYTS_SESSION_SECRET
   */
  sessionSecret?: string;
  /**
   * Seconds a session lasts after signing in.
   * @default 43200 (12 hours)
   * @example sessionMaxAgeSec: 3600
   */
  sessionMaxAgeSec?: number;
  /**
   * Failed logins allowed per client address and per user name in a sliding window.
   * @default { attempts: 5, windowSec: 60 }
   * @example loginRateLimit: { attempts: 3, windowSec: 300 }
   */
  loginRateLimit?: LoginRateLimit;
}

/** What the server enforces, decided once from `host` and `auth`. */
export interface AuthPolicy {
  /** The token, or null when none is required. */
  token: string | null;
  trustLoopback: boolean;
  /** Whether the token was generated here (and must be shown to the user). */
  generated: boolean;
  /** Set when the server listens beyond loopback without any credentials (`auth: false`). */
  insecure: boolean;
}

/** Whether `addr` (a peer or bind address) is on loopback: 127.0.0.0/8, ::1 or mapped. */
export function isLoopbackAddress(addr: string | undefined | null): boolean {
  if (!addr) return false;
  let a = addr.toLowerCase();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  if (a.startsWith('::ffff:')) a = a.slice(7);
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  return isIP(a) === 4 && a.startsWith('127.');
}

/** Whether binding `host` exposes the server beyond loopback ('' and names other than localhost do). */
export function bindsBeyondLoopback(host: string): boolean {
  if (host === 'localhost') return false;
  return !isLoopbackAddress(host);
}

/** Decides the token rules from the options; validates `auth`. */
export function resolveAuth(host: string, auth: AuthOptions | false | undefined): AuthPolicy {
  const beyond = bindsBeyondLoopback(host);
  if (auth === false) return { token: null, trustLoopback: true, generated: false, insecure: beyond };
  if (auth !== undefined && (auth === null || typeof auth !== 'object' || Array.isArray(auth)))
    throw invalidOption('auth', 'false or { token, trustLoopback, users }', auth);
  const given = auth?.token;
  const withUsers = auth?.users !== undefined;
  if (given !== undefined && (typeof given !== 'string' || given.length < 16 || given.length > 512 || /[\s;,]/.test(given))) {
    throw invalidOption('auth.token', 'a string of 16 to 512 characters without spaces, commas or semicolons', given);
  }
  const trustLoopback = auth?.trustLoopback ?? !withUsers;
  if (typeof trustLoopback !== 'boolean') throw invalidOption('auth.trustLoopback', 'true or false', trustLoopback);
  if (given !== undefined) return { token: given, trustLoopback, generated: false, insecure: false };
  // Users are the credentials: no token unless one is given.
  if (withUsers) return { token: null, trustLoopback, generated: false, insecure: false };
  // Beyond loopback, or on loopback when loopback peers are not trusted: a generated token.
  if (beyond || !trustLoopback) return { token: randomBytes(24).toString('base64url'), trustLoopback, generated: true, insecure: false };
  return { token: null, trustLoopback, generated: false, insecure: false };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(presented: string | null | undefined, expected: string | null): boolean {
  if (!expected || typeof presented !== 'string' || presented.length === 0 || presented.length > 1024) return false;
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The token a request presents: `Authorization: Bearer`, `?token=` or the cookie. */
export function presentedToken(headers: Headers, url: URL, cookieName: string): { token: string | null; fromQuery: boolean } {
  const auth = headers.get('authorization');
  if (auth && /^bearer\s+/i.test(auth)) return { token: auth.replace(/^bearer\s+/i, '').trim(), fromQuery: false };
  const q = url.searchParams.get('token');
  if (q) return { token: q, fromQuery: true };
  return { token: readCookie(headers.get('cookie'), cookieName), fromQuery: false };
}

/** Reads one cookie from a Cookie header; null when absent or malformed. */
export function readCookie(header: string | null, name: string): string | null {
  if (!header || header.length > 16384) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    const v = part.slice(eq + 1).trim();
    try {
      return decodeURIComponent(v);
    } catch {
      return null;
    }
  }
  return null;
}

/** A Set-Cookie value for our cookies: HttpOnly, SameSite=Strict, Secure over HTTPS. */
export function cookie(name: string, value: string, secure: boolean, maxAgeSec?: number): string {
  return `${name}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}${maxAgeSec === undefined ? '' : `; Max-Age=${maxAgeSec}`}`;
}

/** The host name of a Host header (port and IPv6 brackets removed, lower case); null if malformed. */
export function hostName(header: string | null | undefined): string | null {
  if (!header || header.length > 300) return null;
  let h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return null;
    const rest = h.slice(end + 1);
    if (rest && !/^:\d{1,5}$/.test(rest)) return null;
    h = h.slice(1, end);
    return isIP(h) === 6 ? h : null;
  }
  const colon = h.indexOf(':');
  if (colon >= 0) {
    if (!/^:\d{1,5}$/.test(h.slice(colon))) return null;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return /^[a-z0-9._-]{1,253}$/.test(h) ? h : null;
}

function normalizeHost(h: string): string {
  let s = h.trim().toLowerCase();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.endsWith('.')) s = s.slice(0, -1);
  return s;
}

/**
 * Which Host headers name this server: the bound address (and `localhost` for a loopback bind),
 * any address of the machine (and its host name) for a wildcard bind, and `allowedHosts`.
 */
export class HostPolicy {
  readonly #bindHost: string;
  readonly #allowed = new Set<string>();
  readonly #any: boolean;
  readonly #wildcard: boolean;
  #machine = new Set<string>();
  #machineReadAt = 0;

  constructor(bindHost: string, allowedHosts: readonly string[] = []) {
    this.#bindHost = normalizeHost(bindHost);
    this.#any = allowedHosts.includes('*');
    for (const h of allowedHosts) if (h !== '*') this.#allowed.add(normalizeHost(h));
    this.#wildcard = this.#bindHost === '' || this.#bindHost === '0.0.0.0' || this.#bindHost === '::';
    if (!this.#wildcard) {
      this.#allowed.add(this.#bindHost);
      if (this.#bindHost === 'localhost' || isLoopbackAddress(this.#bindHost)) this.#allowed.add('localhost');
    } else this.#allowed.add('localhost');
  }

  /** Adds the address the server actually bound (known once listening). */
  bound(address: string): void {
    const a = normalizeHost(address);
    if (a !== '0.0.0.0' && a !== '::') this.#allowed.add(a);
    if (isLoopbackAddress(a)) this.#allowed.add('localhost');
  }

  #readMachine(): void {
    const s = new Set<string>();
    try {
      for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) s.add(normalizeHost(i.address.split('%')[0]!));
    } catch {
      // no interface list: only the configured names
    }
    try {
      s.add(os.hostname().toLowerCase());
    } catch {
      // no host name
    }
    this.#machine = s;
    this.#machineReadAt = Date.now();
  }

  /** Whether a request's Host header is acceptable. */
  allows(header: string | null | undefined): boolean {
    if (this.#any) return true;
    const h = hostName(header);
    if (h === null) return false;
    if (this.#allowed.has(h)) return true;
    if (!this.#wildcard) return false;
    if (this.#machine.has(h)) return true;
    // Interfaces change (DHCP, VPN): re-read at most every 5 s on a miss.
    if (Date.now() - this.#machineReadAt > 5000) {
      this.#readMachine();
      return this.#machine.has(h);
    }
    return false;
  }
}

/**
 * Whether a mutation (any method but GET/HEAD) may proceed: a browser must show it comes from
 * our own origin (Origin, else Sec-Fetch-Site); a request with neither (curl, scripts) needs a
 * valid token or a loopback peer.
 */
export function mutationAllowed(
  headers: Headers,
  scheme: 'http' | 'https',
  tokenValid: boolean,
  loopbackPeer: boolean,
): { ok: true } | { ok: false; reason: string } {
  const origin = headers.get('origin');
  const site = headers.get('sec-fetch-site');
  if (site !== null && site !== 'same-origin')
    return { ok: false, reason: `cross-origin request refused (Sec-Fetch-Site: ${site.slice(0, 40)})` };
  if (origin !== null) {
    const host = headers.get('host');
    if (!host || origin.toLowerCase() !== `${scheme}://${host.toLowerCase()}`)
      return { ok: false, reason: 'cross-origin request refused (Origin does not match this server)' };
    return { ok: true };
  }
  if (site === 'same-origin') return { ok: true };
  if (tokenValid || loopbackPeer) return { ok: true };
  return { ok: false, reason: 'requests without an Origin header need the token' };
}

/** CSP of our own pages: no inline script, nothing from elsewhere. */
export const STRICT_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/** CSP of a user's documentRoot (dispy's pages use inline script and styles). */
export const RELAXED_CSP =
  "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/** Headers every response carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** The error answered to a request refused by these rules. */
export function refused(code: 'DISPY_ERR_UNAUTHORIZED' | 'DISPY_ERR_FORBIDDEN', message: string): DispyError {
  return new DispyError(code, message);
}
