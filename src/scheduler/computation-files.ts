/**
 * Where the scheduler keeps the files a client sends for its computation and its jobs, and
 * whether one arrived completely (shared-computation.ts, computation-node-op.ts, client-session.ts).
 */
import { lstatSync } from 'node:fs';

/** Whether `path` is a regular file (a file the client sent completely; never a link). */
export function isFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false;
  }
}

/** Where the scheduler keeps job `uid`'s per-job file `name`, inside its computation's directory. */
export function jobFileName(uid: number, name: string): string {
  return `.jobs/${uid}/${name}`;
}
