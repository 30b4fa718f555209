/**
 * `dispyts slurm-node`: what each task of a `slurmNodes()` batch job runs on its compute host.
 * It picks the node's address (--host-from), offers the CPUs Slurm gave the task, runs `dispyts
 * node` with the options after `--`, and once the node serves writes its ready file into
 * --ready-dir, a directory the submitting host sees too, for the client to connect.
 */
import { lookup } from 'node:dns/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { DispyError } from '../errors.js';
import { type CliCommand, HELP_OPTION, helpText, parseCommand } from './options.js';
import { type ParsedHostFrom, parseHostFrom, writeReadyFile } from '../protocol/slurm-ready.js';
import { nodeCommand } from './node-command.js';

/** `dispyts slurm-node`'s options: its parser and `--help` come from this table. */
export const SLURM_NODE_COMMAND = {
  usage: 'dispyts slurm-node --ready-dir DIR [--host-from SPEC] [-- node options]',
  intro: `Runs one dispyts node as a task of a Slurm job step (slurmNodes() submits such jobs): offers
the CPUs Slurm gave the task (SLURM_CPUS_PER_TASK, else 1) and, once the node serves, writes
DIR/ready-<SLURM_PROCID>.json with its address and port.`,
  column: 19,
  options: [
    { name: 'ready-dir', arg: 'DIR', help: `a directory the client's host also sees (shared home or scratch)` },
    {
      name: 'host-from',
      arg: 'SPEC',
      help: [
        `how the node's address is chosen (default hostname):`,
        `  hostname        what this host's name resolves to (not loopback)`,
        '  interface:NAME  the IPv4 address of network interface NAME (e.g. ib0)',
        '  loopback:N      127.0.0.(N + SLURM_PROCID): client and tasks on one',
        '                  machine (tests, a one-machine Slurm)',
      ],
    },
    HELP_OPTION,
  ],
  outro: `Options after -- go to dispyts node (dispyts node --help), except --host and --cpus, which
are set here. Unless given there, --name is <Slurm node name>-<task> and --dest-path-prefix a
fresh directory under the system's temporary directory, removed when the node exits.`,
} as const satisfies CliCommand;

/** `dispyts slurm-node --help`. */
export const SLURM_NODE_HELP = helpText(SLURM_NODE_COMMAND);

/** The task's view of Slurm's environment. */
export interface SlurmTaskEnv {
  jobId: string;
  task: number;
  cpus: number;
  slurmNode: string;
}

/** Reads the task's job, rank and CPUs from the environment srun gives it. */
export function slurmTaskEnv(env: NodeJS.ProcessEnv): SlurmTaskEnv {
  const jobId = env.SLURM_JOB_ID ?? env.SLURM_JOBID;
  const task = Number(env.SLURM_PROCID);
  if (!jobId || env.SLURM_PROCID === undefined || !Number.isInteger(task) || task < 0)
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      'dispyts slurm-node runs as a task of a Slurm job step (srun): SLURM_JOB_ID and SLURM_PROCID are not set',
    );
  const cpusText = env.SLURM_CPUS_PER_TASK;
  const cpus = cpusText === undefined || cpusText === '' ? 1 : Number(cpusText);
  if (!Number.isInteger(cpus) || cpus < 1)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `SLURM_CPUS_PER_TASK is \`${cpusText}\`, not a CPU count`);
  return { jobId, task, cpus, slurmNode: env.SLURMD_NODENAME || os.hostname() };
}

/**
 * The node's address for task `task` by `how`. `resolve` looks up this host's name (the
 * system's resolver by default; tests inject their own).
 */
export async function taskAddress(
  how: ParsedHostFrom,
  task: number,
  resolve: (name: string) => Promise<string[]> = async (name) => (await lookup(name, { all: true, family: 4 })).map((a) => a.address),
): Promise<string> {
  switch (how.kind) {
    case 'loopback': {
      const last = how.base + task;
      if (last > 254)
        throw new DispyError('DISPY_ERR_INVALID_OPTION', `loopback:${how.base} gives task ${task} no address (127.0.0.${last})`);
      return `127.0.0.${last}`;
    }
    case 'interface': {
      const addrs = os.networkInterfaces()[how.name];
      if (!addrs) throw new DispyError('DISPY_ERR_INVALID_OPTION', `this host (${os.hostname()}) has no network interface ${how.name}`);
      const v4 = addrs.find((a) => a.family === 'IPv4');
      if (!v4) throw new DispyError('DISPY_ERR_INVALID_OPTION', `network interface ${how.name} of ${os.hostname()} has no IPv4 address`);
      return v4.address;
    }
    case 'hostname': {
      const name = os.hostname();
      let addrs: string[];
      try {
        addrs = await resolve(name);
      } catch (err) {
        throw new DispyError(
          'DISPY_ERR_INVALID_OPTION',
          `cannot resolve this host's name ${name}: ${(err as Error).message}; use host: 'interface:NAME'`,
        );
      }
      const usable = addrs.find((a) => !a.startsWith('127.'));
      if (!usable)
        throw new DispyError(
          'DISPY_ERR_INVALID_OPTION',
          `this host's name ${name} resolves only to ${addrs.join(', ') || 'nothing'}, which other hosts cannot reach; use host: 'interface:NAME'`,
        );
      return usable;
    }
  }
}

function hasOption(args: string[], name: string): boolean {
  return args.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
}

export async function slurmNodeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(SLURM_NODE_COMMAND, argv, true);
  if (values.help) {
    process.stdout.write(SLURM_NODE_HELP);
    return 0;
  }
  const readyDir = values['ready-dir'];
  if (!readyDir) throw new DispyError('DISPY_ERR_INVALID_OPTION', '--ready-dir DIR is required');
  const how = parseHostFrom(values['host-from'] ?? 'hostname');
  for (const name of ['host', 'cpus'])
    if (hasOption(positionals, name))
      throw new DispyError('DISPY_ERR_INVALID_OPTION', `--${name} is chosen by dispyts slurm-node; use --host-from`);
  const slurm = slurmTaskEnv(process.env);
  const host = await taskAddress(how, slurm.task);
  const args = ['--host', host, '--cpus', String(slurm.cpus)];
  if (!hasOption(positionals, 'name')) args.push('--name', `${slurm.slurmNode}-${slurm.task}`);
  // Jobs of one user may meet on a compute host: each node keeps its files apart and takes them along.
  let prefix: string | undefined;
  if (!hasOption(positionals, 'dest-path-prefix')) {
    prefix = mkdtempSync(join(os.tmpdir(), `dispyts-slurm-${slurm.jobId}-${slurm.task}-`));
    args.push('--dest-path-prefix', prefix);
  }
  try {
    return await nodeCommand([...args, ...positionals], (daemon) => {
      writeReadyFile(readyDir, {
        version: 1,
        jobId: slurm.jobId,
        task: slurm.task,
        host: daemon.host,
        port: daemon.port,
        name: daemon.name,
        cpus: daemon.cpus,
        slurmNode: slurm.slurmNode,
        pid: process.pid,
      });
    });
  } finally {
    if (prefix) rmSync(prefix, { recursive: true, force: true });
  }
}
