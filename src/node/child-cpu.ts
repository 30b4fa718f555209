/**
 * CPU time of a process's waited-for children (Linux `/proc/self/stat` fields cutime + cstime),
 * so a job's CPU time includes the programs it ran: `process.cpuUsage()` counts only the runner
 * itself. Children count once they have exited and been reaped.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { endianness } from 'node:os';

let fd: number | null | undefined;
let ticksPerSecond = 0;
const buf = Buffer.alloc(2048);
/** The auxiliary vector entry that holds the kernel's clock ticks per second (USER_HZ). */
const AT_CLKTCK = 17n;

/**
 * Clock ticks per second, as `getconf CLK_TCK` says, read from this process's auxiliary vector
 * (`/proc/self/auxv`: pairs of native words) instead of spawning a program: a spawn on a job's
 * path costs milliseconds. 100 (Linux's USER_HZ) where it cannot be read.
 */
export function clockTicks(): number {
  if (ticksPerSecond) return ticksPerSecond;
  ticksPerSecond = 100;
  try {
    const auxv = readFileSync('/proc/self/auxv');
    const size = process.arch === 'arm' || process.arch === 'ia32' ? 4 : 8;
    const le = endianness() === 'LE';
    const word = (at: number): bigint =>
      size === 4 ? BigInt(le ? auxv.readUInt32LE(at) : auxv.readUInt32BE(at)) : le ? auxv.readBigUInt64LE(at) : auxv.readBigUInt64BE(at);
    for (let i = 0; i + 2 * size <= auxv.length; i += 2 * size) {
      const type = word(i);
      if (type === 0n) break;
      if (type === AT_CLKTCK) {
        const n = Number(word(i + size));
        if (n > 0 && n <= 100_000) ticksPerSecond = n;
        break;
      }
    }
  } catch {
    // Not Linux, or not readable: the default stands.
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
