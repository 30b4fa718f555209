/**
 * Starts real `dispyts node` daemons as child processes on loopback addresses with ephemeral
 * ports, for tests and benchmarks, and makes sure none outlives the test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killOnExit } from './procs.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
/** Secret every test daemon and client shares unless a test says otherwise. */
export const TEST_SECRET = 'dispyts-test-secret-0123456789';

export interface TestNode {
  host: string;
  port: number;
  pid: number;
  proc: ChildProcess;
  prefix: string;
  /** Everything the daemon wrote to stderr (its pino log) so far. */
  log(): string;
  /** Everything it wrote to stdout so far (its ready line, its page's URL with --httpd). */
  stdout(): string;
  /** Resolves with the daemon's exit code once it exited. */
  exited: Promise<number | null>;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The `nodes` and `secret` options of a cluster on these test nodes: `{ ...clusterOn(node), name }`. */
export function clusterOn(...nodes: Pick<TestNode, 'host' | 'port'>[]): { nodes: { host: string; port: number }[]; secret: string } {
  return { nodes: nodes.map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET };
}

export interface StartNodeOptions {
  /** @default '127.0.0.2' */
  host?: string;
  /** @default 2 */
  cpus?: number;
  /** @default TEST_SECRET */
  secret?: string;
  name?: string;
  /** More command-line arguments. */
  args?: string[];
  /** Extra environment. */
  env?: Record<string, string>;
  /** @default 'debug' */
  logLevel?: string;
}

export async function startNode(opts: StartNodeOptions = {}): Promise<TestNode> {
  const host = opts.host ?? '127.0.0.2';
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-test-node-'));
  const args = [
    CLI,
    'node',
    '--host',
    host,
    '--port',
    '0',
    '--cpus',
    String(opts.cpus ?? 2),
    '--secret',
    opts.secret ?? TEST_SECRET,
    '--dest-path-prefix',
    prefix,
    '--log-level',
    opts.logLevel ?? 'debug',
    // Dies with this test process even if it is killed outright.
    '--parent-pid',
    String(process.pid),
    ...(opts.name ? ['--name', opts.name] : []),
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  killOnExit(proc);
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => {
      rmSync(prefix, { recursive: true, force: true });
      resolve(code);
    });
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node on ${host} not ready in 45 s: ${stderr}`)), 45_000);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /ready on [^\s]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`node on ${host} exited with ${code} before it was ready: ${stderr}`));
    });
  });
  return {
    host,
    port,
    pid: proc.pid!,
    proc,
    prefix,
    log: () => stderr,
    stdout: () => out,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Starts several nodes on consecutive loopback addresses from `first` (e.g. 127.0.0.2). */
export async function startNodes(count: number, opts: StartNodeOptions & { first?: number } = {}): Promise<TestNode[]> {
  const first = opts.first ?? 2;
  return Promise.all(Array.from({ length: count }, (_, i) => startNode({ ...opts, host: `127.0.0.${first + i}` })));
}

/** Whether a process is alive. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 20 ms until it returns truthy or `timeoutMs` passes. */
export async function until<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `p`, or a rejection naming `what` if it has not settled within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle in ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * Runs `dispyts ARGS` to its end with `stdin` as its input (killed after 30 s): for commands
 * that print and exit, or must refuse to start. Resolves with the exit code and the output.
 */
export function runCli(args: string[], stdin = ''): Promise<{ code: number | null; out: string; err: string }> {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  proc.stdin!.end(stdin);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    }),
  );
}
