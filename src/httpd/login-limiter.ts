/**
 * Failed sign-ins, counted per (client address, user name) and per client address, never per
 * name alone: an attacker elsewhere cannot lock a user out, and the right password from a clean
 * address always works. Beyond the free attempts each further failure doubles the wait before
 * the next attempt from there (1 s, 2 s, 4 s, … up to `maxDelaySec`): a delay that grows, not a
 * lock. A key's failures are forgotten once it has been quiet for `windowSec` after its wait.
 */

export interface LoginRateLimit {
  /** Failed attempts allowed per (client address, user name) before the waits begin. @default 5 */
  attempts?: number;
  /** Failed attempts allowed per client address, whatever the names, before the waits begin. @default 4 × attempts */
  attemptsPerAddress?: number;
  /** Quiet seconds (after the last wait) that forget a key's failures. @default 60 */
  windowSec?: number;
  /** The longest wait, in seconds. @default 300 */
  maxDelaySec?: number;
}

/** Keys tracked at most; beyond it the least recently failed are dropped. */
const MAX_KEYS = 10_000;

interface Failures {
  count: number;
  /** ms of the latest failure. */
  last: number;
}

/** The rate-limit keys of a sign-in by `user` from `address`. */
export interface LimitKeys {
  pair: string;
  address: string;
}

export class LoginLimiter {
  readonly attempts: number;
  readonly attemptsPerAddress: number;
  readonly windowMs: number;
  readonly maxDelayMs: number;
  readonly #failures = new Map<string, Failures>();

  constructor(opts: LoginRateLimit = {}) {
    this.attempts = opts.attempts ?? 5;
    this.attemptsPerAddress = opts.attemptsPerAddress ?? 4 * this.attempts;
    this.windowMs = (opts.windowSec ?? 60) * 1000;
    this.maxDelayMs = (opts.maxDelaySec ?? 300) * 1000;
  }

  /** The keys of a sign-in by `user` from `address`. */
  static keys(address: string | undefined, user: string): LimitKeys {
    const a = address ?? '?';
    return { pair: `pair:${a}|${user.slice(0, 64)}`, address: `addr:${a}` };
  }

  /** ms to wait after the latest of `count` failures, given `free` free ones. */
  #delay(count: number, free: number): number {
    if (count < free) return 0;
    return Math.min(this.maxDelayMs, 1000 * 2 ** Math.min(30, count - free));
  }

  #get(key: string, free: number, now: number): Failures | null {
    const f = this.#failures.get(key);
    if (!f) return null;
    if (now - f.last > this.#delay(f.count, free) + this.windowMs) {
      this.#failures.delete(key);
      return null;
    }
    return f;
  }

  #wait(key: string, free: number, now: number): number {
    const f = this.#get(key, free, now);
    return f ? Math.max(0, f.last + this.#delay(f.count, free) - now) : 0;
  }

  /** Seconds until a sign-in with these keys may be tried; 0 when it may now. */
  retryAfter(keys: LimitKeys, now = Date.now()): number {
    const wait = Math.max(this.#wait(keys.pair, this.attempts, now), this.#wait(keys.address, this.attemptsPerAddress, now));
    return wait > 0 ? Math.max(1, Math.ceil(wait / 1000)) : 0;
  }

  /** Records a failed attempt under both keys. */
  fail(keys: LimitKeys, now = Date.now()): void {
    for (const [k, free] of [
      [keys.pair, this.attempts],
      [keys.address, this.attemptsPerAddress],
    ] as const) {
      const f = this.#get(k, free, now) ?? { count: 0, last: now };
      f.count++;
      f.last = now;
      // Re-inserted so the map's order is least recently failed first.
      this.#failures.delete(k);
      this.#failures.set(k, f);
    }
    while (this.#failures.size > MAX_KEYS) this.#failures.delete(this.#failures.keys().next().value!);
  }

  /**
   * A successful sign-in forgets the failures of its (address, name) pair, not those of its
   * address (an attacker holding one account must not clear its address by signing in).
   */
  succeed(keys: LimitKeys): void {
    this.#failures.delete(keys.pair);
  }
}
