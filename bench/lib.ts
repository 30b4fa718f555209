/**
 * Shared helpers of the benchmarks: statistics, logging to stderr, a `dispyts node` launcher
 * bound to loopback (every process it starts is tracked by PID and killed on exit), and CPU
 * accounting of processes from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JobCluster } from '../src/index.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
/** Secret shared by the bench's daemons, echo server and clients. */
export const BENCH_SECRET = 'dispyts-bench-secret-0123456789';

/** Progress and diagnostics: stderr only (stdout carries the one JSON document). */
export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

export function round(v: number, digits = 3): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Percentile with linear interpolation between closest ranks; `p` in [0, 100]. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(idx);
  const hi = Math.ceil(idx);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (idx - lo);
}

export function median(values: readonly number[]): number {
  return percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
}

export interface Summary {
  n: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
}

export function summarize(samplesMs: readonly number[]): Summary {
  const s = [...samplesMs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return {
    n: s.length,
    p50Ms: round(percentile(s, 50), 4),
    p95Ms: round(percentile(s, 95), 4),
    p99Ms: round(percentile(s, 99), 4),
    meanMs: round(mean, 4),
    minMs: round(s[0] ?? NaN, 4),
    maxMs: round(s[s.length - 1] ?? NaN, 4),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Throws if `ms` passed since `start` (bounds every load loop in time). */
export function checkDeadline(start: number, ms: number, what: string): void {
  if (performance.now() - start > ms) throw new Error(`${what}: exceeded its time bound of ${ms} ms`);
}

// ---- child processes ----

const children = new Set<ChildProcess>();

function killAll(): void {
  for (const c of children) {
    try {
      if (c.pid && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.once('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: killing started processes`);
    killAll();
    process.exit(130);
  });
}

/**
 * The `dispyts scheduler` command line the benches use: one node, the bench secret on both
 * sides; `cli` another tree's CLI for a profile of that tree.
 */
export function schedulerArgs(host: string, node: string, prefix: string, cli = CLI): string[] {
  return [
    cli,
    'scheduler',
    '--host',
    host,
    '--port',
    '0',
    '--node',
    node,
    '--node-secret',
    BENCH_SECRET,
    '--cluster-secret',
    BENCH_SECRET,
    '--dest-path-prefix',
    prefix,
    '--log-level',
    'warn',
  ];
}

/** Spawns a tracked child; it is SIGKILLed by PID if this process exits first. */
export function spawnTracked(args: string[], opts: { env?: Record<string, string> } = {}): ChildProcess {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  return proc;
}

/** Resolves with the first match of `rex` on the child's stdout (rejects on exit or timeout). */
export function waitForLine(
  proc: ChildProcess,
  rex: RegExp,
  timeoutMs: number,
  what: string,
  stderr: () => string,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready in ${timeoutMs} ms: ${stderr()}`)), timeoutMs);
    const onData = (d: string): void => {
      out += d;
      const m = rex.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout!.off('data', onData);
        resolve(m);
      }
    };
    proc.stdout!.setEncoding('utf8').on('data', onData);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (code ${code}, signal ${signal}) before it was ready: ${stderr()}`));
    });
  });
}

