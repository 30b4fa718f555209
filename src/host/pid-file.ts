/**
 * A daemon's record in its state directory (`daemon.json` of a node, `scheduler.json` of a
 * scheduler): which process holds the directory, so a second daemon with the same prefix and
 * address refuses to start while the first one lives, and one that finds a dead holder's
 * record knows what it left behind.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';

/** The record as read back: at least the holder's pid. */
export type PidRecord<T> = T & { pid: number };

/** The record at `path`, or null when there is none (or it is unreadable). */
export function readPidFile<T extends object>(path: string): PidRecord<T> | null {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v !== null && typeof v === 'object' && Number.isInteger((v as { pid?: unknown }).pid) ? (v as PidRecord<T>) : null;
  } catch {
    return null;
  }
}

/** Writes this process's record (a failure is logged: the daemon runs on without one). */
export function writePidFile(path: string, record: object, log: Logger): void {
  try {
    writeFileSync(path, JSON.stringify({ pid: process.pid, ...record }));
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot write the pid file');
  }
}

/** Removes the record (a daemon that stops cleanly). */
export function removePidFile(path: string): void {
  rmSync(path, { force: true });
}

function cmdline(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return null;
  }
}

/** True if `pid` is alive and is a dispyts daemon started with `command` (`node`, `scheduler`). */
export function isDispytsDaemon(pid: number, command: 'node' | 'scheduler'): boolean {
  const args = cmdline(pid);
  return !!args?.includes(command) && args.some((a) => /dispyts|main\.[jt]s$/.test(a));
}

/** True if `pid` is alive and is one of a node's job runners. */
export function isJobRunner(pid: number): boolean {
  return cmdline(pid)?.some((a) => a.includes('runner-main')) ?? false;
}
