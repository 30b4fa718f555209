/**
 * The "missed beats" rule, written once for the four parties that watch a peer's heartbeats
 * (JobCluster its nodes, SharedJobCluster its scheduler, a node its client's connections, the
 * scheduler its clients): a peer silent for `MISSED_BEATS` of its heartbeat intervals is gone.
 * Except in a round the watcher's own timer fired late (its process was stopped or blocked): the
 * silence was then the watcher's, not the peers', so every peer counts as heard at that moment
 * and none is judged; each gets a fresh `MISSED_BEATS` intervals.
 */

/** A peer is gone after this many of its heartbeat intervals without a word. */
export const MISSED_BEATS = 5;

/** How long (ms) a peer beating every `everySeconds` may stay silent before it is gone. */
export function missedBeatsMs(everySeconds: number): number {
  return MISSED_BEATS * everySeconds * 1000;
}

/** A watched peer: when it was last heard (ms on the watch's clock), kept up by its owner. */
export interface Heard {
  lastHeard: number;
}

export interface SilenceWatchOptions {
  /** How often the owner runs a round (ms). A round more than 2 of these plus 1 s after the previous one ran late. */
  roundMs: number;
  /** The clock (ms). @default Date.now */
  now?: () => number;
}

export class SilenceWatch {
  readonly #lateAfterMs: number;
  readonly #now: () => number;
  #lastRound: number;

  constructor(opts: SilenceWatchOptions) {
    this.#lateAfterMs = 2 * opts.roundMs + 1000;
    this.#now = opts.now ?? Date.now;
    this.#lastRound = this.#now();
  }

  /** Starts counting rounds afresh (the owner (re)started its timer). */
  reset(): void {
    this.#lastRound = this.#now();
  }

  /**
   * One round over `peers`. On time: calls `rule.gone` for each peer silent longer than
   * `rule.limitMs(peer)` (Infinity: not judged) and returns null. Late: every peer counts as
   * heard now, none is judged, and the ms since the previous round are returned (for the log).
   */
  round<P>(peers: Iterable<P>, rule: SilenceRule<P>): number | null {
    const now = this.#now();
    const sinceLast = now - this.#lastRound;
    this.#lastRound = now;
    // `gone` may close a peer's connection, which may take it out of `peers`.
    const list = [...peers];
    if (sinceLast > this.#lateAfterMs) {
      for (const p of list) {
        const h = rule.heard(p);
        h.lastHeard = Math.max(h.lastHeard, now);
      }
      return sinceLast;
    }
    for (const p of list) {
      const silent = now - rule.heard(p).lastHeard;
      if (silent > rule.limitMs(p)) rule.gone(p, silent);
    }
    return null;
  }
}

/** How a round judges one kind of peer. */
export interface SilenceRule<P> {
  /** Where the peer's last-heard time is kept. */
  heard: (peer: P) => Heard;
  /** How long it may stay silent (ms); Infinity: not judged (closed, or not beating). */
  limitMs: (peer: P) => number;
  /** It stayed silent too long. */
  gone: (peer: P, silentMs: number) => void;
}
