/**
 * Program computations inside a job runner: the program file was shipped into the computation's
 * directory before setup; each job spawns it with the job's arguments as argv (`String(arg)`),
 * with the computation's directory as working directory and first on PATH (as dispy does).
 *
 * The program stays in the runner's process group (no `detached`), so terminating the job
 * (SIGTERM, then SIGKILL, to the group) takes the program and whatever it started along, and it
 * inherits the job's tag (host/process-tag.ts), so do its children that leave the group. Its
 * stdout and stderr go through the runner's `process.stdout/stderr.write`, which the runner
 * captures per job. The job's result is the exit code; a program killed by a signal fails the
 * job (Terminated) with an exception naming the signal.
 */
import { spawn } from 'node:child_process';
import { chmodSync, type Stats, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { DispyError } from '../errors.js';
import type { Computation } from '../protocol/messages.js';
import type { LoadContext, LoadedComputation } from './function-loader.js';
import { currentAbortSignal } from './runner-abort.js';

/** After the program exited, how long (ms) its output pipes may stay open (held by a child it left running). */
const PIPE_GRACE_MS = 200;

/** The command and leading arguments that run the program file at `path`. */
function programCommand(interpreter: string[] | undefined, path: string): [string, string[]] {
  if (!interpreter) return [path, []];
  const [first, ...rest] = interpreter as [string, ...string[]];
  // `node`: the Node.js this runner runs on, whatever the node's PATH says.
  return [first === 'node' ? process.execPath : first, [...rest, path]];
}

export function loadProgramComputation(c: Extract<Computation, { kind: 'program' }>, ctx: LoadContext): LoadedComputation {
  const path = join(ctx.dir, c.file);
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    throw new DispyError('DISPY_ERR_COMPUTATION', `program ${c.file} was not transferred to ${ctx.dir}`);
  }
  if (!st.isFile()) throw new DispyError('DISPY_ERR_COMPUTATION', `program ${c.file} is not a file`);
  // Shipped with its mode; executable for us in any case.
  if ((st.mode & 0o500) !== 0o500) chmodSync(path, (st.mode & 0o777) | 0o700);
  const fn = (...args: unknown[]): Promise<number> =>
    new Promise<number>((resolve, reject) => {
      // Read per job: the environment carries the running job's tag.
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${ctx.dir}${delimiter}${process.env.PATH ?? ''}` };
      delete env.DISPYTS_RUNNER;
      // With an interpreter, it runs the file (interpreter.ts on the client).
      const [command, argv] = programCommand(c.interpreter, path);
      const child = spawn(command, [...argv, ...args.map((a) => String(a))], { cwd: ctx.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.setEncoding('utf8').on('data', (d: string) => process.stdout.write(d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => process.stderr.write(d));
      let settled = false;
      let grace: NodeJS.Timeout | null = null;
      // A polite cancel: SIGINT to the job's process group (the runner ignores it), as dispy does.
      const abort = currentAbortSignal();
      const interrupt = (): void => {
        try {
          process.kill(-process.pid, 'SIGINT');
        } catch {
          // the group is gone
        }
      };
      abort?.addEventListener('abort', interrupt, { once: true });
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (settled) return;
        settled = true;
        abort?.removeEventListener('abort', interrupt);
        if (grace) clearTimeout(grace);
        if (signal) reject(new Error(`program ${c.name} was killed by signal ${signal}`));
        else resolve(code ?? 0);
      };
      child.once('error', (err) => {
        if (settled) return;
        settled = true;
        reject(new DispyError('DISPY_ERR_COMPUTATION', `cannot run program ${c.name}: ${err.message}`));
      });
      // 'close' comes once the program exited and its output is read; a child it left running
      // may hold the pipes open, so after exit the output is waited for only briefly.
      child.once('close', finish);
      child.once('exit', (code, signal) => {
        grace = setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          finish(code, signal);
        }, PIPE_GRACE_MS);
      });
    });
  return { fn, classes: new Map() };
}
