/**
 * Safe by default (DESIGN.md §4): a token when the server listens beyond loopback (generated and
 * logged as a login URL unless the user gave one or said `auth: false`), and CSPs that forbid
 * inline script except, on a user's documentRoot pages, exactly their own inline scripts by hash.
 * The checks every request passes (Host, same origin, proxies, cookies, caps) are the HTTP guard's
 * (src/protocol/http-guard.ts), which the node's page uses too; they are re-exported here.
 */
import { createHash, randomBytes } from 'node:crypto';
import { DispyError, invalidOption } from '../errors.js';
import { readCookie } from '../protocol/http-guard.js';
import { isLoopbackHost } from '../protocol/loopback.js';
import type { LoginRateLimit } from './login-limiter.js';
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

/** Whether binding `host` exposes the server beyond loopback ('' and names other than localhost do). */
export function bindsBeyondLoopback(host: string): boolean {
  return !isLoopbackHost(host);
}

export {
  cookie,
  hostName,
  HostPolicy,
  isLoopbackAddress,
  mutationAllowed,
  readCookie,
  SECURITY_HEADERS,
  tokenMatches,
} from '../protocol/http-guard.js';

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

/** The token a request presents: `Authorization: Bearer`, `?token=` or the cookie. */
export function presentedToken(headers: Headers, url: URL, cookieName: string): { token: string | null; fromQuery: boolean } {
  const auth = headers.get('authorization');
  if (auth && /^bearer\s+/i.test(auth)) return { token: auth.replace(/^bearer\s+/i, '').trim(), fromQuery: false };
  const q = url.searchParams.get('token');
  if (q) return { token: q, fromQuery: true };
  return { token: readCookie(headers.get('cookie'), cookieName), fromQuery: false };
}

/** CSP of our own pages: no inline script, nothing from elsewhere. */
export const STRICT_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/** Inline `<script>` elements (no `src`): their text is what a browser hashes. */
const INLINE_SCRIPT = /<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi;

/**
 * The CSP of one HTML page of a user's documentRoot (dispy's pages use inline script and style
 * attributes): scripts from the server and exactly the page's own inline scripts, by their
 * SHA-256 (so markup injected into the page, `<img onerror=...>` included, runs nothing);
 * styles may stay inline. Computed from the page as it is sent (after templating).
 */
export function userPageCsp(html: string): string {
  const hashes = new Set<string>();
  for (const m of html.matchAll(INLINE_SCRIPT)) {
    if (/(^|\s)src\s*=/i.test(m[1]!)) continue;
    // The HTML parser turns CR LF and lone CR into LF before the browser hashes the text.
    const text = m[2]!.replace(/\r\n?/g, '\n');
    hashes.add(`'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`);
  }
  const scripts = ["'self'", ...hashes].join(' ');
  return `default-src 'self'; script-src ${scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'`;
}

/** CSP of a user's documentRoot files other than HTML (no script runs from them). */
export const USER_FILE_CSP = userPageCsp('');

/** The error answered to a request refused by these rules. */
export function refused(code: 'DISPY_ERR_UNAUTHORIZED' | 'DISPY_ERR_FORBIDDEN', message: string): DispyError {
  return new DispyError(code, message);
}
