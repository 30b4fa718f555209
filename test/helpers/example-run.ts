/**
 * Runs an example as a user runs it, `node --import tsx examples/<name>.ts`, capturing its
 * output (used by every example test).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './daemon.js';

export interface ExampleRun {
  /** stdout so far. */
  out(): string;
  err(): string;
  write(text: string): void;
  /** Kills the example if it still runs. */
  kill(): void;
  /** Resolves with the exit code (after a kill on timeout, null). */
  exited: Promise<number | null>;
}

/** Starts an example; it is killed if it has not exited within `timeoutMs`. */
export function startExample(name: string, args: string[], timeoutMs = 120_000): ExampleRun {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples', `${name}.ts`), ...args], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdin!.on('error', () => undefined);
  const running = () => child.exitCode === null && child.signalCode === null;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    }),
  );
  return {
    out: () => out,
    err: () => err,
    write: (t) => {
      if (running()) child.stdin!.write(t);
    },
    kill: () => {
      if (running()) child.kill('SIGKILL');
    },
    exited,
  };
}

/** Runs an example to its end; asserts it exited 0 and returns its stdout lines. */
export async function runExample(name: string, args: string[]): Promise<string[]> {
  const r = startExample(name, args);
  const code = await r.exited;
  assert.equal(code, 0, `examples/${name}.ts exited with ${code}\nstdout:\n${r.out()}\nstderr:\n${r.err()}`);
  return r.out().trimEnd().split('\n');
}
