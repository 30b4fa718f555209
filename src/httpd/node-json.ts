/**
 * The JSON shapes of dispy's httpd: a node as `DispyNode.__dict__` (dispy's fields plus ours) and
 * a running job as the Node page lists it. Numbers are always finite: dispy's pages call
 * `toFixed` on them.
 */
import type { DispyJob } from '../client/dispy-job.js';
import type { DispyNode } from '../client/dispy-node.js';
import { statusName } from '../client/status.js';

/** dispy's `avail_info`: available CPU %, free memory bytes, free disk bytes, available swap %. */
export interface AvailInfoJson {
  cpu: number;
  memory: number;
  disk: number;
  swap: number;
}

/** One node as the JSON API shows it. */
export interface NodeJson {
  ip_addr: string;
  name: string;
  cpus: number;
  avail_cpus: number;
  busy: number;
  jobs_done: number;
  /** Sum of job wall seconds (dispy's meaning). */
  cpu_time: number;
  tx: number;
  rx: number;
  /** Epoch seconds of the latest change. */
  update_time: number;
  avail_info: AvailInfoJson | null;
  port: number;
  machine_cpus: number;
  /** Real user + system CPU seconds of the jobs. */
  cpu_used: number;
  /** 4 (Initialized) while usable, 16 (Closed) once gone. */
  status: number;
  platform: string;
}

/** One running job as `/node_info` lists it. */
export interface JobJson {
  uid: number;
  job_id: string;
  args: string;
  kwargs: string;
  start_time_ms: number;
  cluster: string;
  /** Ours: when the job was submitted, and its status name (the job detail view shows them). */
  submit_time_ms: number;
  status: string;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function availInfo(a: unknown): AvailInfoJson | null {
  if (!a || typeof a !== 'object') return null;
  const { cpu, memory, disk, swap } = a as Record<string, unknown>;
  for (const v of [cpu, memory, disk, swap]) if (typeof v !== 'number' || !Number.isFinite(v)) return null;
  return { cpu: cpu as number, memory: memory as number, disk: disk as number, swap: swap as number };
}

/** Snapshot of a DispyNode's fields in dispy's JSON form. */
export function nodeJson(n: DispyNode): NodeJson {
  return {
    ip_addr: String(n.ipAddr),
    name: typeof n.name === 'string' ? n.name : String(n.name ?? ''),
    cpus: num(n.cpus),
    avail_cpus: num(n.availCpus),
    busy: num(n.busy),
    jobs_done: num(n.jobsDone),
    cpu_time: num(n.jobTime),
    tx: num(n.tx),
    rx: num(n.rx),
    update_time: num(n.updateTime) / 1000,
    avail_info: availInfo(n.availInfo),
    port: num(n.port),
    machine_cpus: num(n.machineCpus),
    cpu_used: num(n.cpuUsed),
    status: num(n.status),
    platform: typeof n.platform === 'string' ? n.platform : '',
  };
}

/** Longest rendering of one job's arguments; longer ones are cut with an ellipsis. */
export const MAX_ARGS_CHARS = 4096;

/** `String(value)` that never throws (objects without a prototype, throwing toString...). */
export function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    try {
      return Object.prototype.toString.call(v);
    } catch {
      return '?';
    }
  }
}

/** The job's arguments as dispy shows them: each argument's String(), joined with ', '. */
export function renderArgs(args: readonly unknown[] | null | undefined): string {
  if (!Array.isArray(args)) return '';
  let out = '';
  for (let i = 0; i < args.length; i++) {
    out += (i ? ', ' : '') + safeString(args[i]);
    if (out.length > MAX_ARGS_CHARS) return `${out.slice(0, MAX_ARGS_CHARS - 1)}…`;
  }
  return out;
}

/** A running job for `/node_info`; arguments only when `showArgs`. */
export function jobJson(job: DispyJob, clusterName: string, showArgs: boolean): JobJson {
  return {
    uid: job._uid,
    job_id: safeString(job.id),
    args: showArgs ? renderArgs(job.args) : '',
    kwargs: '',
    start_time_ms: num(job.startTime),
    cluster: clusterName,
    submit_time_ms: num(job.submitTime),
    status: statusName(job.status),
  };
}
