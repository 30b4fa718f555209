/**
 * Who a request comes from, decided once per request: a signed-in user (session cookie), a user
 * sending HTTP Basic credentials, the token, a trusted loopback peer, or anyone when the server
 * asks for nothing. Also the login itself (rate-limited per address and name, never per name
 * alone) and what the other auth options mean.
 */
import { randomBytes } from 'node:crypto';
import { DispyError, invalidOption } from '../errors.js';
import { readCookie, tokenMatches } from '../protocol/http-guard.js';
import { LoginLimiter } from './login-limiter.js';
import { presentedToken, resolveAuth, type AuthOptions, type AuthPolicy } from './security.js';
import { SessionSigner, type Session } from './sessions.js';
import { parseBasic, UserDirectory, USER_NAME_RE, type Role, type User } from './users.js';

/** How a request proved who it is. */
export type AuthVia = 'session' | 'basic' | 'token' | 'loopback' | 'open';

export interface Identity {
  /** A user name, or `token`, `loopback`, `anonymous` when no user is involved. */
  user: string;
  role: Role;
  via: AuthVia;
  /** The session, when `via` is `session`. */
  session?: Session;
}

/** What `identify` found out. */
export interface Verdict {
  who: Identity | null;
  /** The token presented and whether it is valid (for the same-origin rule and `?token=`). */
  token: string | null;
  tokenValid: boolean;
  fromQuery: boolean;
  /** Why credentials that were presented did not identify anyone. */
  failure: null | { kind: 'basic' | 'session' | 'token'; message: string } | { kind: 'limited'; retryAfter: number; message: string };
}

/** Default session length (seconds). */
export const DEFAULT_SESSION_SEC = 12 * 3600;

function validateExtras(auth: AuthOptions): void {
  if (auth.sessionSecret !== undefined && (typeof auth.sessionSecret !== 'string' || auth.sessionSecret.length < 32)) {
    throw invalidOption(
      'auth.sessionSecret',
      'a string of at least 32 characters',
      typeof auth.sessionSecret === 'string' ? `${auth.sessionSecret.length} characters` : auth.sessionSecret,
    );
  }
  const age = auth.sessionMaxAgeSec;
  if (age !== undefined && !(typeof age === 'number' && Number.isFinite(age) && age >= 60 && age <= 30 * 86400))
    throw invalidOption('auth.sessionMaxAgeSec', 'seconds from 60 to 2592000 (30 days)', age);
  const rl = auth.loginRateLimit;
  if (rl !== undefined) {
    if (rl === null || typeof rl !== 'object' || Array.isArray(rl))
      throw invalidOption('auth.loginRateLimit', '{ attempts, attemptsPerAddress, windowSec, maxDelaySec }', rl);
    for (const k of ['attempts', 'attemptsPerAddress'] as const)
      if (rl[k] !== undefined && !(Number.isInteger(rl[k]) && rl[k] >= 1 && rl[k] <= 1000))
        throw invalidOption(`auth.loginRateLimit.${k}`, 'an integer from 1 to 1000', rl[k]);
    if (
      rl.maxDelaySec !== undefined &&
      !(typeof rl.maxDelaySec === 'number' && Number.isFinite(rl.maxDelaySec) && rl.maxDelaySec >= 1 && rl.maxDelaySec <= 86400)
    )
      throw invalidOption('auth.loginRateLimit.maxDelaySec', 'seconds from 1 to 86400', rl.maxDelaySec);
    if (
      rl.windowSec !== undefined &&
      !(typeof rl.windowSec === 'number' && Number.isFinite(rl.windowSec) && rl.windowSec >= 1 && rl.windowSec <= 86400)
    ) {
      throw invalidOption('auth.loginRateLimit.windowSec', 'seconds from 1 to 86400', rl.windowSec);
    }
  }
  for (const k of ['sessionSecret', 'sessionMaxAgeSec', 'loginRateLimit'] as const) {
    if (auth[k] !== undefined && auth.users === undefined) throw invalidOption(`auth.${k}`, 'given only with `auth.users`', auth[k]);
  }
}

export class Access {
  readonly policy: AuthPolicy;
  readonly users: UserDirectory | null;
  readonly sessions: SessionSigner | null;
  readonly limiter: LoginLimiter;
  /** Resolves when plain passwords are hashed (the server listens after that). */
  readonly ready: Promise<void>;

