/**
 * Multi-host test harness on Linux network namespaces (issue 6, item 1).
 *
 * Layout for one run (names carry the test process's pid, so concurrent runs never collide):
 *
 *   `dt<pid>-br`   a namespace holding only the bridge `br0` and the bridge ends `v1`…`vN`
 *   `dt<pid>-h<i>` one namespace per test host, its `eth0` (veth peer of `v<i>`) at 10.77.0.<i>/24
 *
 * Every link is created from inside the bridge namespace (`ip -n … link add … peer … netns …`), so
 * nothing is ever configured in the root namespace and no host namespace has a route anywhere but
 * the private /24: nothing reaches the machine's real interfaces. Only IP literals are used.
 *
 * Daemons and clients run with `ip netns exec NS node …` (ip execs node, so the child's pid is the
 * node process). `cleanup()` kills every process started here by pid and deletes every namespace
 * made here; it also runs on process exit and on SIGINT/SIGTERM/SIGHUP.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, ROOT, TEST_SECRET } from '../helpers/daemon.js';

export const SUBNET = '10.77.0';

export interface NetnsHost {
  /** Namespace name. */
  ns: string;
  /** This host's address (10.77.0.<index>). */
  ip: string;
  index: number;
}

export interface NetnsNode {
  host: NetnsHost;
  ip: string;
  port: number;
  pid: number;
  proc: ChildProcess;
  prefix: string;
  name: string;
  log(): string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface NetnsNodeOptions {
  /** @default 1 */
  cpus?: number;
  /** @default TEST_SECRET */
  secret?: string;
  /** @default `host-<index>` */
  name?: string;
  args?: string[];
  /** @default 'info' */
  logLevel?: string;
  /** TCP port (and UDP discovery port) of the daemon; 0 picks a free one. @default 0 */
  port?: number;
}

export interface ClientResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The last line of stdout that parsed as JSON, if any. */
  json: unknown;
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', timeout: 10_000 });
}

/** All namespace names `ip netns list` shows. */
export function listNamespaces(): string[] {
  try {
    return ip('netns', 'list')
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0]!)
      .filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * Why the harness cannot run here, or undefined when it can: tries to add (and delete) a
 * namespace, which needs root (CAP_SYS_ADMIN) and a kernel that allows it.
 */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  const probe = `dt${process.pid}-probe`;
  try {
    ip('netns', 'add', probe);
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: string };
    const why = e.code === 'ENOENT' ? 'the `ip` command (iproute2) is not installed' : (e.stderr || e.message).trim();
    return `cannot create network namespaces (ip netns add refused: ${why})`;
  }
  try {
    ip('netns', 'exec', probe, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
  } catch (err) {
    return `cannot create a bridge inside a network namespace: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`;
  } finally {
    try {
      ip('netns', 'del', probe);
    } catch {
      // best effort
    }
  }
  return undefined;
}

/**
 * Removes namespaces a harness run that was killed outright (SIGKILL: no hook ran) left behind:
 * names `dt<pid>-…` whose pid is no longer alive, after killing what still runs in them.
 */
export function sweepStale(): string[] {
  const removed: string[] = [];
  for (const ns of listNamespaces()) {
    const m = /^dt(\d+)-/.exec(ns);
    if (!m || pidAlive(Number(m[1]))) continue;
    try {
      for (const pid of ip('netns', 'pids', ns)
        .split('\n')
        .map(Number)
        .filter((n) => n > 0)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      ip('netns', 'del', ns);
      removed.push(ns);
    } catch {
      // best effort
    }
  }
  return removed;
}

/** Every live harness, so the exit and signal hooks can clean them all up. */
const live = new Set<NetnsHarness>();
let hooked = false;
function hookProcess(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const h of live) h.cleanupSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const h of live) h.cleanupSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15));
    });
  }
}

export class NetnsHarness {
  /** Prefix of every namespace this harness makes. */
  readonly prefix: string;
  readonly bridgeNs: string;
  readonly hosts: NetnsHost[] = [];
  /** Every namespace created so far (the bridge's first). */
  readonly namespaces: string[] = [];
  /** Every process started so far, by pid (also the exited ones, for the leftover check). */
  readonly pids = new Set<number>();
  private readonly procs = new Set<ChildProcess>();
  private readonly dirs = new Set<string>();
  private static seq = 0;

  constructor() {
    this.prefix = `dt${process.pid}${NetnsHarness.seq++ ? `x${NetnsHarness.seq}` : ''}`;
    this.bridgeNs = `${this.prefix}-br`;
    hookProcess();
    live.add(this);
  }

