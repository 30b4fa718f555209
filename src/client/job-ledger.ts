/**
 * A JobCluster's job ledger: where each pending job is (queued, queued apart for its size,
 * pinned to a node, or sent as an attempt to a node) and the rules that move it when something
 * goes wrong: a job handed back or lost unstarted is queued again at the front (given up after
 * MAX_SEND_ATTEMPTS losses), a running one lost with its node re-runs only when the cluster is
 * reentrant, and a job whose cancel was asked for runs nowhere again. Pure bookkeeping (no I/O,
 * no timers, no events): the cluster carries out what the ledger decides, and
 * test/job-ledger.test.ts checks the rules without a daemon.
 */
import { Deque } from './deque.js';
import type { DispyJob } from './dispy-job.js';

/**
 * Times a job may be sent and lost unstarted with its connection before it is given up
 * (Abandoned, DISPY_ERR_UNDELIVERABLE): a job the connection breaks on is never re-sent forever.
 */
export const MAX_SEND_ATTEMPTS = 5;

/** A job waiting to be sent: the job, its encoded arguments, its own maxRuntime if any. */
export interface Queued {
  job: DispyJob;
  args: Uint8Array;
  /** Per-job override of the cluster's maxRuntime (seconds). */
  maxRuntime?: number;
}

/** One attempt of a job, sent to node `cn` under its own wire id. */
export interface Sent<N> extends Queued {
  cn: N;
  started: boolean;
  pinned: boolean;
}

/**
 * What becomes of a job its node lost or handed back:
 * - `requeue`: queued again at the front (of its node's queue when pinned);
 * - `rerun`: it ran, the cluster is reentrant: queued again at the front, Created again;
 * - `cancel`: its cancel was asked for, or the cluster is closing: it ends Cancelled;
 * - `give-up`: lost unstarted MAX_SEND_ATTEMPTS times: it ends Abandoned (DISPY_ERR_UNDELIVERABLE);
 * - `abandon`: it ran and is not re-run: it ends Abandoned.
 */
export type Outcome = 'requeue' | 'rerun' | 'cancel' | 'give-up' | 'abandon';

/** How the job came back: `lost` with a broken connection (counted), or handed back (closeNode, nak). */
export interface Loss {
  lost: boolean;
  reentrant: boolean;
  closing: boolean;
}

/** A sent job back to its queued form (everything but where it was sent). */
export function queuedPart<N>(s: Sent<N>): Queued {
  const { cn, started, pinned, ...item } = s;
  void cn;
  void started;
  void pinned;
  return item;
}

export class JobLedger<N> {
  /** Jobs in submission order (front: re-queued ones). */
  readonly queue = new Deque<Queued>();
  /** Jobs larger than a node with room takes: they go, first, to a node that takes them. */
  readonly large = new Deque<Queued>();
  /** Jobs that run only on one node, by its address. */
  readonly pinned = new Map<string, Deque<Queued>>();
  /** Attempts on nodes, by wire id. */
  readonly sent = new Map<number, Sent<N>>();
  /** Jobs whose cancel was asked for while they were on a node. */
  readonly #cancelRequested = new WeakSet<DispyJob>();
  /** Per job: sends lost unstarted with their connection so far. */
  readonly #lostSends = new WeakMap<DispyJob, number>();

  /** Queues a new job (at the back of its node's queue when pinned). */
  add(item: Queued, pinTo: string | null): void {
    if (pinTo) this.#pinnedQueue(pinTo).push(item);
    else this.queue.push(item);
  }

  /** Records an attempt of `item` on `cn` under wire id `uid`. */
  send(uid: number, item: Queued, cn: N, pinned: boolean): Sent<N> {
    const s: Sent<N> = { ...item, cn, started: false, pinned };
    this.sent.set(uid, s);
    return s;
  }

  /** The cancel of `job` was asked for while it was on a node: it runs nowhere again. */
  cancelRequested(job: DispyJob): void {
    this.#cancelRequested.add(job);
  }

  isCancelRequested(job: DispyJob): boolean {
    return this.#cancelRequested.has(job);
  }

  /**
   * The rule for an attempt its node lost (`loss.lost`) or handed back: what becomes of the job,
   * with the queues already changed for `requeue` and `rerun` (the attempt itself is the
   * caller's to remove from `sent`). `pinnedTo`: the address of the attempt's node.
   */
  lose(s: Sent<N>, pinnedTo: string, loss: Loss): Outcome {
    if (!s.started) {
      if (loss.lost && this.#countLost(s.job)) return 'give-up';
      return this.requeue(s, pinnedTo);
    }
    if (loss.reentrant && !s.pinned && !loss.closing && !this.#cancelRequested.has(s.job)) {
      this.queue.unshift(queuedPart(s));
      return 'rerun';
    }
    return 'abandon';
  }

  /** Queues a handed-back attempt again at the front, unless its cancel was asked for. */
  requeue(s: Sent<N>, pinnedTo: string): 'requeue' | 'cancel' {
    if (this.#cancelRequested.has(s.job)) return 'cancel';
    const item = queuedPart(s);
    if (s.pinned) this.#pinnedQueue(pinnedTo).unshift(item);
    else this.queue.unshift(item);
    return 'requeue';
  }

  /** Sends of `job` lost unstarted so far. */
  lostSends(job: DispyJob): number {
    return this.#lostSends.get(job) ?? 0;
  }

  /** Counts one more lost send; true once that makes MAX_SEND_ATTEMPTS (the job is given up). */
  #countLost(job: DispyJob): boolean {
    const n = (this.#lostSends.get(job) ?? 0) + 1;
    this.#lostSends.set(job, n);
    return n >= MAX_SEND_ATTEMPTS;
  }

  /** Counts one more lost send outside `lose` (a per-job file that could not be sent); true if given up. */
  countLostSend(job: DispyJob): boolean {
    return this.#countLost(job);
  }

  /** @internal Submission order (job uid) of the earliest queued job not yet ended, or null (the `fsfs` policy). */
  headOrder(): number | null {
    const q = this.queue;
    while (q.length && q.peek()!.job.settled) q.shift();
    let best = q.length ? q.peek()!.job._uid : null;
    const large = this.large.peek();
    if (large && !large.job.settled && (best === null || large.job._uid < best)) best = large.job._uid;
    for (const p of this.pinned.values()) {
      const head = p.peek();
      if (head && !head.job.settled && (best === null || head.job._uid < best)) best = head.job._uid;
    }
    return best;
  }

  /** Takes every queued job out (unpinned first, then those set apart, then pinned ones). */
  takeQueued(): Queued[] {
    const items = this.queue.clear();
    items.push(...this.large.clear());
    for (const q of this.pinned.values()) items.push(...q.clear());
    return items;
  }

  /** The attempts on node `cn`, with their wire ids. */
  attemptsOn(cn: N): [number, Sent<N>][] {
    const out: [number, Sent<N>][] = [];
    for (const e of this.sent) if (e[1].cn === cn) out.push(e);
    return out;
  }

  #pinnedQueue(ip: string): Deque<Queued> {
    let q = this.pinned.get(ip);
    if (!q) {
      q = new Deque();
      this.pinned.set(ip, q);
    }
    return q;
  }
}
