/**
 * Files a cluster sends to nodes: file `depends`, the program of a program computation,
 * `NodeAllocate.depends`, `sendFile` and per-job files. A file travels over the node's link as
 * `file-begin` (the node answers how many bytes it already has: 0, the whole file when an
 * identical one is there, or what a broken transfer left, to resume from) then 1 MiB
 * `file-chunk`s, a few in flight, each answered with the node's new offset. On the node a file
 * is named by its base name, in the computation's directory (or its destPath).
 */
import { accessSync, constants as fsc, type Stats, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, delimiter, resolve } from 'node:path';
import type { Logger } from 'pino';
import { DispyError } from '../errors.js';
import type { z } from 'zod';
import { relativeName, type fileBeginSchema, type fileChunkSchema } from '../protocol/messages.js';

/** Bytes per file-chunk message. */
export const FILE_CHUNK = 1024 * 1024;
/** Chunks sent ahead of the node's answers. */
const WINDOW = 8;

/** A local file to send, and its name on the node. */
export interface LocalFile {
  path: string;
  name: string;
}

/** What sending a file did. */
export interface TransferResult {
  name: string;
  size: number;
  /** Bytes the node already had when the transfer began (resumed or identical file). */
  resumedFrom: number;
  /** Bytes of file data sent. */
  sent: number;
}

/** The two requests of a transfer (without the request id, which the sender assigns). */
export type FileRequest = Omit<z.input<typeof fileBeginSchema>, 'rid'> | Omit<z.input<typeof fileChunkSchema>, 'rid'>;

/**
 * Anything that sends file requests and resolves with the receiver's answer: a NodeLink, or a
 * SharedJobCluster's connection to its scheduler (same messages, same answers).
 */
export interface Requester {
  request(msg: FileRequest, timeoutSec?: number): Promise<{ offset?: number | undefined }>;
  /** Largest message the receiver accepts (chunks are made to fit); absent: 64 MiB. */
  readonly maxMessageSize?: number;
}

export interface TransferOptions {
  /** The cluster's destPath, so files sent before setup land where the computation runs. */
  destPath: string | null;
  /** Largest file the cluster sends (0 = unlimited). */
  maxFileSize: number;
  /** Per-job file of this job uid (the node deletes it after the job). */
  job?: number;
}

function tooLarge(path: string, size: number, max: number): DispyError {
  return new DispyError('DISPY_ERR_FILE_TOO_LARGE', `file ${path} is ${size} bytes, more than the cluster's maxFileSize of ${max} bytes`);
}

/**
 * Checks a local file now (it must be a readable regular file within `maxFileSize`) and names
 * it by its base name on the node.
 */
export function localFile(path: string, what: string, maxFileSize = 0): LocalFile {
  if (typeof path !== 'string' || path.length === 0)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `${what}: expected a file path, got ${JSON.stringify(path)}`);
  const abs = resolve(path);
  let st: Stats;
  try {
    st = statSync(abs);
  } catch {
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `${what}: no such file \`${path}\``);
  }
  if (!st.isFile()) throw new DispyError('DISPY_ERR_INVALID_OPTION', `${what}: \`${path}\` is not a regular file`);
  try {
    accessSync(abs, fsc.R_OK);
  } catch {
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `${what}: \`${path}\` is not readable`);
  }
  if (maxFileSize > 0 && st.size > maxFileSize) throw tooLarge(path, st.size, maxFileSize);
  const name = basename(abs);
  if (!relativeName.safeParse(name).success)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `${what}: \`${path}\` has no usable file name`);
  return { path: abs, name };
}

/** The file paths among `depends` (strings), checked; two files may not share a base name. */
export function dependFiles(depends: readonly unknown[], what: string, maxFileSize = 0, taken: readonly LocalFile[] = []): LocalFile[] {
  const out: LocalFile[] = [];
  const names = new Map(taken.map((f) => [f.name, f.path]));
  for (const [i, d] of depends.entries()) {
    if (typeof d !== 'string') continue;
    const f = localFile(d, `${what}[${i}]`, maxFileSize);
    const other = names.get(f.name);
    if (other !== undefined) {
      if (other === f.path) continue;
      throw new DispyError('DISPY_ERR_INVALID_OPTION', `${what}[${i}]: \`${d}\` and \`${other}\` would both be \`${f.name}\` on the nodes`);
    }
    names.set(f.name, f.path);
    out.push(f);
  }
  return out;
}

/**
 * A program computation's file: a path (absolute, relative, or an existing file in the current
 * directory, as dispy), else a name looked up on PATH. It must be an executable regular file.
 */
