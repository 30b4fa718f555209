/**
 * The node's computation registry: a client's `setup` (the computation's files adopted, loaded in
 * the runners of its program, its setup run), its CPU cap (`set-cpus`), and closing it (jobs not
 * started go back to the client, running ones are terminated or waited for, its runners run the
 * cleanup, its program's runners are retired once it was the program's last one here).
 */
import { DispyError, Errors, type DispyErrorCode } from '../errors.js';
import { FileStore } from '../host/file-store.js';
import type { ClientMessage, Computation } from '../protocol/messages.js';
import type { ClientChannel, NodeContext } from './node-context.js';
import { ServedClient } from './served-client.js';

/** A computation set up on the node. */
export interface Comp {
  id: string;
  cluster: string;
  computation: Computation;
  dir: string;
  /** The client program it belongs to (its runners serve no other program). */
  program: string;
  /** Each job in a fresh runner process. */
  isolate: boolean;
  /** Closing with its jobs terminated: a job of it that starts meanwhile is killed too. */
  terminating: boolean;
  /** Cap on running jobs (the node's cpus when 0). */
  cap: number;
  /** Jobs handed to runners (running or queued in them). */
  running: number;
  queued: number;
  /** Running average of job wall time, ms. */
  avgMs: number;
  pulseInterval: number;
  /** Seconds its client may be away before it is closed (see ServedClient). */
  reconnectWindow: number;
  /** Its client keeps a recover file: its running jobs outlive the window (up to the zombie interval). */
  recoverable: boolean;
  closing: boolean;
  closeWaiters: (() => void)[];
}

/** A computation's jobs all ended: whoever waits to close it goes on. */
export function compSettled(comp: Comp): void {
  if (comp.running === 0 && comp.queued === 0 && comp.closeWaiters.length) {
    const waiters = comp.closeWaiters;
    comp.closeWaiters = [];
    for (const w of waiters) w();
  }
}

export class Computations {
  readonly #ctx: NodeContext;

  constructor(ctx: NodeContext) {
    this.#ctx = ctx;
  }

  async setup(ch: ClientChannel, clientId: string, msg: Extract<ClientMessage, { t: 'setup' }>): Promise<void> {
    const ctx = this.#ctx;
    const fail = (code: DispyErrorCode, message: string): void => {
      ch.send({ t: 'reply', rid: msg.rid, ok: false, error: { code, message } });
    };
    if (ctx.stopping) return fail('DISPY_ERR_CONNECTION', Errors.nodeShuttingDown(ctx.host).message);
    if (ctx.draining && ctx.owner?.clientId !== clientId)
      return fail('DISPY_ERR_NODE_BUSY', `node ${ctx.host} (${ctx.name}) is draining: it takes no new client`);
    if (ctx.owner && ctx.owner.clientId !== clientId) {
      return fail(
        'DISPY_ERR_NODE_BUSY',
        `node ${ctx.host} (${ctx.name}) is serving another client since ${new Date(ctx.owner.since).toISOString()}`,
      );
    }
    if (!ctx.owner) {
      ctx.owner = new ServedClient(ctx, clientId);
      ctx.log.info({ clientId, peer: ch.peer }, 'serving a new client');
    }
    const owner = ctx.owner;
    if (owner.attach(ch)) ctx.scheduler.schedule();
    const existing = owner.comps.get(msg.computeId);
    if (existing && !existing.closing) {
      // The client reconnected: its computation is still here.
      existing.cap = Math.min(msg.cpus || ctx.cpus, ctx.cpus);
      existing.reconnectWindow = msg.reconnectWindow;
      existing.recoverable = msg.recoverable;
      ch.send({ t: 'reply', rid: msg.rid, ok: true, cpus: existing.cap });
      ctx.scheduler.schedule();
      return;
    }
    if (existing) return fail('DISPY_ERR_BAD_REQUEST', `computation ${msg.computeId} is closing`);
    let dir: string;
    try {
      dir = ctx.files.adopt(clientId, msg.computeId, FileStore.clientAddr(ch.peer), msg.destPath, msg.cleanupFiles);
    } catch (err) {
      if (owner.comps.size === 0 && owner.jobs.size === 0 && ctx.owner === owner) ctx.owner = null;
      return fail(err instanceof DispyError ? err.code : 'DISPY_ERR_INTERNAL', (err as Error).message);
    }
    const comp: Comp = {
      id: msg.computeId,
      cluster: msg.cluster,
      computation: msg.computation,
      dir,
      // A scheduler serves several programs: each gets runners of its own.
      program: msg.program === null ? clientId : `${clientId}/${msg.program}`,
      isolate: msg.isolate === 'job',
      terminating: false,
      cap: Math.min(msg.cpus || ctx.cpus, ctx.cpus),
      running: 0,
      queued: 0,
      avgMs: Infinity,
      pulseInterval: msg.pulseInterval,
      reconnectWindow: msg.reconnectWindow,
      recoverable: msg.recoverable,
      closing: false,
      closeWaiters: [],
    };
    owner.comps.set(comp.id, comp);
    const setupArgs = msg.setupArgs
      ? Buffer.from(msg.setupArgs.buffer, msg.setupArgs.byteOffset, msg.setupArgs.byteLength).toString('base64')
      : null;
    // Its shared store, and its per-node setup before any runner loads it (node-extras.ts).
    ctx.extras.store.open(comp.id, comp.program);
    const node = msg.nodeSetup
      ? await ctx.extras.nodeSetup.run({
          computeId: comp.id,
          placement: { program: comp.program, isolate: comp.isolate },
          computation: comp.computation,
          dir,
          nodeSetup: msg.nodeSetup,
          setupArgs,
          nodeName: ctx.name,
          nodeIpAddr: ctx.host,
        })
      : null;
    if (node?.error || comp.closing) {
      const e = node?.error ?? { code: 'DISPY_ERR_BAD_REQUEST', message: `computation ${comp.id} is closing` };
      ctx.log.warn({ cluster: comp.cluster, computeId: comp.id, error: e.message }, 'per-node setup failed');
      if (!comp.closing) await this.close(owner, comp, true);
      return fail(e.code, e.message);
    }
    const error = await ctx.pool.load(
      comp.id,
      {
        computation: comp.computation,
        dir,
        setup: msg.setup,
        cleanup: msg.cleanup,
        setupArgs,
        nodeValue: node?.value ?? null,
      },
      { program: comp.program, isolate: comp.isolate },
    );
    if (error) {
      ctx.log.warn({ cluster: comp.cluster, computeId: comp.id, error: error.message }, 'computation failed to load');
      await this.close(owner, comp, true);
      return fail(error.code, error.message);
    }
    ctx.log.info({ cluster: comp.cluster, computeId: comp.id, cap: comp.cap }, 'computation set up');
    ctx.armPulse();
    ch.send({ t: 'reply', rid: msg.rid, ok: true, cpus: comp.cap });
  }

