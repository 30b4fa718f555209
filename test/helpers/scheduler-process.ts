/**
 * Starts a real `dispyts scheduler` as a child process (ephemeral port, its nodes given with
 * `--node`, dying with the test process), and client programs (test/fixtures/shared-client.mjs)
 * that talk to it, for the SharedJobCluster tests and the benchmark. Every process is ended by
 * PID.
 */
import { startScheduler as startSchedulerProcess, type TestScheduler as BaseScheduler } from './scheduler.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './daemon.js';

export type TestScheduler = BaseScheduler & {
  /** The `--httpd` monitor's URL, when asked for. */
  monitor: string | null;
};

export interface StartSchedulerOptions {
  host: string;
  /** `host:port` of each node. */
  nodes: string[];
  nodeSecret: string;
  clusterSecret: string;
  /** @default 'fsfs' */
  policy?: 'fsfs' | 'fair' | 'early';
  zombieInterval?: number;
  pulseInterval?: number;
  /** `--httpd HOST:0` when set. */
  httpdHost?: string;
  /** A fixed port (to restart a scheduler at the same address). @default 0 */
  port?: number;
  args?: string[];
  /** @default 'info' */
  logLevel?: string;
}

const started = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of started) {
    try {
      p.kill('SIGKILL');
    } catch {
      // gone
    }
  }
});

function track(proc: ChildProcess, cleanup: () => void): Promise<number | null> {
  started.add(proc);
  return new Promise((resolve) => {
    proc.once('exit', (code) => {
      started.delete(proc);
      cleanup();
      resolve(code);
    });
  });
}

/** The real `dispyts scheduler` (test/helpers/scheduler.ts starts it) with this file's option names. */
export async function startScheduler(opts: StartSchedulerOptions): Promise<TestScheduler> {
  const s = await startSchedulerProcess({
    host: opts.host,
    nodes: opts.nodes,
    nodeSecret: opts.nodeSecret,
    clusterSecret: opts.clusterSecret,
    port: opts.port ?? 0,
    logLevel: opts.logLevel ?? 'info',
    args: [
      '--policy',
      opts.policy ?? 'fsfs',
      ...(opts.zombieInterval !== undefined ? ['--zombie-interval', String(opts.zombieInterval)] : []),
      ...(opts.pulseInterval !== undefined ? ['--pulse-interval', String(opts.pulseInterval)] : []),
      ...(opts.httpdHost ? ['--httpd', `${opts.httpdHost}:0`] : []),
      ...(opts.args ?? []),
    ],
  });
  return Object.assign(s, { monitor: s.httpUrl });
}

/** One line a client program printed (JSON). */
export type ClientLine = Record<string, any>;

export interface TestClient {
  pid: number;
  proc: ChildProcess;
  /** Lines printed so far. */
  lines: ClientLine[];
  /** Resolves with the first printed line for which `pred` holds. */
  line(pred: (l: ClientLine) => boolean, timeoutMs?: number): Promise<ClientLine>;
  log(): string;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
  /** Writes a line to its stdin (`waitForGo`). */
  go(): void;
}

export const SHARED_CLIENT = join(ROOT, 'test', 'fixtures', 'shared-client.mjs');

/** Runs test/fixtures/shared-client.mjs (on dist/: build first) with `config` (JSON in argv). */
export function startClient(config: Record<string, unknown>): TestClient {
  const proc = spawn(process.execPath, [SHARED_CLIENT, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const lines: ClientLine[] = [];
  const waiters: { pred: (l: ClientLine) => boolean; resolve: (l: ClientLine) => void }[] = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!text.trim()) continue;
      let l: ClientLine;
      try {
        l = JSON.parse(text) as ClientLine;
      } catch {
        l = { text };
      }
      lines.push(l);
      for (const w of [...waiters]) {
        if (w.pred(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  const exited = track(proc, () => undefined);
  return {
    pid: proc.pid!,
    proc,
    lines,
    line(pred, timeoutMs = 30_000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = {
          pred,
          resolve: (l: ClientLine) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(
            new Error(
              `client ${proc.pid}: no such line in ${timeoutMs} ms; lines ${JSON.stringify(lines).slice(0, 2000)}; stderr ${stderr.slice(-2000)}`,
            ),
          );
        }, timeoutMs);
        waiters.push(w);
        void exited.then(() => {
          if (!waiters.includes(w)) return;
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(timer);
          reject(
            new Error(
              `client ${proc.pid} exited without such a line; lines ${JSON.stringify(lines).slice(0, 2000)}; stderr ${stderr.slice(-2000)}`,
            ),
          );
        });
      });
    },
    log: () => stderr,
    exited,
    go() {
      proc.stdin!.write('go\n');
    },
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
