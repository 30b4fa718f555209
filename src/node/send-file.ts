/**
 * `dispySendFile(path)` inside a job (runner side): sends a file the job made back to the
 * client, which writes it under its resultsDir by base name. The file travels as its beginning
 * (the client answers with the bytes it already has, so a transfer broken off resumes there)
 * then chunks, each answered by the client once written; the runner sends them to the daemon,
 * which relays them (send-file-relay.ts). A job's transfers end before its Done is sent, so
 * its files are home before its final status.
 */
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { DispyError } from '../errors.js';
import { RunnerEvent, type RunnerFileAck, type RunnerSendFile } from './runner-protocol.js';

/** Bytes per chunk, at most (and a quarter of the node's message size). */
const CHUNK = 1024 * 1024;

export interface SendFileDeps {
  /** The job running now (null between jobs). */
  currentUid(): number | null;
  report(item: RunnerSendFile): void;
  /** The node's --max-message-size. */
  maxMessage: number;
}

export interface SendFiles {
  /** The job's `dispySendFile(path)`: resolves once the client has the whole file. */
  sendFile(path: string): Promise<void>;
  /** The daemon's answer to a part sent. */
  onAck(ack: RunnerFileAck): void;
  /** Resolves once every transfer job `uid` started has ended (however); undefined if it started none. */
  settle(uid: number): Promise<void> | undefined;
}

export function makeSendFiles(deps: SendFileDeps): SendFiles {
  let fids = 0;
  const waiting = new Map<number, (ack: RunnerFileAck) => void>();
  const pending = new Map<number, Set<Promise<unknown>>>();
  const chunkSize = Math.max(1024, Math.min(CHUNK, Math.floor(deps.maxMessage / 4)));

  function ask(item: RunnerSendFile): Promise<number> {
    return new Promise((resolve, reject) => {
      waiting.set(item.fid, (ack) => {
        if (ack.error) reject(new DispyError(ack.error.code as 'DISPY_ERR_INTERNAL', `dispySendFile: ${ack.error.message}`));
        else resolve(ack.offset);
      });
      deps.report(item);
    });
  }

  async function transfer(uid: number, path: string): Promise<void> {
    const fh = await open(path, 'r').catch((err: Error) => {
      throw new DispyError('DISPY_ERR_NOT_FOUND', `dispySendFile: cannot read ${path}: ${err.message}`);
    });
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new DispyError('DISPY_ERR_BAD_REQUEST', `dispySendFile: ${path} is not a regular file`);
      const head = { ev: RunnerEvent.SendFile, uid, fid: ++fids, name: basename(path), size: st.size, mtime: st.mtimeMs } as const;
      let offset = await ask(head);
      while (offset < head.size) {
        const len = Math.min(chunkSize, head.size - offset);
        const data = Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(data, 0, len, offset);
        if (bytesRead !== len) throw new DispyError('DISPY_ERR_BAD_REQUEST', `dispySendFile: ${path} changed while it was being sent`);
        const now = await ask({ ...head, offset, data: data.toString('base64') });
        if (now <= offset) throw new DispyError('DISPY_ERR_INTERNAL', `dispySendFile: the client answered offset ${now} after ${offset}`);
        offset = now;
      }
    } finally {
      await fh.close();
    }
  }

  return {
    sendFile(path: string): Promise<void> {
      const uid = deps.currentUid();
      if (uid === null) return Promise.reject(new DispyError('DISPY_ERR_BAD_REQUEST', 'dispySendFile works only while a job runs'));
      if (typeof path !== 'string' || path.length === 0)
        return Promise.reject(new DispyError('DISPY_ERR_BAD_REQUEST', 'dispySendFile: expected a file path'));
      const p = transfer(uid, path);
      let mine = pending.get(uid);
      if (!mine) {
        mine = new Set();
        pending.set(uid, mine);
      }
      const tracked = p.catch(() => undefined);
      mine.add(tracked);
      return p;
    },
    onAck(ack: RunnerFileAck): void {
      const w = waiting.get(ack.fid);
      waiting.delete(ack.fid);
      w?.(ack);
    },
    settle(uid: number): Promise<void> | undefined {
      const mine = pending.get(uid);
      if (!mine) return undefined;
      pending.delete(uid);
      return Promise.all(mine).then(() => undefined);
    },
  };
}
