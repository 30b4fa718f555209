/**
 * Files jobs send home (`dispySendFile`) through `dispyts scheduler`: the node's job-file parts
 * reach the scheduler's cluster for the computation, which passes each to the client program
 * behind it as a job-file (with that program's job uid) and its job-file-ack back to the node.
 * The scheduler neither writes nor judges the file: the program's SharedJobCluster does.
 */
import type { JobFile } from '../protocol/messages.js';
import type { JobFileAnswer } from '../client/result-files.js';

/** Seconds a client program may take to answer a part. */
const ANSWER_SEC = 60;

let next = 0;
const waiting = new Map<string, { answer: (a: JobFileAnswer) => void; timer: NodeJS.Timeout }>();
/** One number per transfer (node link and the node's number) for all its parts. */
const ids = new Map<string, number>();

/** Passes a part to the client program `owner` (`send`); resolves with its answer. */
export function relayJobFile(owner: string, node: string, send: (msg: JobFile) => void, msg: JobFile, uid: number): Promise<JobFileAnswer> {
  const transfer = `${owner}/${node}/${msg.fid}`;
  const fid = ids.get(transfer) ?? ++next;
  ids.set(transfer, fid);
  const key = `${owner}/${fid}`;
  return new Promise((resolve) => {
    const answer = (a: JobFileAnswer): void => {
      const w = waiting.get(key);
      if (!w) return;
      waiting.delete(key);
      clearTimeout(w.timer);
      if (a.error || a.offset >= msg.size) ids.delete(transfer);
      resolve(a);
    };
    const timer = setTimeout(
      () => answer({ offset: 0, error: { code: 'DISPY_ERR_TIMEOUT', message: `the client program did not answer in ${ANSWER_SEC} s` } }),
      ANSWER_SEC * 1000,
    );
    timer.unref();
    waiting.set(key, { answer, timer });
    try {
      send({ ...msg, uid, fid });
    } catch (err) {
      answer({ offset: 0, error: { code: 'DISPY_ERR_CONNECTION', message: `cannot reach the client program: ${(err as Error).message}` } });
    }
  });
}

/** A client program's answer (only to its own transfers). */
export function jobFileAcked(
  owner: string,
  msg: { fid: number; offset: number; error?: { code: string; message: string } | undefined },
): void {
  waiting.get(`${owner}/${msg.fid}`)?.answer(msg.error ? { offset: msg.offset, error: msg.error } : { offset: msg.offset });
}
