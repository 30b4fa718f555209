/**
 * Where a result leaves the node: a job's messages to its client (started, provisional, done,
 * nak) go out here, on the connection that submitted it or another one of the same client. A
 * job's end is kept within the message size; a result whose client is away is kept in the
 * undelivered store (undelivered-store.ts) until the client resumes or `recoverJobs` asks, and a
 * job handed back that nobody can take back (a `nak` with no connection) is kept there as
 * Cancelled. Provisional results to a congested connection are held, the latest per job.
 */
import type { Logger } from 'pino';
import type { Channel } from '../protocol/channel.js';
import type { ClientMessage, JobDone, NodeMessage } from '../protocol/messages.js';
import type { NodeJob } from './node-scheduler.js';
import type { RunnerDone } from './runner-protocol.js';
import type { UndeliveredStore } from './undelivered-store.js';
import { Errors, jobException } from '../errors.js';

type ClientChannel = Channel<ClientMessage, NodeMessage>;
type Done = Extract<NodeMessage, { t: 'done' }>;

/** Bytes kept for the rest of a reply that carries results (ids, envelope). */
const REPLY_RESERVE = 64 * 1024;

/** Bytes a job's end takes in a message, roughly (its result, output and exception, plus the rest). */
export function doneSize(d: { result: Uint8Array | null; stdout: string; stderr: string; exception: string | null }): number {
  return (
    (d.result?.byteLength ?? 0) + Buffer.byteLength(d.stdout) + Buffer.byteLength(d.stderr) + Buffer.byteLength(d.exception ?? '') + 1024
  );
}

export interface ResultOutboxOptions {
  /** The node's address, for messages. */
  host: string;
  log: Logger;
  /** --max-message-size. */
  maxMessageSize: number;
  undelivered: UndeliveredStore;
  /** The served client's open connections (where a job whose connection closed is told). */
  channels: () => Iterable<ClientChannel>;
}

export class ResultOutbox {
  readonly #opts: ResultOutboxOptions;
  /** Provisional results waiting for a congested connection to drain: the latest per job. */
  readonly #heldProvisional = new Map<ClientChannel, Map<number, NodeMessage>>();

  constructor(opts: ResultOutboxOptions) {
    this.#opts = opts;
  }

  /** A provisional result; one that would not leave in a message is logged and dropped. */
  provisional(job: NodeJob, result: Uint8Array): void {
    const max = this.#opts.maxMessageSize;
    // The runner refuses larger ones; this one would not leave in a message.
    if (result.byteLength + 1024 > max) {
      this.#opts.log.warn({ uid: job.uid, bytes: result.byteLength, max }, 'provisional result too large: not sent');
      return;
    }
    this.send(job, { t: 'provisional', uid: job.uid, result });
  }