export function resolveProgram(program: string): string {
  const candidates: string[] = [];
  if (program.includes('/')) candidates.push(resolve(program));
  else {
    candidates.push(resolve(program));
    for (const dir of (process.env.PATH ?? '').split(delimiter)) candidates.push(resolve(dir || '.', program));
  }
  let notExecutable: string | null = null;
  for (const c of candidates) {
    let st: Stats;
    try {
      st = statSync(c);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    try {
      accessSync(c, fsc.X_OK);
      return c;
    } catch {
      notExecutable ??= c;
    }
  }
  if (notExecutable && (program.includes('/') || notExecutable === resolve(program))) {
    throw new DispyError('DISPY_ERR_COMPUTATION', `program ${notExecutable} is not executable`);
  }
  if (program.includes('/')) throw new DispyError('DISPY_ERR_COMPUTATION', `program ${program} not found`);
  throw new DispyError(
    'DISPY_ERR_COMPUTATION',
    `program \`${program}\` is not a file and was not found on PATH${notExecutable ? ` (${notExecutable} is not executable)` : ''}`,
  );
}

/** dispy's destPath: relative; a leading `/` is dropped with a warning. */
export function normalizeDestPath(destPath: string | undefined, log?: Logger): string | null {
  if (destPath === undefined) return null;
  let p = destPath.replace(/\/+$/, '');
  if (p.startsWith('/')) {
    p = p.replace(/^\/+/, '');
    log?.warn({ destPath }, 'destPath must be relative: the leading `/` is ignored');
  }
  p = p
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');
  if (!relativeName.safeParse(p).success)
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `Expected \`destPath\` to be a relative directory without \`..\`, got \`${destPath}\``,
    );
  return p;
}

/**
 * Sends one file to a node (resuming what is already there); resolves once the node has it
 * complete. Rejects with DISPY_ERR_FILE_TOO_LARGE before sending anything if the file is larger
 * than `maxFileSize`, and with the node's error if it refuses.
 */
export async function transferFile(link: Requester, computeId: string, file: LocalFile, opts: TransferOptions): Promise<TransferResult> {
  if (!relativeName.safeParse(file.name).success)
    throw new DispyError('DISPY_ERR_FORBIDDEN', `file name \`${file.name}\` would leave the computation's directory`);
  const fh = await open(file.path, 'r').catch((err: Error) => {
    throw new DispyError('DISPY_ERR_NOT_FOUND', `cannot read ${file.path}: ${err.message}`);
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new DispyError('DISPY_ERR_BAD_REQUEST', `${file.path} is not a regular file`);
    const size = st.size;
    if (opts.maxFileSize > 0 && size > opts.maxFileSize) throw tooLarge(file.path, size, opts.maxFileSize);
    const begin = await link.request({
      t: 'file-begin',
      computeId,
      name: file.name,
      size,
      mtime: st.mtimeMs,
      mode: st.mode & 0o7777,
      destPath: opts.destPath,
      ...(opts.job === undefined ? {} : { job: opts.job }),
    });
    const resumedFrom = begin.offset ?? 0;
    let offset = resumedFrom;
    if (offset > size) throw new DispyError('DISPY_ERR_INTERNAL', `node has ${offset} bytes of ${file.name}, which has ${size}`);
    let next = offset;
    let sent = 0;
    // A chunk and its envelope fit in what the receiver accepts, with room to spare.
    const chunkSize = Math.max(1024, Math.min(FILE_CHUNK, Math.floor((link.maxMessageSize ?? Infinity) / 4)));
    const inflight: { end: number; reply: Promise<{ offset?: number | undefined }> }[] = [];
    while (offset < size) {
      while (next < size && inflight.length < WINDOW) {
        const len = Math.min(chunkSize, size - next);
        const data = Buffer.allocUnsafe(len);
        let got = 0;
        while (got < len) {
          const { bytesRead } = await fh.read(data, got, len - got, next + got);
          if (bytesRead === 0) throw new DispyError('DISPY_ERR_BAD_REQUEST', `${file.path} changed while it was being sent`);
          got += bytesRead;
        }
        const reply = link.request({
          t: 'file-chunk',
          computeId,
          name: file.name,
          offset: next,
          data,
          ...(opts.job === undefined ? {} : { job: opts.job }),
        });
        // Answers are awaited in order; a failure is reported by the first one awaited.
        reply.catch(() => undefined);
        next += len;
        sent += len;
        inflight.push({ end: next, reply });
      }
      const head = inflight.shift()!;
      const r = await head.reply;
      if (r.offset !== head.end)
        throw new DispyError('DISPY_ERR_INTERNAL', `node answered offset ${r.offset} for ${file.name}, expected ${head.end}`);
      offset = head.end;
    }
    return { name: file.name, size, resumedFrom, sent };
  } finally {
    await fh.close();
  }
}

/** Sends files one after another; resolves with the bytes of data sent. */
export async function transferFiles(
  link: Requester,
  computeId: string,
  files: readonly LocalFile[],
  opts: TransferOptions,
): Promise<number> {
  let sent = 0;
  for (const f of files) sent += (await transferFile(link, computeId, f, opts)).sent;
  return sent;
}
