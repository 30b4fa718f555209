/**
 * Failed logins, counted per client address and per user name in a sliding window: once either
 * reaches the limit, further attempts are refused (429 with Retry-After) without checking the
 * password, until the oldest failure leaves the window.
 */

export interface LoginRateLimit {
  /** Failed attempts allowed per client address, and per user name, within `windowSec`. @default 5 */
  attempts?: number;
  /** The window, in seconds. @default 60 */
  windowSec?: number;
}

/** Keys tracked at most; beyond it the least recently failed are dropped. */
const MAX_KEYS = 10_000;

export class LoginLimiter {
  readonly attempts: number;
  readonly windowMs: number;
  /** key -> times (ms) of its recent failures, oldest first. */
  readonly #failures = new Map<string, number[]>();

  constructor(opts: LoginRateLimit = {}) {
    this.attempts = opts.attempts ?? 5;
    this.windowMs = (opts.windowSec ?? 60) * 1000;
  }

  #recent(key: string, now: number): number[] {
    const list = this.#failures.get(key);
    if (!list) return [];
    while (list.length && list[0]! <= now - this.windowMs) list.shift();
    if (list.length === 0) this.#failures.delete(key);
    return list;
  }

  /** Seconds until any of `keys` may try again; 0 when all may. */
  retryAfter(keys: readonly string[], now = Date.now()): number {
    let wait = 0;
    for (const k of keys) {
      const list = this.#recent(k, now);
      if (list.length >= this.attempts) wait = Math.max(wait, list[list.length - this.attempts]! + this.windowMs - now);
    }
    return wait > 0 ? Math.max(1, Math.ceil(wait / 1000)) : 0;
  }

  /** Records a failed attempt under every key. */
  fail(keys: readonly string[], now = Date.now()): void {
    for (const k of keys) {
      const list = this.#recent(k, now);
      list.push(now);
      // Re-inserted so the map's order is least recently failed first.
      this.#failures.delete(k);
      this.#failures.set(k, list.slice(-this.attempts));
    }
    while (this.#failures.size > MAX_KEYS) this.#failures.delete(this.#failures.keys().next().value!);
  }

  /** A successful login forgets the failures of its user name (not of its address). */
  succeed(userKey: string): void {
    this.#failures.delete(userKey);
  }
}
