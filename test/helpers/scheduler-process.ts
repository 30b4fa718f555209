/**
 * Starts a real `dispyts scheduler` as a child process (ephemeral port, its nodes given with
 * `--node`, dying with the test process), and client programs (test/fixtures/shared-client.mjs)
 * that talk to it, for the SharedJobCluster tests and the benchmark. Every process is ended by
 * PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './daemon.js';
import { killOnExit } from './procs.js';

// The one scheduler starter, under the name these tests import it by.
export { type StartSchedulerOptions, type TestScheduler, startScheduler } from './scheduler.js';

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
  killOnExit(proc);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
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
