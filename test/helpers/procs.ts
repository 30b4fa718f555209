/**
 * Reads /proc directly (not through the product's own process-tag.ts) to find the processes a
 * node tagged for its jobs, and kills by pid what a test started, so a failing test leaves
 * nothing running.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface TaggedProc {
  pid: number;
  tag: string;
  /** The command line, space-separated. */
  cmd: string;
}

/** Every live process whose DISPYTS_TAG starts with `prefix` (e.g. `127.0.0.40/`). */
export function taggedProcs(prefix: string): TaggedProc[] {
  const out: TaggedProc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let env: string;
    let cmd: string;
    let stat: string;
    try {
      env = readFileSync(`/proc/${name}/environ`, 'utf8');
      cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // A zombie is dead already (its parent has not reaped it yet).
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
    const tag = env
      .split('\0')
      .find((e) => e.startsWith('DISPYTS_TAG='))
      ?.slice('DISPYTS_TAG='.length);
    if (tag?.startsWith(prefix)) out.push({ pid: Number(name), tag, cmd: cmd.split('\0').join(' ').trim() });
  }
  return out;
}

/** SIGKILLs every pid of `pids` still alive (cleanup after a test, whatever its outcome). */
export function killPids(pids: Iterable<number>): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Children the test process started and has not seen exit. */
const children = new Set<ChildProcess>();
function killChildren(): void {
  for (const p of children) {
    try {
      p.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.once('exit', killChildren);
// The test runner ends a timed-out file with a signal; take our children along.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killChildren();
    process.exit(128 + 15);
  });
}

/** Kills `proc` (by its PID) if the test process exits or is signalled first; returns it. */
export function killOnExit<P extends ChildProcess>(proc: P): P {
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}