  /** A job's end as its runner reported it. */
  finished(job: NodeJob, d: RunnerDone): void {
    this.send(
      job,
      this.#fitDone({
        t: 'done',
        uid: job.uid,
        status: d.ok ? 'Finished' : 'Terminated',
        result: d.result === null ? null : Buffer.from(d.result, 'base64'),
        exception: d.exception,
        code: d.code,
        stdout: d.stdout,
        stderr: d.stderr,
        startTime: job.startTime || null,
        endTime: d.endTime,
        cpuTime: d.cpuTime,
      }),
    );
  }

  /** A job that never started ends Cancelled (cancelled by its client). */
  cancelled(job: NodeJob): void {
    this.send(job, {
      t: 'done',
      uid: job.uid,
      status: 'Cancelled',
      result: null,
      exception: null,
      code: null,
      stdout: '',
      stderr: '',
      startTime: null,
      endTime: Date.now(),
      cpuTime: 0,
    });
  }

  /**
   * Sends a job's message on its connection, or another open one of its client; with none, a
   * result (or a `nak`, as Cancelled) is kept for the client's return.
   */
  send(job: NodeJob, msg: NodeMessage): void {
    let ch: ClientChannel | undefined = job.channel;
    // The submitting connection is gone; another connection of the same client may take it.
    if (ch.closed) {
      ch = undefined;
      for (const c of this.#opts.channels()) {
        if (!c.closed) {
          ch = c;
          break;
        }
      }
    }
    const undelivered = this.#opts.undelivered;
    if (ch) {
      if (msg.t === 'provisional' && ch.congested) {
        this.#holdProvisional(ch, msg);
        return;
      }
      // The final result replaces a provisional one still held.
      if (msg.t === 'done') this.#heldProvisional.get(ch)?.delete(msg.uid);
      try {
        ch.send(msg);
      } catch (err) {
        // #fitDone keeps a job's end within the limit; should anything still not fit, the job
        // ends saying so rather than the daemon failing.
        this.#opts.log.error({ uid: job.uid, t: msg.t, err: (err as Error).message }, 'message too large for the client: not sent');
        if (msg.t !== 'done') return;
        msg = {
          ...msg,
          status: 'Terminated',
          result: null,
          stdout: '',
          stderr: '',
          code: 'DISPY_ERR_MESSAGE_TOO_LARGE',
          exception: jobException((err as Error).message),
        };
        ch.send(msg);
      }
      if (msg.t === 'done') undelivered.sent(job.comp.id, job.tag === undefined ? msg : { ...msg, tag: job.tag });
    } else if (msg.t === 'done') {
      // Nobody to tell: kept on disk until the client returns or recoverJobs asks.
      undelivered.keep(job.comp.id, job.tag === undefined ? msg : { ...msg, tag: job.tag });
    } else if (msg.t === 'nak') {
      // A job handed back that nobody can take back: it ends Cancelled, kept like a result.
      const now = Date.now();
      undelivered.keep(job.comp.id, {
        t: 'done',
        uid: job.uid,
        status: 'Cancelled',
        result: null,
        exception: jobException(msg.message),
        code: null,
        stdout: '',
        stderr: '',
        startTime: null,
        endTime: now,
        cpuTime: 0,
        ...(job.tag === undefined ? {} : { tag: job.tag }),
      });
    }
  }

  /**
   * A job's end that would not fit in one message: a result that does not fit is refused (the
   * job ends Terminated with DISPY_ERR_MESSAGE_TOO_LARGE naming both sizes; the runner refuses
   * most of them before they reach the daemon), and output is shortened to what room is left.
   */
  #fitDone(msg: Done): Done {
    const max = this.#opts.maxMessageSize;
    if (doneSize(msg) <= max) return msg;
    const host = this.#opts.host;
    let out = msg;
    if (out.result && doneSize({ ...out, stdout: '', stderr: '' }) > max) {
      const bytes = out.result.byteLength;
      out = {
        ...out,
        status: 'Terminated',
        result: null,
        code: 'DISPY_ERR_MESSAGE_TOO_LARGE',
        exception: jobException(Errors.resultTooLarge(bytes, `node ${host}'s`, max).message),
      };
      this.#opts.log.warn({ uid: msg.uid, bytes, max }, 'job result too large for a message: refused');
    }
    if (doneSize(out) > max) {
      const room = Math.max(0, Math.floor((max - doneSize({ ...out, stdout: '', stderr: '' })) / 2) - 64);
      const cut = (text: string): string =>
        Buffer.byteLength(text) <= room
          ? text
          : `${Buffer.from(text).subarray(0, room).toString('utf8')}\n[dispyts: output truncated to fit node ${host}'s maximum message size]\n`;
      out = { ...out, stdout: cut(out.stdout), stderr: cut(out.stderr) };
    }
    return out;
  }

  /**
   * Splits results to hand out so that a reply holding `fit` stays within the message size
   * (`reserve` bytes kept for the rest of it); `rest` must go another way.
   */
  budget(results: JobDone[], reserve: number): { fit: JobDone[]; rest: JobDone[] } {
    let room = this.#opts.maxMessageSize - REPLY_RESERVE - reserve;
    const fit: JobDone[] = [];
    const rest: JobDone[] = [];
    for (const r of results) {
      const size = doneSize(r);
      if (size <= room) {
        fit.push(r);
        room -= size;
      } else rest.push(r);
    }
    return { fit, rest };
  }

  /**
   * A client that reads slower than its jobs send provisional results gets the latest one of
   * each job once its connection drains, not every one of them (they would pile up here).
   */
  #holdProvisional(ch: ClientChannel, msg: Extract<NodeMessage, { t: 'provisional' }>): void {
    let held = this.#heldProvisional.get(ch);
    if (!held) {
      const mine = new Map<number, NodeMessage>();
      held = mine;
      this.#heldProvisional.set(ch, mine);
      const release = (): void => {
        ch.off('drain', release);
        ch.off('close', release);
        this.#heldProvisional.delete(ch);
        if (!ch.closed) for (const m of mine.values()) ch.send(m);
      };
      ch.on('drain', release);
      ch.on('close', release);
    }
    held.set(msg.uid, msg);
  }
}
