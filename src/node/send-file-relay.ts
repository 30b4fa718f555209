/**
 * The daemon's part of `dispySendFile` (send-file.ts): passes each part of a file a job sends
 * home to the job's client as a `job-file` message and the client's `job-file-ack` back to the
 * runner. It neither reads nor writes the file, and takes the name as the job gave it: the
 * client accepts a base name only. A client that does not answer fails the transfer.
 */
import type { JobFile, NodeMessage } from '../protocol/messages.js';
import { RunnerCommand, type RunnerFileAck, type RunnerSendFile } from './runner-protocol.js';

/** Seconds a client may take to answer a part. */
const ANSWER_SEC = 60;

type Answer = Pick<RunnerFileAck, 'offset' | 'error'>;

export class FileRelay {
  #next = 0;
  /** The number of each transfer under way (by job and the runner's number): one for all its parts. */
  readonly #ids = new Map<string, number>();
  readonly #waiting = new Map<number, { answer: (a: Answer) => void; timer: NodeJS.Timeout }>();

  /** Sends a part to the client (`send`) and answers the runner (`reply`) with what the client says. */
  forward(send: (msg: NodeMessage) => void, item: RunnerSendFile, reply: (ack: RunnerFileAck) => void): void {
    const key = `${item.uid}/${item.fid}`;
    const fid = this.#ids.get(key) ?? ++this.#next;
    this.#ids.set(key, fid);
    const timer = setTimeout(
      () => this.#answer(fid, { offset: 0, error: { code: 'DISPY_ERR_TIMEOUT', message: `the client did not answer in ${ANSWER_SEC} s` } }),
      ANSWER_SEC * 1000,
    );
    timer.unref();
    this.#waiting.set(fid, {
      answer: (a) => {
        // Ended: refused, or the client has it all.
        if (a.error || a.offset >= item.size) this.#ids.delete(key);
        reply({ cmd: RunnerCommand.FileAck, fid: item.fid, ...a });
      },
      timer,
    });
    const msg: JobFile = { t: 'job-file', uid: item.uid, fid, name: item.name, size: item.size, mtime: item.mtime };
    if (item.offset !== undefined && item.data !== undefined) {
      msg.offset = item.offset;
      msg.data = Buffer.from(item.data, 'base64');
    }
    try {
      send(msg);
    } catch (err) {
      this.#answer(fid, {
        offset: 0,
        error: { code: 'DISPY_ERR_CONNECTION', message: `cannot send to the client: ${(err as Error).message}` },
      });
    }
  }

  /** The client's answer. */
  ack(msg: { fid: number; offset: number; error?: { code: string; message: string } | undefined }): void {
    this.#answer(msg.fid, { offset: msg.offset, error: msg.error ?? null });
  }

  #answer(fid: number, a: Answer): void {
    const w = this.#waiting.get(fid);
    if (!w) return;
    this.#waiting.delete(fid);
    clearTimeout(w.timer);
    w.answer(a);
  }
}
