/**
 * Program computations run with an interpreter: `['python3', 'script.py']` (the interpreter and
 * its arguments, then the script) or `{ program, interpreter }`. Without one, a file with a `#!`
 * line runs as such (the node makes it executable), a `.js`/`.mjs`/`.cjs` file runs with the
 * node's own Node.js, and an executable file runs as itself; anything else is refused, naming
 * the ways out.
 */
import { accessSync, closeSync, constants as fsc, openSync, readSync, type Stats, statSync } from 'node:fs';
import { delimiter, extname, resolve } from 'node:path';
import { DispyError, invalidOption } from '../errors.js';
import { resolveProgram } from './file-transfer.js';

/** `{ program, interpreter }`: a script and what runs it. */
export interface ProgramComputation {
  /**
   * The script: a path (absolute, or relative to the current directory), else a name looked up
   * on PATH. It is shipped to each node into the computation's directory.
   * @example program: './update.py'
   */
  program: string;
  /**
   * The command that runs the script on the nodes (looked up on the node's PATH), with its
   * arguments; the script's path and the job's arguments follow. `'node'` is the Node.js that
   * runs the node daemon.
   * @default none for an executable file or one with a `#!` line; `'node'` for `.js`, `.mjs`, `.cjs`
   * @example interpreter: ['python3', '-u']
   */
  interpreter?: string | string[];
}

/** Interpreter of `.js`/`.mjs`/`.cjs` programs: the runner's own `process.execPath`. */
export const NODE_INTERPRETER = 'node';

/** Whether `c` is a program computation given with its interpreter (an array or `{ program }`). */
export function isInterpretedForm(c: unknown): c is string[] | ProgramComputation {
  return Array.isArray(c) || (c !== null && typeof c === 'object' && typeof (c as ProgramComputation).program === 'string');
}

/** The script's local path and the interpreter argv (null: the file runs as itself). */
export function resolveScript(c: string | string[] | ProgramComputation): { path: string; interpreter: string[] | null } {
  let program: string;
  let interpreter: string[] | null = null;
  if (typeof c === 'string') program = c;
  else if (Array.isArray(c)) {
    if (c.length < 2 || c.some((a) => typeof a !== 'string' || a.length === 0))
      throw invalidOption('computation', "[interpreter, ...its arguments, script] (e.g. ['python3', 'script.py'])", c);
    program = c.at(-1) as string;
    interpreter = c.slice(0, -1);
  } else {
    program = c.program;
    const i = c.interpreter;
    if (i !== undefined) {
      const list = typeof i === 'string' ? [i] : i;
      if (!Array.isArray(list) || list.length === 0 || list.some((a) => typeof a !== 'string' || a.length === 0))
        throw invalidOption('interpreter', 'a command, or an array of a command and its arguments', i);
      interpreter = list;
    }
  }
  if (interpreter && interpreter.length > 64) throw invalidOption('interpreter', 'at most 64 words', interpreter);
  const path = findScript(program, interpreter !== null);
  if (interpreter) return { path, interpreter };
  if (hasShebang(path)) return { path, interpreter: null };
  if (['.js', '.mjs', '.cjs'].includes(extname(path))) return { path, interpreter: [NODE_INTERPRETER] };
  try {
    accessSync(path, fsc.X_OK);
  } catch {
    throw new DispyError(
      'DISPY_ERR_COMPUTATION',
      `program ${path} is not executable and has no #! line: make it executable (chmod +x ${path}), start it with a #! line, ` +
        `or name its interpreter: new JobCluster(['python3', '${program}']) or new JobCluster({ program: '${program}', interpreter: 'python3' })`,
    );
  }
  return { path, interpreter: null };
}

/** A script file: an existing path (executable or not), else a file on PATH. */
function findScript(program: string, interpreted: boolean): string {
  if (typeof program !== 'string' || program.length === 0) throw invalidOption('program', 'a file path', program);
  const here = resolve(program);
  if (isFile(here)) return here;
  if (!interpreted || program.includes('/')) return resolveProgram(program);
  // A script for an interpreter need not be executable.
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const c = resolve(dir || '.', program);
    if (isFile(c)) return c;
  }
  throw new DispyError('DISPY_ERR_COMPUTATION', `program \`${program}\` is not a file and was not found on PATH`);
}

function isFile(p: string): boolean {
  let st: Stats;
  try {
    st = statSync(p);
  } catch {
    return false;
  }
  return st.isFile();
}

function hasShebang(path: string): boolean {
  let fd: number | null = null;
  try {
    fd = openSync(path, 'r');
    const b = Buffer.alloc(2);
    return readSync(fd, b, 0, 2, 0) === 2 && b.toString('latin1') === '#!';
  } catch {
    return false;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}
