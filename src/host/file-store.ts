/**
 * Files clients send to a node (dispy's FILEXFER): computation files and `depends`, files sent
 * with `sendFile`, and per-job files. A transfer is `file-begin` (answered with the bytes the
 * node already has: 0, the full size when an identical file is there, or the size of a partial
 * `<name>.part` to resume from) followed by `file-chunk`s, each answered with the new offset.
 * The file takes its final name, mtime and mode once complete.
 *
 * Where files go: the computation's own directory `<state dir>/<computeId>`, or with a
 * `destPath` the directory `<state dir>/@clients/<client address>/<destPath>`, shared by every
 * computation of that client address with the same destPath (dispy's semantics: an identical
 * file already there is not sent again).
 *
 * Safety: names are relative without `..` (the zod schema refuses the rest); here every
 * directory on the way is checked to resolve inside the area (symlinks followed), a final name
 * that is a symlink must resolve inside too, partial files are opened with O_NOFOLLOW, and files
 * are written under `.part` then renamed (a rename replaces a link, it never follows it).
 */
import {
  constants as fsc,
  type Stats,
  lstatSync,
  mkdirSync,
  promises as fsp,
  realpathSync,
  rmSync,
  rmdirSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { dirname, join, sep } from 'node:path';
import type { Logger } from 'pino';
import { DispyError } from '../errors.js';
import type { ClientMessage } from '../protocol/messages.js';

type FileBegin = Extract<ClientMessage, { t: 'file-begin' }>;
type FileChunk = Extract<ClientMessage, { t: 'file-chunk' }>;

/** Name of the directory (under the node's state directory) holding the clients' destPath areas. */
export const CLIENTS_DIR = '@clients';

interface Transfer {
  size: number;
  mtime: number;
  mode: number;
}

interface FileArea {
  clientId: string;
  computeId: string;
  /** Real path of the directory the computation's files go to. */
  dir: string;
  /** A destPath directory, possibly shared with other computations. */
  shared: boolean;
  /** A computation was set up with it (until then it is staged: files sent before setup). */
  adopted: boolean;
  /** Delete the files at close (setup's `cleanupFiles`). */
  cleanup: boolean;
  /** Computation files (depends, program, sendFile), kept until the computation closes. */
  files: Set<string>;
  /** Per-job files: name -> uids of the jobs that use it; deleted when the last one ended. */
  holds: Map<string, Set<number>>;
  transfers: Map<string, Transfer>;
}

function forbidden(message: string): DispyError {
  return new DispyError('DISPY_ERR_FORBIDDEN', message);
}

function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/**
 * The real path of `root/segs...`, creating missing directories one at a time; every existing
 * component must resolve (symlinks followed) inside `root`, which must be a real path.
 */
function dirInside(root: string, segs: string[], create: boolean, what: string): string {
  let cur = root;
  for (const seg of segs) {
    if (seg === '' || seg === '.' || seg === '..' || seg.includes('\0')) throw forbidden(`${what}: bad path segment \`${seg}\``);
    const next = join(cur, seg);
    let exists = true;
    try {
      lstatSync(next);
    } catch (err) {
      if (code(err) !== 'ENOENT') throw err;
      exists = false;
    }
    if (!exists) {
      if (!create) throw new DispyError('DISPY_ERR_NOT_FOUND', `${what}: no directory \`${seg}\``);
      try {
        mkdirSync(next, { mode: 0o700 });
      } catch (err) {
        if (code(err) !== 'EEXIST') throw err;
      }
    }
    let real: string;
    try {
      real = realpathSync(next);
    } catch {
      throw forbidden(`${what}: \`${seg}\` is a link that does not resolve`);
    }
    if (!isInside(root, real)) throw forbidden(`${what} resolves outside the computation's directory`);
    if (!statSync(real).isDirectory()) throw new DispyError('DISPY_ERR_BAD_REQUEST', `${what}: \`${seg}\` is not a directory`);
    cur = real;
  }
  return cur;
}

/**
 * The path a file `name` of an area is written to, after checking it stays inside. A final name
 * that is a symlink must resolve inside the area (it is then replaced by the file, not followed).
 */
function targetInside(areaDir: string, name: string, create: boolean): string {
  const segs = name.split('/');
  const base = segs.pop()!;
  const parent = dirInside(areaDir, segs, create, `file name \`${name}\``);
  if (base === '' || base === '.' || base === '..') throw forbidden(`file name \`${name}\` is not a file name`);
  const target = join(parent, base);
  let st: Stats;
  try {
    st = lstatSync(target);
  } catch (err) {
    if (code(err) === 'ENOENT') return target;
    throw err;
  }
  if (st.isSymbolicLink()) {
    let real: string;
    try {
      real = realpathSync(target);
    } catch {
      throw forbidden(`file name \`${name}\` is a link that does not resolve`);
    }
    if (!isInside(areaDir, real)) throw forbidden(`file name \`${name}\` is a link that resolves outside the computation's directory`);
  } else if (st.isDirectory()) {
    throw new DispyError('DISPY_ERR_BAD_REQUEST', `file name \`${name}\` is a directory on the node`);
  }
  return target;
}

export class FileStore {
  /** Real path of the node's state directory. */
  readonly #root: string;
  readonly #maxFileSize: number;
  readonly #log: Logger;
  readonly #areas = new Map<string, FileArea>();
  /** Operations on one target path run one after another. */
  readonly #chains = new Map<string, Promise<unknown>>();

  constructor(stateDir: string, maxFileSize: number, log: Logger) {
    mkdirSync(stateDir, { recursive: true });
    this.#root = realpathSync(stateDir);
    this.#maxFileSize = maxFileSize;
    this.#log = log;
  }

  #key(clientId: string, computeId: string): string {
    return `${clientId}\0${computeId}`;
  }

  /** The client's address from a channel's `peer` (`addr:port`). */
  static clientAddr(peer: string): string {
    const i = peer.lastIndexOf(':');
    return i > 0 ? peer.slice(0, i) : peer;
  }

  #dirFor(computeId: string, clientAddr: string, destPath: string | null): string {
    if (destPath === null) return dirInside(this.#root, [safeName(computeId)], true, 'computation directory');
    const clientRoot = dirInside(this.#root, [CLIENTS_DIR, safeName(clientAddr) || 'unknown'], true, 'client area');
    return dirInside(clientRoot, destPath.split('/'), true, `destPath \`${destPath}\``);
  }

  #area(clientId: string, computeId: string, clientAddr: string, destPath: string | null): FileArea {
    const key = this.#key(clientId, computeId);
    let area = this.#areas.get(key);
    if (!area) {
      const dir = this.#dirFor(computeId, clientAddr, destPath);
      area = {
        clientId,
        computeId,
        dir,
        shared: destPath !== null,
        adopted: false,
        cleanup: true,
        files: new Set(),
        holds: new Map(),
        transfers: new Map(),
      };
      this.#areas.set(key, area);
    }
    return area;
  }

  /**
   * The directory of a computation being set up (creating it), taking over the files sent
   * before setup. Throws if `destPath` is unsafe.
   */
  adopt(clientId: string, computeId: string, clientAddr: string, destPath: string | null, cleanup: boolean): string {
    const key = this.#key(clientId, computeId);
    const staged = this.#areas.get(key);
    if (staged && !staged.adopted && staged.dir !== this.#dirFor(computeId, clientAddr, destPath)) {
      // Files were sent for another destPath than the one set up: start over.
      this.#close(staged, true);
    }
    const area = this.#area(clientId, computeId, clientAddr, destPath);
    area.adopted = true;
    area.cleanup = cleanup;
    return area.dir;
  }

  /** The computation's directory, if it has one. */
  dirOf(clientId: string, computeId: string): string | undefined {
    return this.#areas.get(this.#key(clientId, computeId))?.dir;
  }

  #serial<T>(path: string, op: () => Promise<T>): Promise<T> {
    const prev = this.#chains.get(path) ?? Promise.resolve();
    const next = prev.then(op, op);
    const tail = next.catch(() => undefined);
    this.#chains.set(path, tail);
    void tail.then(() => {
      if (this.#chains.get(path) === tail) this.#chains.delete(path);
    });
    return next;
  }

  /** Starts (or resumes) a transfer; resolves with the bytes the node already has. */
  begin(clientId: string, clientAddr: string, msg: FileBegin): Promise<number> {
    if (this.#maxFileSize > 0 && msg.size > this.#maxFileSize) {
      return Promise.reject(
        new DispyError(
          'DISPY_ERR_FILE_TOO_LARGE',
          `file \`${msg.name}\` is ${msg.size} bytes, more than this node's --max-file-size of ${this.#maxFileSize} bytes`,
        ),
      );
    }
    let area: FileArea;
    let target: string;
    try {
      area = this.#area(clientId, msg.computeId, clientAddr, msg.destPath ?? null);
      target = targetInside(area.dir, msg.name, true);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#serial(target, async () => {
      const record = (): void => {
        if (msg.job === undefined) area.files.add(msg.name);
        else {
          let h = area.holds.get(msg.name);
          if (!h) {
            h = new Set();
            area.holds.set(msg.name, h);
          }
          h.add(msg.job);
        }
      };
      const mode = (msg.mode & 0o777) | 0o600;
      // An identical file (same size and mtime) is already there: nothing to send.
      const st = await fsp.lstat(target).catch(() => null);
      if (st?.isFile() && st.size === msg.size && Math.abs(st.mtimeMs - msg.mtime) < 1) {
        area.transfers.delete(msg.name);
        if ((st.mode & 0o777) !== mode) await fsp.chmod(target, mode);
        record();
        return msg.size;
      }
      const part = `${target}.part`;
      let offset = 0;
      const pst = await fsp.lstat(part).catch(() => null);
      if (pst?.isSymbolicLink()) await fsp.unlink(part);
      else if (pst?.isFile() && pst.size <= msg.size && Math.abs(pst.mtimeMs - msg.mtime) < 1) {
        // A partial copy of this same file (a part carries its source's mtime): resume.
        offset = pst.size;
      } else if (pst && !pst.isFile()) {
        throw new DispyError('DISPY_ERR_BAD_REQUEST', `\`${msg.name}.part\` on the node is not a file`);
      }
      if (offset === 0) {
        const fh = await fsp.open(part, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600);
        await fh.close();
      }
      await fsp.utimes(part, new Date(), msg.mtime / 1000);
      const t: Transfer = { size: msg.size, mtime: msg.mtime, mode };
      area.transfers.set(msg.name, t);
      record();
      if (offset === msg.size) await this.#finish(area, msg.name, t);
      else if (offset > 0) this.#log.info({ name: msg.name, offset, size: msg.size }, 'resuming a file transfer');
      return offset;
    });
  }

  /** Appends a chunk at `offset`; resolves with the bytes the node now has. */
  chunk(clientId: string, msg: FileChunk): Promise<number> {
    const area = this.#areas.get(this.#key(clientId, msg.computeId));
    const t = area?.transfers.get(msg.name);
    if (!area || !t) {
      return Promise.reject(
        new DispyError(
          'DISPY_ERR_BAD_REQUEST',
          `no transfer of \`${msg.name}\` in progress for computation ${msg.computeId} (file-begin first)`,
        ),
      );
    }
    let target: string;
    try {
      target = targetInside(area.dir, msg.name, false);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#serial(target, async () => {
      if (area.transfers.get(msg.name) !== t)
        throw new DispyError('DISPY_ERR_BAD_REQUEST', `the transfer of \`${msg.name}\` was restarted or ended`);
      const end = msg.offset + msg.data.length;
      if (end > t.size)
        throw new DispyError('DISPY_ERR_BAD_REQUEST', `chunk of \`${msg.name}\` ends at byte ${end}, beyond its size ${t.size}`);
      const part = `${target}.part`;
      const fh = await fsp.open(part, fsc.O_WRONLY | fsc.O_NOFOLLOW);
      try {
        const st = await fh.stat();
        if (st.size !== msg.offset)
          throw new DispyError(
            'DISPY_ERR_BAD_REQUEST',
            `chunk of \`${msg.name}\` at offset ${msg.offset}, but the node has ${st.size} bytes of it`,
          );
        let done = 0;
        while (done < msg.data.length) done += (await fh.write(msg.data, done, msg.data.length - done, msg.offset + done)).bytesWritten;
        await fh.utimes(new Date(), t.mtime / 1000);
      } finally {
        await fh.close();
      }
      if (end === t.size) await this.#finish(area, msg.name, t);
      return end;
    });
  }

  async #finish(area: FileArea, name: string, t: Transfer): Promise<void> {
    const target = targetInside(area.dir, name, false);
    const part = `${target}.part`;
    await fsp.chmod(part, t.mode);
    await fsp.utimes(part, new Date(), t.mtime / 1000);
    await fsp.rename(part, target);
    area.transfers.delete(name);
  }

  /** Whether another live area in the same directory uses `name`. */
  #usedElsewhere(area: FileArea, name: string): boolean {
    for (const a of this.#areas.values()) {
      if (a !== area && a.dir === area.dir && (a.files.has(name) || a.holds.has(name) || a.transfers.has(name))) return true;
    }
    return false;
  }

  #unlink(area: FileArea, name: string): void {
    try {
      const target = targetInside(area.dir, name, false);
      unlinkSync(target);
    } catch (err) {
      if (code(err) !== 'ENOENT' && (err as DispyError).code !== 'DISPY_ERR_NOT_FOUND')
        this.#log.warn({ name, err: (err as Error).message }, 'cannot delete a file');
    }
  }

  /** A job ended: its per-job files are deleted unless another job or the computation uses them. */
  jobEnded(clientId: string, computeId: string, uid: number, names: readonly string[]): void {
    const area = this.#areas.get(this.#key(clientId, computeId));
    if (!area) return;
    for (const name of names) {
      const h = area.holds.get(name);
      if (!h?.delete(uid) || h.size > 0) continue;
      area.holds.delete(name);
      if (area.files.has(name) || area.transfers.has(name) || this.#usedElsewhere(area, name)) continue;
      let target: string;
      try {
        target = targetInside(area.dir, name, false);
      } catch {
        continue;
      }
      void this.#serial(target, async () => {
        // A new transfer of the same name may have come meanwhile.
        if (area.holds.has(name) || area.files.has(name) || area.transfers.has(name)) return;
        this.#unlink(area, name);
        this.#removeEmptyParents(area, target);
      });
    }
  }

  /** Folders of the area that held `target` and are empty now, up to (not including) the area's own. */
  #removeEmptyParents(area: FileArea, target: string): void {
    for (let d = dirname(target); d !== area.dir && isInside(area.dir, d); d = dirname(d)) {
      try {
        rmdirSync(d);
      } catch {
        return; // not empty, or gone
      }
    }
  }

  /** The computation closed: its files are deleted (unless it asked to keep them). */
  close(clientId: string, computeId: string): void {
    const area = this.#areas.get(this.#key(clientId, computeId));
    if (area) this.#close(area, area.cleanup);
  }

  #close(area: FileArea, cleanup: boolean): void {
    this.#areas.delete(this.#key(area.clientId, area.computeId));
    if (!cleanup) return;
    const dirShared = [...this.#areas.values()].some((a) => a.dir === area.dir);
    if (!area.shared) {
      if (!dirShared) rmSync(area.dir, { recursive: true, force: true });
      return;
    }
    // A shared destPath: only what this computation brought and no other one uses.
    for (const name of new Set([...area.files, ...area.holds.keys()])) if (!this.#usedElsewhere(area, name)) this.#unlink(area, name);
    for (const name of area.transfers.keys()) if (!this.#usedElsewhere(area, name)) this.#unlink(area, `${name}.part`);
    // Empty directories the files were in, up to the destPath directory itself.
    if (dirShared) return;
    const dirs = new Set<string>();
    for (const name of [...area.files, ...area.holds.keys(), ...area.transfers.keys()]) {
      let d = dirname(join(area.dir, name));
      while (isInside(area.dir, d)) {
        dirs.add(d);
        if (d === area.dir) break;
        d = dirname(d);
      }
    }
    dirs.add(area.dir);
    for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(d);
      } catch {
        // not empty, or gone
      }
    }
  }

  /** A client left without setting up: the files it sent for computations never set up go. */
  dropStaged(clientId: string): void {
    for (const area of [...this.#areas.values()]) if (area.clientId === clientId && !area.adopted) this.#close(area, true);
  }
}
