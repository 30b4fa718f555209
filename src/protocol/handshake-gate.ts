/**
 * Caps the connections a daemon (node or scheduler) holds before they authenticate: at most
 * `max` at once, and `perPeer` from one address. A stranger who does not know the secret can
 * then hold only a bounded number of small handshakes (each frame before authentication is at
 * most 4 KiB, see channel.ts), never the daemon's memory. Refused connections are closed at
 * once and logged at most once per peer address per `logIntervalSec`.
 */
import type net from 'node:net';
import type { Logger } from 'pino';
import { invalidOption } from '../errors.js';
import { MAX_HANDSHAKES, MAX_HANDSHAKES_PER_PEER } from './constants.js';

export interface HandshakeGateOptions {
  /**
   * Connections in their handshake at once, from all peers.
   * @default 64
   */
  max?: number;
  /**
   * Connections in their handshake at once from one peer address.
   * @default 8
   */
  perPeer?: number;
  /**
   * Seconds between two log lines about refused connections of one peer.
   * @default 60
   */
  logIntervalSec?: number;
  log: Logger;
  /** What the log calls the daemon ('node', 'scheduler'). */
  what: string;
}

/** Peers whose refusals are remembered for throttled logging, at most. */
const MAX_REMEMBERED = 1024;

/** Checks a cap given as an option: a positive integer. */
export function checkHandshakeCaps(o: { maxHandshakes?: number; maxHandshakesPerPeer?: number }): void {
  for (const k of ['maxHandshakes', 'maxHandshakesPerPeer'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isInteger(v) && v >= 1 && v <= 1_000_000)) throw invalidOption(k, 'an integer from 1 to 1000000', v);
  }
}

export class HandshakeGate {
  readonly max: number;
  readonly perPeer: number;
  readonly #logEvery: number;
  readonly #log: Logger;
  readonly #what: string;
  #total = 0;
  readonly #byPeer = new Map<string, number>();
  /** Per peer: when a refusal was last logged, and refusals since then not logged. */
  readonly #refusals = new Map<string, { at: number; unlogged: number }>();

  constructor(opts: HandshakeGateOptions) {
    this.max = opts.max ?? MAX_HANDSHAKES;
    this.perPeer = opts.perPeer ?? MAX_HANDSHAKES_PER_PEER;
    this.#logEvery = (opts.logIntervalSec ?? 60) * 1000;
    this.#log = opts.log;
    this.#what = opts.what;
  }

  /** Connections in their handshake now. */
  get pending(): number {
    return this.#total;
  }

  /**
   * Admits a new connection: returns the function to call once it authenticated (or closed;
   * calling it twice is harmless), or null after destroying a connection over a cap.
   */
  admit(socket: net.Socket): (() => void) | null {
    const peer = (socket.remoteAddress ?? '?').replace(/^::ffff:/, '');
    const mine = this.#byPeer.get(peer) ?? 0;
    if (this.#total >= this.max || mine >= this.perPeer) {
      socket.destroy();
      this.#refused(peer, mine >= this.perPeer ? `${mine} from this address` : `${this.#total} in all`);
      return null;
    }
    this.#total++;
    this.#byPeer.set(peer, mine + 1);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#total--;
      const n = (this.#byPeer.get(peer) ?? 1) - 1;
      if (n > 0) this.#byPeer.set(peer, n);
      else this.#byPeer.delete(peer);
    };
    socket.once('close', release);
    return release;
  }

  #refused(peer: string, why: string): void {
    const now = Date.now();
    const r = this.#refusals.get(peer);
    if (r && now - r.at < this.#logEvery) {
      r.unlogged++;
      return;
    }
    this.#refusals.delete(peer);
    this.#refusals.set(peer, { at: now, unlogged: 0 });
    if (this.#refusals.size > MAX_REMEMBERED) this.#refusals.delete(this.#refusals.keys().next().value!);
    this.#log.warn(
      {
        peer,
        code: 'DISPY_ERR_TOO_MANY_REQUESTS',
        unauthenticated: this.#total,
        max: this.max,
        perPeer: this.perPeer,
        ...(r?.unlogged ? { refusedSinceLastLog: r.unlogged } : {}),
      },
      `too many connections not yet authenticated (${why}): connection refused (logged once per address every ${this.#logEvery / 1000} s)`,
    );
  }
}