/** Sends SIGTERM by PID, SIGKILL after `graceMs`; resolves once the child exited. */
export async function stopChild(proc: ChildProcess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  process.kill(proc.pid!, 'SIGTERM');
  const t = setTimeout(() => {
    try {
      process.kill(proc.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }, graceMs);
  await exited;
  clearTimeout(t);
}

export interface BenchNode {
  host: string;
  port: number;
  pid: number;
  /** performance.now() just before the spawn and when its ready line arrived. */
  spawnedAt: number;
  readyAt: number;
  log(): string;
  stop(): Promise<void>;
}

/** Starts `dispyts node` (from dist/) on a loopback address with an ephemeral port. */
export async function startNode(opts: {
  host: string;
  cpus: number;
  logLevel?: string;
  args?: string[];
  /** @default 20000 */
  readyTimeoutMs?: number;
}): Promise<BenchNode> {
  if (!/^127\.\d+\.\d+\.\d+$/.test(opts.host)) throw new Error(`refusing non-loopback host ${opts.host}`);
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-bench-node-'));
  const args = [
    CLI,
    'node',
    '--host',
    opts.host,
    '--port',
    '0',
    '--cpus',
    String(opts.cpus),
    '--secret',
    BENCH_SECRET,
    '--dest-path-prefix',
    prefix,
    '--log-level',
    opts.logLevel ?? 'info',
    ...(opts.args ?? []),
  ];
  const spawnedAt = performance.now();
  const proc = spawnTracked(args);
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    // Keep the tail only.
    stderr = (stderr + d).slice(-20_000);
  });
  proc.once('exit', () => rmSync(prefix, { recursive: true, force: true }));
  let m: RegExpExecArray;
  try {
    m = await waitForLine(proc, /ready on [^\s]+:(\d+)/, opts.readyTimeoutMs ?? 20_000, `node on ${opts.host}`, () => stderr);
  } catch (err) {
    await stopChild(proc, 1000).catch(() => undefined);
    throw err;
  }
  const readyAt = performance.now();
  return {
    host: opts.host,
    port: Number(m[1]),
    pid: proc.pid!,
    spawnedAt,
    readyAt,
    log: () => stderr,
    stop: () => stopChild(proc),
  };
}

// ---- clusters ----

/** Resolves once the cluster has set its computation up on a node (polls; no status listener). */
export async function clusterReady(cluster: JobCluster, timeoutMs = 15_000): Promise<void> {
  const start = performance.now();
  while (cluster.status().nodes.length === 0) {
    checkDeadline(start, timeoutMs, 'waiting for the cluster to initialize its node');
    await sleep(2);
  }
}

/** Closes a cluster, terminating whatever is left, never hanging the bench. */
export async function closeCluster(cluster: JobCluster | null): Promise<void> {
  if (!cluster || cluster.closed) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([cluster.close({ timeout: 5, terminate: true }), new Promise<void>((r) => (timer = setTimeout(r, 15_000)))]);
  clearTimeout(timer);
}

// ---- CPU accounting (/proc, Linux only) ----

const TICKS = 100; // USER_HZ on Linux

/** utime+stime of a process in ms, or null if unreadable. */
export function procCpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / TICKS;
  } catch {
    return null;
  }
}

/** PIDs whose parent is `pid`. */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === pid) out.push(Number(name));
    } catch {
      // raced with an exit
    }
  }
  return out;
}

export interface CpuSnapshot {
  client: number;
  daemon: number | null;
  runners: Map<number, number | null>;
}

/** CPU time so far of this process, the daemon and the daemon's runners. */
export function cpuSnapshot(daemonPid: number): CpuSnapshot {
  const u = process.cpuUsage();
  return {
    client: (u.user + u.system) / 1000,
    daemon: procCpuMs(daemonPid),
    runners: new Map(childPids(daemonPid).map((p) => [p, procCpuMs(p)])),
  };
}

/** CPU ms used between two snapshots, and as a share of `wallMs`. */
export function cpuDelta(a: CpuSnapshot, b: CpuSnapshot, wallMs: number): Record<string, unknown> {
  const runners: number[] = [];
  for (const [pid, v] of b.runners) {
    const before = a.runners.get(pid);
    if (v !== null && before !== null && before !== undefined) runners.push(round(v - before, 0));
  }
  const client = round(b.client - a.client, 0);
  const daemon = a.daemon !== null && b.daemon !== null ? round(b.daemon - a.daemon, 0) : null;
  const share = (v: number | null): number | null => (v === null ? null : round(v / wallMs, 2));
  return {
    clientMs: client,
    daemonMs: daemon,
    runnersMs: runners,
    clientShare: share(client),
    daemonShare: share(daemon),
    runnersShare: runners.map((r) => share(r)),
  };
}
