/**
 * Validation of the cluster options and of `submitWith`'s options: one table of rules per
 * option, built once at module load, shared by JobCluster and SharedJobCluster. Hand-written
 * checks rather than zod schemas: building and first use of an equivalent zod schema costs
 * several ms in a new program, these cost nothing. Errors keep their text: ``Expected `x` to
 * be …, got …`` (DISPY_ERR_INVALID_OPTION).
 */
import { isIP } from 'node:net';
import { invalidOption } from '../errors.js';
import { DISCOVERY_MODES } from '../protocol/discovery.js';
import type { Computation, Depend } from '../protocol/messages.js';
import type { JobClusterOptions, SharedJobClusterOptions } from './cluster-options.js';
import { dependFiles, type LocalFile } from './file-transfer.js';
import { splitJobDepends } from './job-scope.js';
import { type PerNodeOptions, validatePerNodeOptions } from './per-node-options.js';

/** An option's name, what it must be (as the error says), and the test a given value passes. */
type Rule = readonly [name: string, expected: string, ok: (v: unknown) => boolean];

const isFunction = (v: unknown): boolean => typeof v === 'function';
const isBoolean = (v: unknown): boolean => typeof v === 'boolean';
const nonEmpty = (v: unknown): boolean => typeof v === 'string' && v.length > 0;
const positiveSeconds = (v: unknown): boolean => typeof v === 'number' && v > 0 && Number.isFinite(v);
const between = (lo: number, hi: number) => (v: unknown) => typeof v === 'number' && v >= lo && v <= hi;

/**
 * `host`: an IP address for both kinds (the address discovery binds and tells nodes to answer,
 * or the local address connections to the scheduler leave from); a host name is refused here
 * rather than failing later on the wire.
 */
const HOST: Rule = ['host', 'an IP address', (v) => typeof v === 'string' && isIP(v) !== 0];

const TLS_FILES: Rule[] = (['certFile', 'keyFile', 'caFile'] as const).map((k) => [k, 'a file path', nonEmpty] as const);

/** Options both kinds take alike (ClusterOptionsBase), and secret, host and the TLS files. */
const BASE: Rule[] = [
  ['depends', 'an array', Array.isArray],
  ['resultsDir', 'a directory path', nonEmpty],
  ['globals', 'an object of names and values', (v) => v !== null && typeof v === 'object' && !Array.isArray(v)],
  ['jobStatus', 'a function', isFunction],
  ['clusterStatus', 'a function', isFunction],
  HOST,
  ['secret', 'a string', (v) => typeof v === 'string'],
  ['reentrant', 'true or false', isBoolean],
  ['setup', 'a function', isFunction],
  ['cleanup', 'true, false or a function', (v) => isFunction(v) || isBoolean(v)],
  ['destPath', 'a relative directory name', nonEmpty],
  ['maxRuntime', 'a positive number of seconds', positiveSeconds],
  ['maxFileSize', 'a number of bytes >= 0', (v) => Number.isInteger(v) && (v as number) >= 0],
  ['maxArgsSize', 'a number of bytes >= 1', (v) => Number.isInteger(v) && (v as number) >= 1],
  ...TLS_FILES,
  ['name', 'a non-empty string', (v) => typeof v === 'string' && v.length > 0 && v.length <= 256],
  ['isolate', "'job'", (v) => v === 'job'],
];

const JOB_CLUSTER: Rule[] = [
  ...BASE,
  ['port', 'an integer from 0 to 65535', (v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535],
  ['recoverFile', 'a file path', nonEmpty],
  ['pulseInterval', 'seconds from 0.1 to 1000', between(0.1, 1000)],
  ['pingInterval', 'seconds from 1 to 1000', between(1, 1000)],
  ['nodeTimeout', 'a positive number of seconds', positiveSeconds],
  ['discovery', "'broadcast', 'multicast' or 'off'", (v) => DISCOVERY_MODES.includes(v as never)],
];

const SHARED_CLUSTER: Rule[] = [
  ...BASE,
  ['schedulerHost', 'an address or host name', nonEmpty],
  ['schedulerPort', 'an integer from 1 to 65535', (v) => Number.isInteger(v) && (v as number) > 0 && (v as number) <= 65535],
  ['exclusive', 'true or false', isBoolean],
  ['reconnectTimeout', 'a number of seconds >= 0', (v) => typeof v === 'number' && v >= 0 && Number.isFinite(v)],
];

function check(o: unknown, rules: readonly Rule[]): void {
  if (o === null || typeof o !== 'object') throw invalidOption('options', 'an object', o);
  const given = o as Record<string, unknown>;
  for (const [name, expected, ok] of rules) {
    const v = given[name];
    if (v !== undefined && !ok(v)) throw invalidOption(name, expected, v);
  }
  // nodeSetup and cancelGrace (per-node-options.ts).
  validatePerNodeOptions(given as PerNodeOptions);
}

/** Throws DISPY_ERR_INVALID_OPTION for the first option of a JobCluster that is not what it must be. */
export function checkJobClusterOptions(o: JobClusterOptions): void {
  check(o, JOB_CLUSTER);
}

/** Throws DISPY_ERR_INVALID_OPTION for the first option of a SharedJobCluster that is not what it must be. */
export function checkSharedClusterOptions(o: SharedJobClusterOptions): void {
  check(o, SHARED_CLUSTER);
}

/** `submitWith`'s options, checked: the per-job files read (missing or too large ones throw). */
export interface CheckedSubmit {
  files: LocalFile[];
  maxRuntime: number | undefined;
  /** The job's own functions and classes (job-scope.ts). */
  code: Depend[];
}

/** Checks `submitWith`'s `depends` and `maxRuntime` and reads the files (`node` is the cluster's to check). */
export function checkSubmitOptions(options: unknown, maxFileSize: number, kind: Computation['kind'] | null): CheckedSubmit {
  if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
  const { depends = [], maxRuntime } = options as { depends?: unknown; maxRuntime?: unknown };
  if (!Array.isArray(depends)) throw invalidOption('depends', 'an array of file paths, functions and classes', depends);
  // Functions and classes are this job's own code (job-scope.ts); strings are its files.
  const { code } = splitJobDepends(depends, kind);
  if (maxRuntime !== undefined && !positiveSeconds(maxRuntime))
    throw invalidOption('maxRuntime', 'a positive number of seconds', maxRuntime);
  return { files: dependFiles(depends, 'depends', maxFileSize), maxRuntime: maxRuntime as number | undefined, code };
}

/**
 * The job id that travels with a job (to nodes with a recover file, to the scheduler): a string
 * of at most 1024 characters or a finite number; any other id (a longer string included) is
 * not sent at all. A truncated id would name another job, or two jobs alike.
 */
export function wireTag(id: unknown): string | number | undefined {
  return (typeof id === 'string' && id.length <= 1024) || (typeof id === 'number' && Number.isFinite(id)) ? id : undefined;
}