  /** Creates the bridge namespace and `count` hosts at 10.77.0.1 … 10.77.0.<count>. */
  create(count: number): NetnsHost[] {
    if (count < 1 || count > 200) throw new Error(`bad host count ${count}`);
    this.addNs(this.bridgeNs);
    const br = ['-n', this.bridgeNs];
    ip(...br, 'link', 'set', 'lo', 'up');
    ip(...br, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    ip(...br, 'link', 'set', 'br0', 'up');
    for (let i = 1; i <= count; i++) {
      const ns = `${this.prefix}-h${i}`;
      this.addNs(ns);
      // Both ends are created in the bridge namespace and the peer moved straight into the host's:
      // neither ever exists in the root namespace.
      ip(...br, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip(...br, 'link', 'set', `v${i}`, 'master', 'br0');
      ip(...br, 'link', 'set', `v${i}`, 'up');
      const h = ['-n', ns];
      ip(...h, 'link', 'set', 'lo', 'up');
      ip(...h, 'addr', 'add', `${SUBNET}.${i}/24`, 'dev', 'eth0');
      ip(...h, 'link', 'set', 'eth0', 'up');
      this.hosts.push({ ns, ip: `${SUBNET}.${i}`, index: i });
    }
    return this.hosts;
  }

  private addNs(name: string): void {
    ip('netns', 'add', name);
    this.namespaces.push(name);
  }

  /** Spawns `argv` inside `host`'s namespace; tracked for cleanup. */
  spawnIn(host: NetnsHost, argv: string[], env: Record<string, string> = {}): ChildProcess {
    const proc = spawn('ip', ['netns', 'exec', host.ns, ...argv], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    if (proc.pid !== undefined) this.pids.add(proc.pid);
    this.procs.add(proc);
    proc.once('exit', () => this.procs.delete(proc));
    return proc;
  }

  /** Starts a `dispyts node` daemon on `host` (its own --dest-path-prefix and --name). */
  async startNode(host: NetnsHost, opts: NetnsNodeOptions = {}): Promise<NetnsNode> {
    const prefix = mkdtempSync(join(tmpdir(), `dispyts-netns-${host.index}-`));
    this.dirs.add(prefix);
    const name = opts.name ?? `host-${host.index}`;
    const proc = this.spawnIn(host, [
      process.execPath,
      CLI,
      'node',
      '--host',
      host.ip,
      '--port',
      String(opts.port ?? 0),
      '--cpus',
      String(opts.cpus ?? 1),
      '--secret',
      opts.secret ?? TEST_SECRET,
      '--dest-path-prefix',
      prefix,
      '--name',
      name,
      '--log-level',
      opts.logLevel ?? 'info',
      '--parent-pid',
      String(process.pid),
      ...(opts.args ?? []),
    ]);
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => {
      proc.once('exit', (code) => {
        rmSync(prefix, { recursive: true, force: true });
        this.dirs.delete(prefix);
        resolve(code);
      });
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`node on ${host.ip} (${host.ns}) not ready in 30 s: ${stderr}`)), 30_000);
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
        reject(new Error(`node on ${host.ip} (${host.ns}) exited with ${code} before it was ready: ${stderr}`));
      });
    });
    return {
      host,
      ip: host.ip,
      port,
      pid: proc.pid!,
      proc,
      prefix,
      name,
      log: () => stderr,
      exited,
      async stop(signal: NodeJS.Signals = 'SIGTERM') {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
        return exited;
      },
    };
  }

  /**
   * Runs the client script `test/netns/fixtures/<fixture>.ts` inside `host`'s namespace with
   * `args` and resolves when it exits (killed after `timeoutMs`).
   */
  runClient(host: NetnsHost, fixture: string, args: string[], timeoutMs = 30_000): Promise<ClientResult> {
    const script = join(ROOT, 'test', 'netns', 'fixtures', `${fixture}.ts`);
    const proc = this.spawnIn(host, [process.execPath, '--import', 'tsx', script, ...args]);
    let stdout = '';
    let stderr = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve) => {
      const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      proc.once('close', (code, signal) => {
        clearTimeout(timer);
        let json: unknown;
        for (const line of stdout.trim().split('\n').reverse()) {
          try {
            json = JSON.parse(line);
            break;
          } catch {
            // not JSON
          }
        }
        resolve({ code, signal, stdout, stderr, json });
      });
    });
  }

  /**
   * Starts the client script `test/netns/fixtures/<fixture>.ts` inside `host`'s namespace and
   * returns at once: its process (for signals), a way to wait for a JSON line on its stdout, and
   * its end.
   */
  startClient(host: NetnsHost, fixture: string, args: string[], timeoutMs = 60_000): LiveClient {
    const script = join(ROOT, 'test', 'netns', 'fixtures', `${fixture}.ts`);
    const proc = this.spawnIn(host, [process.execPath, '--import', 'tsx', script, ...args]);
    return liveClient(proc, timeoutMs);
  }

  /** Sets `host`'s network link down or up (its daemons and clients stay alive). */
  setLink(host: NetnsHost, up: boolean): void {
    ip('-n', host.ns, 'link', 'set', 'eth0', up ? 'up' : 'down');
  }

  /** Processes started here that are still running. */
  livePids(): number[] {
    return [...this.pids].filter(pidAlive);
  }

  /** Namespaces of this harness that still exist. */
  leftoverNamespaces(): string[] {
    return listNamespaces().filter((n) => n.startsWith(`${this.prefix}-`));
  }

  /** Stops every process (SIGTERM, then SIGKILL after `graceMs`) and deletes every namespace. */
  async cleanup(graceMs = 3000): Promise<void> {
    const procs = [...this.procs];
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const timer = setTimeout(() => {
              try {
                p.kill('SIGKILL');
              } catch {
                // gone
              }
            }, graceMs);
            p.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            try {
              p.kill('SIGTERM');
            } catch {
              clearTimeout(timer);
              resolve();
            }
          }),
      ),
    );
    this.cleanupSync();
  }

  /** Synchronous last resort (exit/signal hooks): SIGKILL by pid, delete namespaces and dirs. */
  cleanupSync(): void {
    // Only processes not yet reaped: a pid that already exited may have been reused.
    for (const p of this.procs) {
      if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    // Also anything else of ours that is still in a namespace of ours (defensive: a grandchild).
    for (const ns of this.leftoverNamespaces()) {
      try {
        for (const pid of ip('netns', 'pids', ns).split(/\s+/).filter(Boolean).map(Number)) {
          if (pid !== process.pid) process.kill(pid, 'SIGKILL');
        }
      } catch {
        // best effort
      }
    }
    for (const ns of [...this.namespaces].reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
    this.namespaces.length = 0;
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
    this.dirs.clear();
    live.delete(this);
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM means it exists but is not ours; as root that does not happen.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface LiveClient {
  proc: ChildProcess;
  /** Every JSON line printed so far. */
  lines: unknown[];
  /** Resolves with the first JSON line (past or future) for which `pred` holds. */
  waitFor<T = Record<string, unknown>>(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number, what?: string): Promise<T>;
  /** Resolves when the process ended (killed after the timeout given at start). */
  result: Promise<ClientResult>;
  stderr(): string;
}

/** Wraps a client process that prints one JSON object per line on stdout. */
export function liveClient(proc: ChildProcess, timeoutMs: number): LiveClient {
  let stdout = '';
  let stderr = '';
  let partial = '';
  const lines: unknown[] = [];
  const waiters = new Set<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: unknown) => void }>();
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    partial += d;
    for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        continue;
      }
      lines.push(v);
      for (const w of [...waiters]) {
        if (v && typeof v === 'object' && w.pred(v as Record<string, unknown>)) {
          waiters.delete(w);
          w.resolve(v);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const result = new Promise<ClientResult>((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, json: lines.at(-1) });
    });
  });
  return {
    proc,
    lines,
    result,
    stderr: () => stderr,
    waitFor<T>(pred: (l: Record<string, unknown>) => boolean, ms = 30_000, what = 'a line'): Promise<T> {
      const found = lines.find((l) => l && typeof l === 'object' && pred(l as Record<string, unknown>));
      if (found) return Promise.resolve(found as T);
      return new Promise<T>((resolve, reject) => {
        const w = {
          pred,
          resolve: (l: unknown) => {
            clearTimeout(timer);
            resolve(l as T);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`client printed no ${what} in ${ms} ms; stdout:\n${stdout}\nstderr:\n${stderr.slice(-4000)}`));
        }, ms);
        waiters.add(w);
        void result.then(() => {
          if (!waiters.has(w)) return;
          waiters.delete(w);
          clearTimeout(timer);
          reject(new Error(`client exited before printing ${what}; stdout:\n${stdout}\nstderr:\n${stderr.slice(-4000)}`));
        });
      });
    },
  };
}
