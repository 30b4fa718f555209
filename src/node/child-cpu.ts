/**
 * CPU time of a process's waited-for children (Linux `/proc/self/stat` fields cutime + cstime),
 * so a job's CPU time includes the programs it ran: `process.cpuUsage()` counts only the runner
 * itself. Children count once they have exited and been reaped.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';

let fd: number | null | undefined;
let ticksPerSecond = 0;
const buf = Buffer.alloc(2048);

function clockTicks(): number {
  if (ticksPerSecond) return ticksPerSecond;
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    ticksPerSecond = Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    ticksPerSecond = 100;
  }
  return ticksPerSecond;
}

/** Seconds of user+system CPU used by this process's reaped children so far (0 where unknown). */
export function childrenCpuSeconds(): number {
  if (fd === undefined) {
    try {
      fd = openSync('/proc/self/stat', 'r');
    } catch {
      fd = null;
    }
  }
  if (fd === null) return 0;
  try {
    const n = readSync(fd, buf, 0, buf.length, 0);
    const s = buf.toString('latin1', 0, n);
    // Fields after the command name in parentheses: state is field 3, cutime 16, cstime 17.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[13]) + Number(f[14]);
    return Number.isFinite(ticks) ? ticks / clockTicks() : 0;
  } catch {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    fd = null;
    return 0;
  }
}
