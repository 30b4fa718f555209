/**
 * What a node reports about its machine: CPU count and available resources (available CPU %,
 * free memory bytes, free disk bytes under the node's prefix, available swap %), read from
 * `os`, `/proc` and `fs.statfs`. Every figure is finite; unknown ones fall back to safe values.
 */
import os from 'node:os';
import { readFileSync, statfsSync } from 'node:fs';
import type { AvailInfo } from '../protocol/messages.js';

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

function meminfo(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const line of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
      const m = /^(\w+):\s+(\d+)\s*kB/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]) * 1024);
    }
  } catch {
    // not Linux: os.freemem() below
  }
  return out;
}

function finiteOr(v: number, fallback: number): number {
  return Number.isFinite(v) ? v : fallback;
}

export class HostMetrics {
  readonly machineCpus = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  readonly #diskPath: string;
  #last = cpuTimes();
  #lastCpu = 100;

  constructor(diskPath: string) {
    this.#diskPath = diskPath;
  }

  /** Available CPU % since the previous sample. */
  #cpuAvailable(): number {
    const now = cpuTimes();
    const total = now.total - this.#last.total;
    const idle = now.idle - this.#last.idle;
    if (total > 0) {
      this.#lastCpu = Math.min(100, Math.max(0, (100 * idle) / total));
      this.#last = now;
    }
    return this.#lastCpu;
  }

  sample(): AvailInfo {
    const mem = meminfo();
    const memory = mem.get('MemAvailable') ?? os.freemem();
    const swapTotal = mem.get('SwapTotal') ?? 0;
    const swapFree = mem.get('SwapFree') ?? 0;
    const swap = swapTotal > 0 ? (100 * swapFree) / swapTotal : 100;
    let disk = 0;
    try {
      const s = statfsSync(this.#diskPath);
      disk = Number(s.bavail) * Number(s.bsize);
    } catch {
      disk = 0;
    }
    return {
      cpu: finiteOr(Math.round(this.#cpuAvailable() * 100) / 100, 100),
      memory: finiteOr(memory, 0),
      disk: finiteOr(disk, 0),
      swap: finiteOr(Math.round(swap * 100) / 100, 100),
    };
  }
}

/** `platform` string reported by nodes, e.g. `linux x64 Node v20.20.2`. */
export function platformString(): string {
  return `${os.platform()} ${os.arch()} Node ${process.version}`;
}