  /** `set-cpus`: a new cap on the computation's running jobs (at most the node's CPUs). */
  setCpus(ch: ClientChannel, owner: ServedClient | null, msg: Extract<ClientMessage, { t: 'set-cpus' }>): void {
    const ctx = this.#ctx;
    const comp = owner?.comps.get(msg.computeId);
    if (!comp) {
      ch.send({
        t: 'reply',
        rid: msg.rid,
        ok: false,
        error: { code: 'DISPY_ERR_UNKNOWN_COMPUTATION', message: `computation ${msg.computeId} is not set up on ${ctx.host}` },
      });
      return;
    }
    comp.cap = Math.min(msg.cpus, ctx.cpus);
    ch.send({ t: 'reply', rid: msg.rid, ok: true, cpus: comp.cap });
    ctx.scheduler.reclaim(comp);
    ctx.scheduler.schedule();
  }

  /** A runner started later could not set up a computation the others have: it is closed. */
  loadFailed(computeId: string, error: { code: DispyErrorCode; message: string }): void {
    const ctx = this.#ctx;
    const owner = ctx.owner;
    const comp = owner?.comps.get(computeId);
    if (!owner || !comp || comp.closing) return;
    ctx.log.warn({ computeId, error: error.message }, 'a new runner could not set up the computation; closing it');
    void this.close(owner, comp, true).then(() => {
      for (const ch of owner.channels) ch.send({ t: 'closed', computeId, reason: error.message });
    });
  }

  /**
   * Closes a computation. Jobs that have not started go back to the client (it runs them
   * elsewhere, or cancels them if its cluster is closing); running ones are terminated, or
   * waited for.
   */
  async close(owner: ServedClient, comp: Comp, terminate: boolean): Promise<void> {
    const ctx = this.#ctx;
    comp.closing = true;
    if (terminate) comp.terminating = true;
    ctx.scheduler.close(comp, owner.jobs.values(), terminate);
    if (comp.running > 0 || comp.queued > 0) await new Promise<void>((r) => comp.closeWaiters.push(r));
    if (owner.comps.get(comp.id) !== comp) return;
    owner.comps.delete(comp.id);
    await ctx.pool.unload(comp.id);
    ctx.extras.store.drop(comp.id);
    ctx.files.close(owner.clientId, comp.id);
    ctx.log.info({ cluster: comp.cluster, computeId: comp.id }, 'computation closed');
    // Its program's last computation here: that program's runners are retired.
    if (![...owner.comps.values()].some((c) => c.program === comp.program)) ctx.pool.retireProgram(comp.program);
    if (owner.comps.size === 0 && owner.jobs.size === 0 && ctx.owner === owner) ctx.release(owner);
  }
}
