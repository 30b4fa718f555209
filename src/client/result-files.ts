/**
 * Files jobs send home (`dispySendFile(path)` on a node): the client's end of the node→client
 * transfer. A file is written under the cluster's `resultsDir` by its base name only: a name
 * with a `/`, `\`, NUL, `.` or `..`, or an empty one, is refused and nothing is written, so a
 * node can never write outside that directory. Each file is bounded by the cluster's
 * `maxFileSize`. It is received into a hidden part file (opened without following links), so a
 * transfer broken off resumes where it stopped, and renamed into place once complete; then its
 * path is added to `job.files`. Every part is answered once written.
 */
import { constants as fsc } from 'node:fs';
import { open, rename, rm, stat, utimes } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { JobFile } from '../protocol/messages.js';
import type { DispyJob } from './dispy-job.js';

/** The answer to a part: the bytes the client has, or why it refused. */
export interface JobFileAnswer {
  offset: number;
  error?: { code: string; message: string };
}

export interface ResultFilesOptions {
  /** Where files go (resolved now). */
  dir: string;
  /** Largest file taken, in bytes (0 = unlimited). */
  maxFileSize: number;
  log: Logger;
}

/** Why `name` is not a plain base name, or null if it is. */
export function badBaseName(name: string): string | null {
  if (name.length === 0) return 'it is empty';
  if (name.includes('\0')) return 'it contains NUL';
  if (name.includes('/') || name.includes('\\')) return 'it is a path, not a base name';
  if (name === '.' || name === '..') return `\`${name}\` is a directory`;
  if (Buffer.byteLength(name) > 255) return 'it is longer than 255 bytes';
  return null;
}

interface Incoming {
  job: DispyJob;
  name: string;
  size: number;
  mtime: number;
  offset: number;
}

export class ResultFiles {
  readonly dir: string;
  readonly #opts: ResultFilesOptions;
  readonly #incoming = new Map<string, Incoming>();
  /** Parts of one transfer are handled one after another. */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(opts: ResultFilesOptions) {
    this.#opts = opts;
    this.dir = resolve(opts.dir);
  }

  /** Handles one part from `link` (a key naming the sender) of a file `job` sends; resolves with the answer. */
  receive(sender: string, job: DispyJob | null, msg: JobFile): Promise<JobFileAnswer> {
    const p = this.#chain.then(() => this.#receive(sender, job, msg));
    this.#chain = p.catch(() => undefined);
    return p;
  }

  async #receive(sender: string, job: DispyJob | null, msg: JobFile): Promise<JobFileAnswer> {
    const refuse = (code: string, message: string): JobFileAnswer => {
      this.#opts.log.warn({ uid: msg.uid, name: msg.name, code }, `file from a job refused: ${message}`);
      return { offset: 0, error: { code, message } };
    };
    if (!job) return refuse('DISPY_ERR_NOT_FOUND', 'no such job of this cluster is running there');
    const bad = badBaseName(msg.name);
    if (bad)
      return refuse(
        'DISPY_ERR_FORBIDDEN',
        `file name ${JSON.stringify(msg.name)} refused: ${bad}; files are written under ${this.dir} by base name only`,
      );
    const max = this.#opts.maxFileSize;
    if (max > 0 && msg.size > max)
      return refuse(
        'DISPY_ERR_FILE_TOO_LARGE',
        `file ${msg.name} is ${msg.size} bytes, more than the cluster's maxFileSize of ${max} bytes`,
      );
    const key = `${sender}/${msg.fid}`;
    const final = join(this.dir, msg.name);
    const part = join(this.dir, `.${msg.name}.dispyts-part`);
    try {
      if (msg.data === undefined) {
        // Begin: complete already (same size and mtime), a part to resume, or from 0.
        const there = await stat(final).catch(() => null);
        if (there?.isFile() && there.size === msg.size && Math.abs(there.mtimeMs - msg.mtime) < 1) {
          this.#done(job, final);
          return { offset: msg.size };
        }
        const have = await stat(part).catch(() => null);
        const offset = have?.isFile() && have.size <= msg.size ? have.size : 0;
        if (offset === 0) await this.#write(part, Buffer.alloc(0), true);
        this.#incoming.set(key, { job, name: msg.name, size: msg.size, mtime: msg.mtime, offset });
        if (offset === msg.size) return { offset: await this.#complete(key, part, final) };
        return { offset };
      }
      const inc = this.#incoming.get(key);
      if (!inc || inc.job !== job || inc.name !== msg.name)
        return refuse('DISPY_ERR_BAD_REQUEST', `no transfer ${msg.fid} of ${msg.name} began`);
      // Out of order: the sender goes on from what is here.
      if (msg.offset !== inc.offset) return { offset: inc.offset };
      if (inc.offset + msg.data.length > inc.size)
        return refuse('DISPY_ERR_BAD_REQUEST', `file ${msg.name} grew beyond the ${inc.size} bytes it began with`);
      await this.#write(part, msg.data, false);
      inc.offset += msg.data.length;
      if (inc.offset === inc.size) return { offset: await this.#complete(key, part, final) };
      return { offset: inc.offset };
    } catch (err) {
      this.#incoming.delete(key);
      return refuse('DISPY_ERR_INTERNAL', `cannot write ${final}: ${(err as Error).message}`);
    }
  }

  /** Appends to (or truncates) the part file, never through a symbolic link. */
  async #write(path: string, data: Uint8Array, truncate: boolean): Promise<void> {
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_NOFOLLOW | (truncate ? fsc.O_TRUNC : fsc.O_APPEND);
    const fh = await open(path, flags, 0o644);
    try {
      if (data.length) await fh.write(data);
    } finally {
      await fh.close();
    }
  }

  async #complete(key: string, part: string, final: string): Promise<number> {
    const inc = this.#incoming.get(key)!;
    this.#incoming.delete(key);
    await utimes(part, new Date(), new Date(inc.mtime));
    // rename replaces a link at the final name rather than writing through it.
    await rename(part, final).catch(async (err: unknown) => {
      await rm(part, { force: true });
      throw err;
    });
    this.#done(inc.job, final);
    return inc.size;
  }

  #done(job: DispyJob, path: string): void {
    if (!job.files.includes(path)) job.files.push(path);
  }
}