  constructor(host: string, auth: AuthOptions | false | undefined) {
    this.policy = resolveAuth(host, auth);
    const opts = auth === false || auth === undefined ? null : auth;
    if (opts) validateExtras(opts);
    this.users = opts?.users !== undefined ? new UserDirectory(opts.users) : null;
    this.sessions = this.users
      ? new SessionSigner(
          opts?.sessionSecret ? Buffer.from(opts.sessionSecret, 'utf8') : randomBytes(32),
          opts?.sessionMaxAgeSec ?? DEFAULT_SESSION_SEC,
        )
      : null;
    this.limiter = new LoginLimiter(opts?.loginRateLimit);
    this.ready = this.users?.ready ?? Promise.resolve();
  }

  /** Whether nothing at all is asked of anyone (no token, no users). */
  get open(): boolean {
    return this.policy.token === null && this.users === null;
  }

  /**
   * Checks a name and password against the users, within the rate limit: resolves to the user,
   * or rejects with DISPY_ERR_UNAUTHORIZED (wrong) or DISPY_ERR_TOO_MANY_REQUESTS (`retryAfter`
   * seconds on the error).
   */
  async login(name: string, password: string, peer: string | undefined): Promise<User> {
    if (!this.users) throw new DispyError('DISPY_ERR_NOT_FOUND', 'this server has no users: it uses a token (or nothing) instead');
    const keys = LoginLimiter.keys(peer, name);
    const wait = this.limiter.retryAfter(keys);
    if (wait > 0)
      throw Object.assign(new DispyError('DISPY_ERR_TOO_MANY_REQUESTS', `too many failed sign-ins; try again in ${wait} s`), {
        retryAfter: wait,
      });
    // An unknown or malformed name costs the same hash as a known one.
    const user = await this.users.verify(USER_NAME_RE.test(name) ? name : '', password);
    if (!user) {
      this.limiter.fail(keys);
      throw new DispyError('DISPY_ERR_UNAUTHORIZED', 'wrong user name or password');
    }
    this.limiter.succeed(keys);
    return user;
  }

  /**
   * Who sends this request (see Verdict). `basicUser` is set when HTTP Basic credentials were
   * checked against the users (not answered from the cache): a sign-in to record.
   */
  async identify(
    headers: Headers,
    url: URL,
    peer: string | undefined,
    loopbackPeer: boolean,
    cookies: { token: string; session: string },
  ): Promise<Verdict & { basicUser?: string }> {
    const { token, fromQuery } = presentedToken(headers, url, cookies.token);
    const tokenValid = tokenMatches(token, this.policy.token);
    const v: Verdict & { basicUser?: string } = { who: null, token, tokenValid, fromQuery, failure: null };
    if (this.users && this.sessions) {
      const raw = readCookie(headers.get('cookie'), cookies.session);
      if (raw !== null) {
        const s = this.sessions.verify(raw);
        const u = s ? this.users.get(s.user) : null;
        if (s && u) {
          v.who = { user: u.name, role: u.role, via: 'session', session: s };
          return v;
        }
        v.failure = { kind: 'session', message: 'your session is invalid or has expired: sign in again' };
      }
      const authz = headers.get('authorization');
      if (authz && /^basic\s/i.test(authz)) {
        const cached = this.users.cachedBasic(authz);
        if (cached) {
          v.who = { user: cached.name, role: cached.role, via: 'basic' };
          return v;
        }
        const cred = parseBasic(authz);
        if (!cred) {
          v.failure = { kind: 'basic', message: 'malformed HTTP Basic credentials (expected base64 of user:password)' };
          return v;
        }
        v.basicUser = cred.user;
        try {
          const u = await this.login(cred.user, cred.password, peer);
          this.users.rememberBasic(authz, u);
          v.who = { user: u.name, role: u.role, via: 'basic' };
        } catch (err) {
          const e = err as DispyError & { retryAfter?: number };
          v.failure =
            e.code === 'DISPY_ERR_TOO_MANY_REQUESTS'
              ? { kind: 'limited', retryAfter: e.retryAfter ?? 60, message: e.message }
              : { kind: 'basic', message: e.message };
        }
        return v;
      }
    }
    if (tokenValid) {
      v.who = { user: 'token', role: 'admin', via: 'token' };
      return v;
    }
    if (token && this.policy.token !== null) v.failure ??= { kind: 'token', message: 'invalid token' };
    if (loopbackPeer && this.policy.trustLoopback) {
      v.who = { user: 'loopback', role: 'admin', via: 'loopback' };
      return v;
    }
    if (this.open) v.who = { user: 'anonymous', role: 'admin', via: 'open' };
    return v;
  }
}
