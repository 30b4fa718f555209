/**
 * The contract between `slurmNodes()` (the client, on the submitting host) and `dispyts
 * slurm-node` (each task of its batch job, on a compute host): how a task chooses its node's
 * address, and the ready file it writes into the allocation's directory, a directory both hosts
 * see (HPC home or scratch), once its node serves. No UDP, no name service of our own.
 */
import { renameSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { DispyError } from '../errors.js';

/**
 * How each task picks its node's address:
 * - `'hostname'`: the IPv4 address this host's name resolves to on the compute host (what HPC
 *   clusters usually set up); a name that resolves only to loopback is refused;
 * - `'interface:NAME'`: the IPv4 address of network interface NAME there (e.g. `interface:ib0`);
 * - `'loopback:N'`: 127.0.0.(N + the task's rank, SLURM_PROCID), for a client and every task on
 *   one machine (tests, a one-machine Slurm): several nodes on one host need distinct addresses.
 */
export type SlurmHostFrom = 'hostname' | `interface:${string}` | `loopback:${number}`;

export type ParsedHostFrom = { kind: 'hostname' } | { kind: 'interface'; name: string } | { kind: 'loopback'; base: number };

/** Parses a `SlurmHostFrom`, or throws DISPY_ERR_INVALID_OPTION naming the forms. */
export function parseHostFrom(spec: unknown): ParsedHostFrom {
  if (spec === 'hostname') return { kind: 'hostname' };
  if (typeof spec === 'string') {
    const iface = /^interface:([\w.:@-]{1,64})$/.exec(spec);
    if (iface) return { kind: 'interface', name: iface[1]! };
    const lo = /^loopback:(\d{1,3})$/.exec(spec);
    if (lo && Number(lo[1]) >= 1 && Number(lo[1]) <= 254) return { kind: 'loopback', base: Number(lo[1]) };
  }
  throw new DispyError(
    'DISPY_ERR_INVALID_OPTION',
    `Expected \`host\` to be 'hostname', 'interface:NAME' or 'loopback:N' (N from 1 to 254), got \`${String(spec)}\``,
  );
}

/** What a task writes once its node serves. */
export const slurmReadySchema = z.object({
  version: z.literal(1),
  /** The Slurm job (SLURM_JOB_ID). */
  jobId: z.string().min(1).max(64),
  /** The task's rank (SLURM_PROCID). */
  task: z.number().int().min(0),
  /** The node's address and port: what the client connects to. */
  host: z.string().min(1).max(255),
  port: z.number().int().min(1).max(65535),
  name: z.string().max(255),
  /** CPUs the node offers (those Slurm gave the task). */
  cpus: z.number().int().min(1),
  /** The Slurm node the task runs on (SLURMD_NODENAME). */
  slurmNode: z.string().max(255),
  pid: z.number().int().positive(),
});

export type SlurmReady = z.infer<typeof slurmReadySchema>;

/** `ready-<task>.json`. */
export const READY_FILE = /^ready-(\d+)\.json$/;

export function readyFileName(task: number): string {
  return `ready-${task}.json`;
}

/**
 * Writes the ready file atomically (a temporary file renamed into place, atomic on NFS too), so
 * the client never reads half of one.
 */
export function writeReadyFile(dir: string, ready: SlurmReady): string {
  const file = join(dir, readyFileName(ready.task));
  const tmp = join(dir, `.${readyFileName(ready.task)}.${process.pid}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(slurmReadySchema.parse(ready))}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  return file;
}

/** Reads and validates a ready file; DISPY_ERR_BAD_REQUEST if it is not one. */
export function readReadyFile(file: string): SlurmReady {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new DispyError('DISPY_ERR_BAD_REQUEST', `ready file ${file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = slurmReadySchema.safeParse(value);
  if (!parsed.success) throw new DispyError('DISPY_ERR_BAD_REQUEST', `ready file ${file} is malformed: ${parsed.error.message}`);
  return parsed.data;
}
