/**
 * `slurmNodes()`: dispyts nodes from a Slurm allocation, started from the client program. It
 * submits one batch job whose tasks each run `dispyts slurm-node` (one node per task, on the CPUs
 * Slurm gave that task), learns each node's address and port from the ready file its task writes
 * into a directory the submitting host shares with the compute hosts, and releases the
 * allocation (`scancel`) on `close()`. The nodes run with `--idle-exit`, so an allocation whose
 * program died ends by itself once no client has been connected for that long.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DispyError, invalidOption } from '../errors.js';
import { readSecretFile } from '../protocol/secret.js';
import { READY_FILE, type SlurmReady, parseHostFrom, readReadyFile } from '../protocol/slurm-ready.js';
import type { ModuleComputation } from './computation.js';
import { JobCluster, type JobClusterOptions } from './job-cluster.js';
import type { SlurmNode, SlurmNodesOptions } from './slurm-options.js';

export type { SlurmHostFrom } from '../protocol/slurm-ready.js';

export type { SlurmNode, SlurmNodesOptions } from './slurm-options.js';

// biome-ignore lint/suspicious/noExplicitAny: the constraint JobCluster's type parameter has (every function satisfies it)
type AnyFn = (...args: any[]) => unknown;

/** Job states in which Slurm still holds (or will hold) the allocation. */
const HELD = new Set([
  'PENDING',
  'CONFIGURING',
  'RUNNING',
  'COMPLETING',
  'SUSPENDED',
  'STOPPED',
  'RESIZING',
  'SIGNALING',
  'STAGE_OUT',
  'REQUEUED',
  'REQUEUE_HOLD',
  'REQUEUE_FED',
  'RESV_DEL_HOLD',
]);

/** Seconds `close()` waits for Slurm to report the job ended after `scancel`. */
const RELEASE_TIMEOUT = 120;

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a Slurm command (no shell) and resolves with its exit code and output. */
function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new DispyError('DISPY_ERR_SLURM', `\`${cmd}\` not found: is this a Slurm submit host (is it on PATH)?`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Single-quotes `s` for /bin/sh. */
function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function defaultCommand(): string[] {
  const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  if (!existsSync(cli))
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `cannot find the dispyts CLI at ${cli}; give slurmNodes the \`command\` that runs dispyts on the compute hosts`,
    );
  return [process.execPath, cli];
}

function validate(o: SlurmNodesOptions): void {
  if (!o || typeof o !== 'object') throw invalidOption('options', 'an object', o);
  const positiveInt = (name: string, v: unknown): void => {
    if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 1)) throw invalidOption(name, 'an integer >= 1', v);
  };
  if (o.nodes === undefined) throw invalidOption('nodes', 'an integer >= 1', o.nodes);
  positiveInt('nodes', o.nodes);
  positiveInt('cpusPerNode', o.cpusPerNode);
  positiveInt('nodesPerHost', o.nodesPerHost);
  const host = parseHostFrom(o.host ?? 'hostname');
  if ((o.nodesPerHost ?? 1) > 1 && host.kind !== 'loopback')
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `nodesPerHost ${o.nodesPerHost} needs a distinct address per node (host: 'loopback:N'): a node's identity is its address`,
    );
  for (const [name, v] of [
    ['idleExit', o.idleExit],
    ['readyTimeout', o.readyTimeout],
  ] as const)
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0))
      throw invalidOption(name, 'a number of seconds >= 0', v);
  if (o.idleExit === 0) throw invalidOption('idleExit', 'a number of seconds > 0 (it is what frees an abandoned allocation)', o.idleExit);
  if (o.pollInterval !== undefined && !(typeof o.pollInterval === 'number' && o.pollInterval >= 0.05 && o.pollInterval <= 60))
    throw invalidOption('pollInterval', 'a number of seconds from 0.05 to 60', o.pollInterval);
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535))
    throw invalidOption('port', 'an integer from 0 to 65535', o.port);
  if (
    o.time !== undefined &&
    !((Number.isInteger(o.time) && (o.time as number) > 0) || (typeof o.time === 'string' && /^[\d:-]+$/.test(o.time)))
  )
    throw invalidOption('time', "minutes or Slurm's [days-]hours:minutes:seconds", o.time);
  for (const [name, v] of [
    ['partition', o.partition],
    ['jobName', o.jobName],
  ] as const)
    if (v !== undefined && !(typeof v === 'string' && /^[\w.,:+@-]{1,128}$/.test(v))) throw invalidOption(name, 'a Slurm name', v);
  for (const [name, v] of [
    ['sbatchArgs', o.sbatchArgs],
    ['nodeArgs', o.nodeArgs],
    ['command', o.command],
  ] as const)
    if (v !== undefined && !(Array.isArray(v) && v.every((a) => typeof a === 'string')))
      throw invalidOption(name, 'an array of strings', v);
  if (o.command !== undefined && o.command.length === 0) throw invalidOption('command', 'a non-empty array of strings', o.command);
  for (const arg of o.nodeArgs ?? [])
    if (/^--(host|cpus|secret|secret-file|idle-exit|port)(=|$)/.test(arg))
      throw new DispyError('DISPY_ERR_INVALID_OPTION', `nodeArgs: ${arg} is set by slurmNodes (use its options)`);
  if (o.secret !== undefined && o.secretFile !== undefined)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', 'give secret or secretFile, not both');
  if (o.secret !== undefined && !(typeof o.secret === 'string' && o.secret.length >= 16))
    throw invalidOption('secret', 'a string of 16 or more characters', '…');
  if (o.onNode !== undefined && typeof o.onNode !== 'function') throw invalidOption('onNode', 'a function', o.onNode);
}

