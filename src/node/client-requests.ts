/**
 * What a node does with each message of an authenticated client: set up and close computations
 * (computations.ts), accept, cancel and list jobs (node-scheduler.ts), receive files
 * (host/file-store.ts), and give a returning client (`resume`) or a later program (`recover`) the
 * results kept for it (result-outbox.ts, undelivered-store.ts).
 */
import { DispyError, Errors, type DispyErrorCode } from '../errors.js';
import { FileStore } from '../host/file-store.js';
import type { ClientMessage } from '../protocol/messages.js';
import type { ClientChannel, NodeContext } from './node-context.js';
import type { NodeJob } from './node-scheduler.js';
import type { ServedClient } from './served-client.js';
import { keepJobCode } from './job-code.js';

type Msg<T extends ClientMessage['t']> = Extract<ClientMessage, { t: T }>;

export class ClientRequests {
  readonly #ctx: NodeContext;

  constructor(ctx: NodeContext) {
    this.#ctx = ctx;
  }

  #ownerOf(clientId: string): ServedClient | null {
    const owner = this.#ctx.owner;
    return owner && owner.clientId === clientId ? owner : null;
  }

  /** Every message but `beat` (the connection's silence watch takes those). */
  onMessage(ch: ClientChannel, clientId: string, msg: ClientMessage): void {
    const ctx = this.#ctx;
    switch (msg.t) {
      case 'jobs': {
        const owner = this.#ownerOf(clientId);
        const uids = owner
          ? [...owner.jobs.values()].filter((j) => j.comp.id === msg.computeId && j.state === 'running').map((j) => j.uid)
          : [];
        ch.send({ t: 'reply', rid: msg.rid, ok: true, uids });
        return;
      }
      case 'ping':
        ch.send({ t: 'reply', rid: msg.rid, ok: true });
        return;
      case 'beat':
        return;
      case 'resume':
        this.#resume(ch, clientId, msg);
        return;
      case 'recover':
        this.#recover(ch, clientId, msg);
        return;
      case 'setup':
        void ctx.computations.setup(ch, clientId, msg);
        return;
      case 'job':
        this.#job(ch, clientId, msg);
        if (msg.files.length) this.#jobFiles(clientId, msg);
        return;
      case 'file-begin':
      case 'file-chunk':
        this.#onFile(ch, clientId, msg);
        return;
      case 'cancel':
        this.cancel(clientId, msg.uid, msg.grace);
        return;
      case 'job-file-ack':
        this.#ctx.fileRelay.ack(msg);
        return;
      case 'close': {
        const owner = this.#ownerOf(clientId);
        const comp = owner?.comps.get(msg.computeId);
        if (!owner || !comp) {
          ch.send({ t: 'reply', rid: msg.rid, ok: true });
          return;
        }
        void ctx.computations.close(owner, comp, msg.terminate).then(() => {
          ch.send({ t: 'reply', rid: msg.rid, ok: true });
        });
        return;
      }
      case 'set-cpus':
        ctx.computations.setCpus(ch, this.#ownerOf(clientId), msg);
        return;
    }
  }

  #job(ch: ClientChannel, clientId: string, msg: Msg<'job'>): void {
    const ctx = this.#ctx;
    const owner = this.#ownerOf(clientId);
    const comp = owner?.comps.get(msg.computeId);
    if (!owner || !comp || comp.closing) {
      ch.send({
        t: 'nak',
        uid: msg.uid,
        reason: 'unknown-computation',
        message: `computation ${msg.computeId} is not set up on ${ctx.host}`,
      });
      return;
    }
    if (ctx.stopping) {
      ch.send({ t: 'nak', uid: msg.uid, reason: 'shutdown', message: Errors.nodeShuttingDown(ctx.host).message });
      return;
    }
    if (ctx.draining) {
      ch.send({ t: 'nak', uid: msg.uid, reason: 'draining', message: `node ${ctx.host} is draining: it starts no job until it resumes` });
      return;
    }
    if (ctx.scheduler.full(ctx.cpus) || owner.jobs.has(msg.uid)) {
      ch.send({ t: 'nak', uid: msg.uid, reason: 'full', message: `all CPUs of ${ctx.host} are busy` });
      return;
    }
    let end!: () => void;
    const ended = new Promise<void>((r) => (end = r));
    const job: NodeJob = {
      uid: msg.uid,
      comp,
      args: msg.args,
      channel: ch,
      state: 'queued',
      runner: null,
      startTime: 0,
      cancelRequested: false,
      rebalancing: false,
      maxRuntime: msg.maxRuntime,
      timer: null,
      tag: msg.tag,
      ended,
      end,
    };
    owner.jobs.set(job.uid, job);
    // The job's own functions travel to its runner with its arguments (job-code.ts).
    keepJobCode(msg.args, msg.depends);
    ctx.scheduler.submit(job);
  }

  /** The client cancels job `uid` (or gave it up). */
  cancel(clientId: string, uid: number, grace?: number): void {
    const job = this.#ownerOf(clientId)?.jobs.get(uid);
    if (job) this.#ctx.scheduler.cancel(job, grace);
  }

  /**
   * file-begin / file-chunk: answered with the bytes of the file the node has. Files may come
   * before the computation's setup (they are staged for it) but not while another client owns
   * the node.
   */
  #onFile(ch: ClientChannel, clientId: string, msg: Msg<'file-begin' | 'file-chunk'>): void {
    const ctx = this.#ctx;
    const fail = (code: DispyErrorCode, message: string): void => {
      ch.send({ t: 'reply', rid: msg.rid, ok: false, error: { code, message } });
    };
    if (ctx.stopping) {
      fail('DISPY_ERR_CONNECTION', Errors.nodeShuttingDown(ctx.host).message);
      return;
    }
    if (ctx.owner && ctx.owner.clientId !== clientId) {
      fail(
        'DISPY_ERR_NODE_BUSY',
        `node ${ctx.host} (${ctx.name}) is serving another client since ${new Date(ctx.owner.since).toISOString()}`,
      );
      return;
    }
    if (ctx.owner?.comps.get(msg.computeId)?.closing) {
      fail('DISPY_ERR_BAD_REQUEST', `computation ${msg.computeId} is closing`);
      return;
    }
    const files = ctx.files;
    const done = msg.t === 'file-begin' ? files.begin(clientId, FileStore.clientAddr(ch.peer), msg) : files.chunk(clientId, msg);
    done.then(
      (offset) => ch.send({ t: 'reply', rid: msg.rid, ok: true, offset }),
      (err: unknown) => {
        const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', `file \`${msg.name}\`: ${(err as Error).message}`);
        if (e.code !== 'DISPY_ERR_FILE_TOO_LARGE')
          ctx.log.warn({ peer: ch.peer, name: msg.name, code: e.code, reason: e.message }, 'file transfer refused');
        else ctx.log.info({ peer: ch.peer, name: msg.name, reason: e.message }, 'file transfer refused');
        fail(e.code, e.message);
      },
    );
  }

  /** A job's per-job files are deleted once it ended (at once if it was refused). */
  #jobFiles(clientId: string, msg: Msg<'job'>): void {
    const release = (): void => this.#ctx.files.jobEnded(clientId, msg.computeId, msg.uid, msg.files);
    const job = this.#ownerOf(clientId)?.jobs.get(msg.uid);
    if (job && job.comp.id === msg.computeId && job.args === msg.args) void job.ended.then(release);
    else release();
  }

  /** A client that reconnected names the jobs it still waits for; see `resumeSchema`. */
  #resume(ch: ClientChannel, clientId: string, msg: Msg<'resume'>): void {
    const ctx = this.#ctx;
    const wanted = new Set(msg.uids);
    const owner = this.#ownerOf(clientId);
    const uids: number[] = [];
    for (const job of [...(owner?.jobs.values() ?? [])]) {
      if (job.comp.id !== msg.computeId) continue;
      if (wanted.has(job.uid)) {
        job.channel = ch;
        uids.push(job.uid);
      } else {
        // An attempt the client gave up on (it declared this node dead meanwhile).
        this.cancel(clientId, job.uid);
      }
    }
    const results = ctx.undelivered.take(msg.computeId, wanted);
    const forgotten = ctx.undelivered.forget(msg.computeId);
    ctx.log.info(
      { clientId, computeId: msg.computeId, running: uids.length, delivered: results.length, forgotten },
      'client resumed its jobs',
    );
    // What does not fit in the reply follows as ordinary results (the client waits for them).
    const { fit, rest } = ctx.outbox.budget(results, uids.length * 9);
    ch.send({ t: 'reply', rid: msg.rid, ok: true, uids, results: fit });
    for (const r of rest) {
      ch.send(r);
      ctx.undelivered.sent(msg.computeId, r);
    }
  }

  /**
   * `recoverJobs`: the results of a computation whose client program is gone. Refused while
   * that client is connected (its results reach it directly).
   */
  #recover(ch: ClientChannel, clientId: string, msg: Msg<'recover'>): void {
    const ctx = this.#ctx;
    const owner = ctx.owner;
    const comp = owner?.comps.get(msg.computeId);
    if (owner && comp && owner.clientId !== clientId && [...owner.channels].some((c) => !c.closed)) {
      ch.send({
        t: 'reply',
        rid: msg.rid,
        ok: false,
        error: { code: 'DISPY_ERR_FORBIDDEN', message: `computation ${msg.computeId} on ${ctx.host} still has its client connected` },
      });
      return;
    }
    const pending: number[] = [];
    if (owner && comp) {
      for (const job of [...owner.jobs.values()]) {
        if (job.comp !== comp) continue;
        pending.push(job.uid);
        if (msg.terminate) this.cancel(owner.clientId, job.uid);
      }
      // Nobody will use the computation again (its program is gone): the node is free once its
      // jobs ended.
      if ((msg.terminate || pending.length === 0) && !comp.closing) void ctx.computations.close(owner, comp, true);
    }
    const results = ctx.undelivered.take(msg.computeId, null);
    // What does not fit in the reply is kept and counted as pending: recoverJobs asks again.
    const { fit, rest } = ctx.outbox.budget(results, pending.length * 9);
    for (const r of rest) {
      ctx.undelivered.keep(msg.computeId, r);
      pending.push(r.uid);
    }
    ctx.log.info(
      { peer: ch.peer, computeId: msg.computeId, results: fit.length, pending: pending.length, terminate: msg.terminate },
      'results recovered',
    );
    ch.send({ t: 'reply', rid: msg.rid, ok: true, uids: pending, results: fit });
  }
}
