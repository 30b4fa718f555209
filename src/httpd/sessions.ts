/**
 * Sessions in signed cookies: the cookie carries the user name, a session id and an expiry,
 * signed with HMAC-SHA256 under the server's key, so the server keeps no session table. Logging
 * out revokes the session id until it would have expired anyway (a copied cookie stops working
 * too).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** A session a valid cookie names. */
export interface Session {
  user: string;
  /** Session id (random), for revocation. */
  sid: string;
  /** Expiry, ms since epoch. */
  exp: number;
}

const VERSION = 'v1';
/** Revoked sessions remembered at most (the oldest are forgotten first; they expire soon anyway). */
const MAX_REVOKED = 100_000;

export class SessionSigner {
  readonly #key: Buffer;
  readonly #maxAgeMs: number;
  /** Revoked session ids -> their expiry. */
  readonly #revoked = new Map<string, number>();

  /** @param key signing key (at least 32 bytes); @param maxAgeSec how long a session lasts. */
  constructor(key: Buffer, maxAgeSec: number) {
    this.#key = key;
    this.#maxAgeMs = Math.round(maxAgeSec * 1000);
  }

  get maxAgeSec(): number {
    return Math.round(this.#maxAgeMs / 1000);
  }

  #sign(payload: string): Buffer {
    return createHmac('sha256', this.#key).update(`${VERSION}.${payload}`).digest();
  }

  /** A new session for `user`: the cookie value and the session. */
  issue(user: string, now = Date.now()): { value: string; session: Session } {
    const session: Session = { user, sid: randomBytes(12).toString('base64url'), exp: now + this.#maxAgeMs };
    const payload = Buffer.from(JSON.stringify({ u: session.user, s: session.sid, e: session.exp }), 'utf8').toString('base64url');
    return { value: `${VERSION}.${payload}.${this.#sign(payload).toString('base64url')}`, session };
  }

  /** The session of a cookie value; null when missing, forged, expired, revoked or malformed. */
  verify(value: string | null | undefined, now = Date.now()): Session | null {
    if (!value || value.length > 1024) return null;
    const m = /^v1\.([A-Za-z0-9_-]{1,700})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (!m) return null;
    const mac = Buffer.from(m[2]!, 'base64url');
    const want = this.#sign(m[1]!);
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) return null;
    let data: unknown;
    try {
      data = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'));
    } catch {
      return null;
    }
    const { u, s, e } = (data ?? {}) as Record<string, unknown>;
    if (typeof u !== 'string' || typeof s !== 'string' || typeof e !== 'number' || !Number.isFinite(e)) return null;
    if (e <= now || this.#revoked.has(s)) return null;
    return { user: u, sid: s, exp: e };
  }

  /** Ends a session before its expiry (logout). */
  revoke(session: Session, now = Date.now()): void {
    if (this.#revoked.size >= MAX_REVOKED) {
      for (const [sid, exp] of this.#revoked) if (exp <= now) this.#revoked.delete(sid);
      while (this.#revoked.size >= MAX_REVOKED) this.#revoked.delete(this.#revoked.keys().next().value!);
    }
    this.#revoked.set(session.sid, session.exp);
  }
}