/**
 * Submits a batch job of `options.nodes` dispyts nodes and resolves once every one is ready.
 * Rejects with `DISPY_ERR_SLURM` if `sbatch` fails or the job ends first (with the end of its
 * output), `DISPY_ERR_TIMEOUT` after `readyTimeout`; the job is cancelled then.
 *
 * ```ts
 * await using slurm = await slurmNodes({ nodes: 4, cpusPerNode: 8, partition: 'compute', time: '1:00:00' });
 * const cluster = slurm.jobCluster(compute);      // closing it releases the allocation
 * ```
 */
export async function slurmNodes(options: SlurmNodesOptions): Promise<SlurmNodes> {
  validate(options);
  const command = options.command ?? defaultCommand();
  const sharedDir = resolve(options.sharedDir ?? join(homedir(), '.dispyts', 'slurm'));
  mkdirSync(sharedDir, { recursive: true, mode: 0o700 });
  // mkdtemp makes it 0700: only this user sees the secret and the ready files.
  const dir = mkdtempSync(join(sharedDir, 'alloc-'));
  let secret: string;
  let secretFile: string;
  let ownSecretFile = false;
  let jobId: string;
  try {
    if (options.secretFile !== undefined) {
      secretFile = isAbsolute(options.secretFile) ? options.secretFile : resolve(options.secretFile);
      secret = readSecretFile(secretFile);
    } else {
      secret = options.secret ?? randomBytes(32).toString('hex');
      secretFile = join(dir, 'secret');
      writeFileSync(secretFile, `${secret}\n`, { mode: 0o600, flag: 'wx' });
      ownSecretFile = true;
    }
    const scriptFile = join(dir, 'job.sh');
    writeFileSync(scriptFile, batchScript(options, command, dir, secretFile, ownSecretFile), { mode: 0o700 });
    const cpus = options.cpusPerNode ?? 1;
    const r = await run('sbatch', [
      '--parsable',
      `--job-name=${options.jobName ?? 'dispyts'}`,
      `--output=${join(dir, 'slurm-%j.out')}`,
      `--chdir=${dir}`,
      `--ntasks=${options.nodes}`,
      `--cpus-per-task=${cpus}`,
      `--ntasks-per-node=${options.nodesPerHost ?? 1}`,
      '--no-requeue',
      ...(options.partition ? [`--partition=${options.partition}`] : []),
      ...(options.time !== undefined ? [`--time=${options.time}`] : []),
      ...(options.sbatchArgs ?? []),
      scriptFile,
    ]);
    const m = /^(\d+)/.exec(r.stdout.trim());
    if (r.code !== 0 || !m) throw new DispyError('DISPY_ERR_SLURM', `sbatch failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    jobId = m[1]!;
  } catch (err) {
    // Nothing was submitted: nothing to cancel.
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const allocation = new SlurmNodes(jobId, dir, secret, ownSecretFile ? secretFile : null);
  try {
    await allocation.waitReady(options);
  } catch (err) {
    // close() cancels the job and removes the directory; the first error is the one to tell.
    await allocation.close().catch(() => undefined);
    throw err;
  }
  return allocation;
}

/** The batch script: one `dispyts slurm-node` per task, in one job step. */
function batchScript(o: SlurmNodesOptions, command: string[], dir: string, secretFile: string, ownSecretFile: boolean): string {
  const srun = [
    'srun',
    `--ntasks=${o.nodes}`,
    // Slurm 22.05 and later: a step does not inherit the job's --cpus-per-task.
    `--cpus-per-task=${o.cpusPerNode ?? 1}`,
    // One node failing does not take the others down, and none is killed when another exits.
    '--kill-on-bad-exit=0',
    '--wait=0',
    ...command,
    'slurm-node',
    '--ready-dir',
    dir,
    '--host-from',
    o.host ?? 'hostname',
    '--',
    '--secret-file',
    secretFile,
    '--idle-exit',
    String(o.idleExit ?? 60),
    '--port',
    String(o.port ?? 0),
    ...(o.nodeArgs ?? []),
  ];
  return [
    '#!/bin/sh',
    '# Written by dispyts slurmNodes(): one dispyts node per task.',
    srun.map(sh).join(' '),
    'status=$?',
    // The nodes read the secret when they start: it does not outlive the job, nor do the
    // addresses of nodes that are gone (a program killed before close() leaves the rest).
    `rm -f ${ownSecretFile ? `${sh(secretFile)} ` : ''}${sh(dir)}/ready-*.json`,
    'exit $status',
    '',
  ].join('\n');
}

/**
 * The nodes of one Slurm batch job. `close()` (or `await using`) cancels the job and waits until
 * Slurm no longer holds the allocation; `jobCluster()` makes a cluster whose `close()` does so.
 */
export class SlurmNodes {
  /** The Slurm job id. */
  readonly jobId: string;
  /** The allocation's directory (under `sharedDir`). */
  readonly dir: string;
  /** The nodes' shared secret (give it to the cluster). */
  readonly secret: string;
  /** The nodes, by task rank, once ready. */
  readonly nodes: SlurmNode[] = [];
  readonly #secretFile: string | null;
  #closing: Promise<void> | null = null;
  #gone = false;

  /** @internal */
  constructor(jobId: string, dir: string, secret: string, secretFile: string | null) {
    this.jobId = jobId;
    this.dir = dir;
    this.secret = secret;
    this.#secretFile = secretFile;
  }

  /** The job's state as Slurm tells it, or null once Slurm no longer knows the job. */
  async state(): Promise<string | null> {
    const r = await run('squeue', ['--noheader', `--jobs=${this.jobId}`, '--states=all', '--format=%T']);
    if (r.code !== 0) {
      if (/invalid job id/i.test(r.stderr)) return null;
      throw new DispyError('DISPY_ERR_SLURM', `squeue failed (exit ${r.code}): ${r.stderr.trim()}`);
    }
    return r.stdout.trim().split('\n')[0]?.trim() || null;
  }

  /** Whether Slurm still holds (or will hold) the allocation. */
  async held(): Promise<boolean> {
    const state = await this.state();
    return state !== null && HELD.has(state);
  }

  /** @internal Waits for every task's ready file. */
  async waitReady(o: SlurmNodesOptions): Promise<void> {
    const poll = (o.pollInterval ?? 1) * 1000;
    const deadline = o.readyTimeout ? Date.now() + o.readyTimeout * 1000 : Infinity;
    const seen = new Set<number>();
    let squeueFailingSince = 0;
    for (let round = 0; ; round++) {
      if (o.signal?.aborted)
        throw new DispyError('DISPY_ERR_SLURM', `waiting for the nodes of Slurm job ${this.jobId} was aborted`, { cause: o.signal.reason });
      for (const name of readdirSync(this.dir)) {
        const m = READY_FILE.exec(name);
        if (!m || seen.has(Number(m[1]))) continue;
        const ready: SlurmReady = readReadyFile(join(this.dir, name));
        if (ready.jobId !== this.jobId) continue;
        seen.add(ready.task);
        const node: SlurmNode = {
          host: ready.host,
          port: ready.port,
          cpus: ready.cpus,
          name: ready.name,
          slurmNode: ready.slurmNode,
          task: ready.task,
        };
        this.nodes.push(node);
        this.nodes.sort((a, b) => a.task - b.task);
        o.onNode?.(node);
      }
      if (this.nodes.length >= o.nodes) {
        // Every node has read it.
        if (this.#secretFile) rmSync(this.#secretFile, { force: true });
        return;
      }
      if (round % 5 === 0) {
        let state: string | null | undefined;
        try {
          state = await this.state();
          squeueFailingSince = 0;
        } catch (err) {
          squeueFailingSince ||= Date.now();
          if (Date.now() - squeueFailingSince > 60_000) throw err;
        }
        if (state !== undefined && (state === null || !HELD.has(state))) {
          this.#gone = true;
          throw new DispyError(
            'DISPY_ERR_SLURM',
            `Slurm job ${this.jobId} ended (${state ?? 'no longer known'}) with ${this.nodes.length} of ${o.nodes} nodes ready${this.#outputTail()}`,
          );
        }
      }
      if (Date.now() > deadline)
        throw new DispyError(
          'DISPY_ERR_TIMEOUT',
          `${this.nodes.length} of ${o.nodes} nodes of Slurm job ${this.jobId} ready after ${o.readyTimeout} s`,
        );
      await new Promise((r) => setTimeout(r, poll));
    }
  }

  /** The last lines of the job's output, for an error message. */
  #outputTail(): string {
    try {
      const text = readFileSync(join(this.dir, `slurm-${this.jobId}.out`), 'utf8').trim();
      return text ? `; its output ends:\n${text.split('\n').slice(-15).join('\n')}` : '';
    } catch {
      return '';
    }
  }

  /**
   * A `JobCluster` on these nodes with their secret; its `close()` releases the allocation too
   * (once the cluster closed).
   */
  jobCluster<F extends AnyFn>(
    computation: F | string | ModuleComputation,
    options: Omit<JobClusterOptions, 'nodes' | 'secret'> = {},
  ): JobCluster<F> {
    return new SlurmJobCluster<F>(this, computation, {
      ...options,
      nodes: this.nodes.map((n) => ({ host: n.host, port: n.port })),
      secret: this.secret,
    });
  }

  /**
   * Cancels the job (`scancel`) and resolves once Slurm no longer holds the allocation (the
   * nodes stop on SIGTERM, terminating jobs still running); removes the allocation's directory.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    try {
      if (this.#gone) return;
      const r = await run('scancel', [this.jobId]);
      if (r.code !== 0 && (await this.held()))
        throw new DispyError('DISPY_ERR_SLURM', `scancel ${this.jobId} failed (exit ${r.code}): ${r.stderr.trim()}`);
      const deadline = Date.now() + RELEASE_TIMEOUT * 1000;
      for (let wait = 100; await this.held(); wait = Math.min(wait * 2, 2000)) {
        if (Date.now() > deadline)
          throw new DispyError('DISPY_ERR_SLURM', `Slurm job ${this.jobId} still holds its allocation ${RELEASE_TIMEOUT} s after scancel`);
        await new Promise((r) => setTimeout(r, wait));
      }
      this.#gone = true;
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A JobCluster that releases its Slurm allocation once it closed. */
class SlurmJobCluster<F extends AnyFn> extends JobCluster<F> {
  readonly #allocation: SlurmNodes;

  constructor(allocation: SlurmNodes, computation: F | string | ModuleComputation, options: JobClusterOptions) {
    super(computation, options);
    this.#allocation = allocation;
  }

  override async close(options: { timeout?: number; terminate?: boolean } = {}): Promise<boolean> {
    const closed = await super.close(options);
    if (closed) await this.#allocation.close();
    return closed;
  }
}
