/**
 * The environment tag that marks every process a node starts for its jobs, and killing by it.
 *
 * Each job runner is forked with `DISPYTS_TAG=<host>/<daemon id>/r<n>`, and while a job runs
 * the runner sets `<runner tag>/j<uid>`, so everything the job starts (a program, a child, a
 * grandchild that called `setsid` or double-forked and was re-parented to init) inherits a tag
 * naming the node and the job. Cancelling a job, a runner whose daemon is gone, and `--clean`
 * kill every process whose `/proc/PID/environ` carries the tag, then the process groups of
 * those processes. A group is only ever signalled through a live member found this way (or a
 * process known to be alive), never by a number remembered from earlier, which another group may
 * have reused. A process that scrubs its environment (`env -i`) and leaves the group escapes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';

/** The environment variable carrying the tag. */
export const TAG_ENV = 'DISPYTS_TAG';

const TAG_PREFIX = `${TAG_ENV}=`;

/** A tagged process: its pid, process group and tag. */
export interface TaggedProcess {
  pid: number;
  pgid: number;
  tag: string;
}

/** Whether `tag` is `prefix` or below it (`prefix/...`). */
export function tagUnder(tag: string, prefix: string): boolean {
  return tag === prefix || (tag.startsWith(prefix) && tag.charCodeAt(prefix.length) === 47) /* '/' */;
}

/** The tag in process `pid`'s (initial) environment, or null (none, gone, or not readable). */
export function tagOf(pid: number): string | null {
  try {
    return tagIn(readFileSync(`/proc/${pid}/environ`));
  } catch {
    return null;
  }
}

/** The tag in the contents of a `/proc/PID/environ`, or null. */
function tagIn(env: Buffer): string | null {
  // Fast path: most processes carry no tag.
  if (env.indexOf(TAG_PREFIX) < 0) return null;
  for (let start = 0; start < env.length; ) {
    let end = env.indexOf(0, start);
    if (end < 0) end = env.length;
    if (end - start > TAG_PREFIX.length && env.toString('latin1', start, start + TAG_PREFIX.length) === TAG_PREFIX)
      return env.toString('utf8', start + TAG_PREFIX.length, end);
    start = end + 1;
  }
  return null;
}

/** `/proc/PID/stat` fields after the command name: [state, ppid, pgrp, session, ...]. */
function statFields(pid: number | 'self'): string[] | null {
  try {
    return fieldsOf(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return null;
  }
}

function fieldsOf(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

function isPid(name: string): boolean {
  const c = name.charCodeAt(0);
  return c >= 48 && c <= 57;
}

/** The process group of `pid`, or null if it is gone. */
export function pgidOf(pid: number | 'self'): number | null {
  const f = statFields(pid);
  return f ? Number(f[2]) : null;
}

/** The parent of this process as the kernel says now (`process.ppid` may be a cached value). */
export function currentParentPid(): number {
  const f = statFields('self');
  return f ? Number(f[1]) : process.ppid;
}

/** Every live process whose tag is `prefix` or below it. */
export function findTagged(prefix: string): TaggedProcess[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: TaggedProcess[] = [];
  for (const name of names) {
    if (!isPid(name)) continue;
    const pid = Number(name);
    const tag = tagOf(pid);
    if (tag === null || !tagUnder(tag, prefix)) continue;
    const f = statFields(pid);
    // A zombie has exited already; its group is reached through its live relatives if any.
    if (!f || f[0] === 'Z') continue;
    out.push({ pid, pgid: Number(f[2]), tag });
  }
  return out;
}

/**
 * findTagged without blocking the event loop: reading every `/proc/PID/environ` takes a few ms
 * on a quiet machine but can take a second on a loaded one, which a daemon must not spend
 * stalled.
 */
export async function findTaggedAsync(prefix: string): Promise<TaggedProcess[]> {
  let names: string[];
  try {
    names = (await readdir('/proc')).filter(isPid);
  } catch {
    return [];
  }
  const out: TaggedProcess[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const pid = Number(names[next++]);
      try {
        const tag = tagIn(await readFile(`/proc/${pid}/environ`));
        if (tag === null || !tagUnder(tag, prefix)) continue;
        const f = fieldsOf(await readFile(`/proc/${pid}/stat`, 'latin1'));
        if (f[0] !== 'Z') out.push({ pid, pgid: Number(f[2]), tag });
      } catch {
        // gone, or not ours to read
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return out;
}

export interface KillTaggedOptions {
  /** Process groups known to be alive (led by a live, unreaped child) to signal too. */
  groups?: number[];
  /** Also signal this process's own group (a runner taking itself down). @default false */
  ownGroup?: boolean;
}

/**
 * Sends `signal` to every process tagged `prefix` (or below it) but this one, then to their
 * process groups and `groups`. This process's group is spared unless `ownGroup`. Returns the
 * pids of the tagged processes signalled.
 */
export function killTagged(prefix: string, signal: NodeJS.Signals, opts: KillTaggedOptions = {}): number[] {
  return signalTagged(findTagged(prefix), signal, opts);
}

/** killTagged without blocking the event loop while /proc is read (see findTaggedAsync). */
export async function killTaggedAsync(prefix: string, signal: NodeJS.Signals, opts: KillTaggedOptions = {}): Promise<number[]> {
  return signalTagged(await findTaggedAsync(prefix), signal, opts);
}

function signalTagged(found: TaggedProcess[], signal: NodeJS.Signals, opts: KillTaggedOptions): number[] {
  const killed: number[] = [];
  const groups = new Set<number>(opts.groups ?? []);
  for (const p of found) {
    groups.add(p.pgid);
    if (p.pid === process.pid) continue;
    try {
      process.kill(p.pid, signal);
      killed.push(p.pid);
    } catch {
      // gone meanwhile
    }
  }
  const own = pgidOf('self');
  for (const g of groups) {
    if (g <= 1 || (g === own && !opts.ownGroup)) continue;
    try {
      process.kill(-g, signal);
    } catch {
      // the group is gone
    }
  }
  return killed;
}
