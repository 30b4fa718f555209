/**
 * The client program a node serves (one at a time): its connections, computations and jobs, and
 * the client-gone rule. When its last connection closes, each computation is closed at the end
 * of its reconnect window (never beyond the zombie interval) unless the client returns, so the
 * node serves the next client; a returning connection (same client id) takes its jobs back.
 */
import type { Comp } from './computations.js';
import type { ClientChannel, NodeContext } from './node-context.js';
import type { NodeJob } from './node-scheduler.js';

export class ServedClient {
  readonly clientId: string;
  readonly channels = new Set<ClientChannel>();
  readonly comps = new Map<string, Comp>();
  readonly jobs = new Map<number, NodeJob>();
  /** ms since epoch when the node started serving it. */
  readonly since = Date.now();
  #zombieTimer: NodeJS.Timeout | null = null;
  /** ms since epoch when its last connection closed (null while it has one). */
  #goneSince: number | null = null;
  /** Fires at the end of the next computation's reconnect window while the client is away. */
  #goneTimer: NodeJS.Timeout | null = null;
  readonly #ctx: NodeContext;

  constructor(ctx: NodeContext, clientId: string) {
    this.#ctx = ctx;
    this.clientId = clientId;
  }

  /** A connection of this client (a new one, or one that returned); true if it was away. */
  attach(ch: ClientChannel): boolean {
    const wasAway = this.channels.size === 0;
    this.channels.add(ch);
    if (this.#zombieTimer) {
      clearTimeout(this.#zombieTimer);
      this.#zombieTimer = null;
    }
    if (this.#goneTimer) clearTimeout(this.#goneTimer);
    this.#goneTimer = null;
    this.#goneSince = null;
    return wasAway;
  }

  /** A connection of it closed; its last one starts the client-gone countdowns. */
  detach(ch: ClientChannel): void {
    const ctx = this.#ctx;
    this.channels.delete(ch);
    if (this.channels.size > 0 || ctx.stopping) return;
    const zombie = ctx.opts.zombieInterval ?? 3600;
    ctx.log.info(
      { clientId: this.clientId, zombieInterval: zombie, reconnectWindow: [...this.comps.values()].map((c) => c.reconnectWindow) },
      'client gone; its jobs are terminated if it does not return within its reconnect window',
    );
    this.#zombieTimer = setTimeout(() => this.#reapZombie(), zombie * 1000);
    this.#zombieTimer.unref();
    this.#goneSince = Date.now();
    // A computation whose client is away starts no new job: those queued in runners come back.
    for (const comp of this.comps.values()) ctx.scheduler.reclaim(comp);
    this.#armGone();
  }

  /** The node is done with it: its timers stop. */
  release(): void {
    if (this.#zombieTimer) clearTimeout(this.#zombieTimer);
    if (this.#goneTimer) clearTimeout(this.#goneTimer);
  }

  /**
   * The client-gone rule: each computation of a client that has no open connection is closed at
   * the end of its reconnect window (never beyond the zombie interval), so the node serves the
   * next client. A plain one drops its queued jobs, terminates its running ones and forgets the
   * results kept for it; a recoverable one (its program keeps a recover file) lets its running
   * jobs finish, keeping their results for recoverJobs, until the zombie interval ends them.
   */
  #armGone(): void {
    const ctx = this.#ctx;
    if (this.#goneTimer) clearTimeout(this.#goneTimer);
    this.#goneTimer = null;
    if (ctx.owner !== this || this.#goneSince === null || this.channels.size > 0 || ctx.stopping) return;
    const zombie = ctx.opts.zombieInterval ?? 3600;
    const now = Date.now();
    let next = Infinity;
    for (const comp of [...this.comps.values()]) {
      if (comp.closing) continue;
      const at = this.#goneSince + Math.min(comp.reconnectWindow, zombie) * 1000;
      if (at <= now) this.#away(comp);
      else next = Math.min(next, at);
    }
    if (next === Infinity) return;
    this.#goneTimer = setTimeout(() => this.#armGone(), next - now);
    this.#goneTimer.unref();
  }

  #away(comp: Comp): void {
    const ctx = this.#ctx;
    const jobs = [...this.jobs.values()].filter((j) => j.comp === comp).length;
    ctx.log.warn(
      { clientId: this.clientId, computeId: comp.id, cluster: comp.cluster, jobs, recoverable: comp.recoverable },
      comp.recoverable
        ? 'client did not return within its reconnect window: its running jobs go on for recoverJobs, queued ones are dropped'
        : 'client did not return: terminating its jobs',
    );
    if (comp.recoverable) {
      void ctx.computations.close(this, comp, false);
      return;
    }
    void ctx.computations.close(this, comp, true).then(() => {
      // Nobody will ask for them: the client gave them up at the end of the same window.
      ctx.undelivered.forget(comp.id);
    });
  }

  #reapZombie(): void {
    const ctx = this.#ctx;
    if (ctx.owner !== this || this.channels.size > 0) return;
    ctx.log.warn({ clientId: this.clientId, jobs: this.jobs.size }, 'client did not return: terminating its jobs');
    for (const comp of [...this.comps.values()]) void ctx.computations.close(this, comp, true);
  }
}
