/**
 * The recent history of finished jobs (Finished, Terminated, Cancelled, Abandoned) for the Jobs
 * page: a bounded ring of plain records (no reference to the job, so a client's memory stays
 * flat), each with its id, arguments, status, node, times, exception and the tail of its
 * stdout/stderr, queried newest first with filters by status, node and cluster.
 */
import type { DispyJob } from '../client/dispy-job.js';
import type { DispyNode } from '../client/dispy-node.js';
import { statusName, type DispyStatus, type FinalStatusName } from '../client/status.js';
import { renderArgs, safeString } from './node-json.js';

/** One finished job, as `/job_history` shows it. */
export interface JobRecordJson {
  /** History id: increases by one per record (the detail view and `before=` use it). */
  hid: number;
  uid: number;
  job_id: string;
  cluster: string;
  /** The arguments' `toString()`s (empty when the server hides job arguments). */
  args: string;
  status: FinalStatusName;
  /** The node's address, or null for a job cancelled before it ran. */
  node: string | null;
  node_name: string | null;
  submit_time_ms: number;
  start_time_ms: number | null;
  end_time_ms: number | null;
  exception: string | null;
  /** The last STREAM_TAIL characters of the job's stdout / stderr. */
  stdout: string;
  stderr: string;
  /** Full lengths (characters) of stdout / stderr, to tell a tail from the whole. */
  stdout_length: number;
  stderr_length: number;
}

/** Characters of stdout / stderr kept per job (the end of them). */
export const STREAM_TAIL = 4096;
/** Characters of an exception kept (the start: its message and the top of its stack). */
export const EXCEPTION_MAX = 8192;
/** Records kept by default. */
export const DEFAULT_JOB_HISTORY_SIZE = 1000;
/** The largest page `/job_history` answers with. */
export const MAX_PAGE = 1000;

/** Filters of a query; every field is optional. */
export interface HistoryQuery {
  /** A status name, or `failed` for every status but Finished. */
  status?: string;
  /** A node's address or name. */
  node?: string;
  cluster?: string;
  /** Only records older than this history id (the next page). */
  before?: number;
  limit?: number;
}

export const STATUS_FILTERS = ['Finished', 'Terminated', 'Cancelled', 'Abandoned', 'failed'] as const;

function finite(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null;
}

function tail(s: unknown): { text: string; length: number } {
  const text = typeof s === 'string' ? s : '';
  return { text: text.length > STREAM_TAIL ? text.slice(-STREAM_TAIL) : text, length: text.length };
}

export class JobHistory {
  readonly capacity: number;
  /** Ring buffer: `#head` is where the next record goes. */
  readonly #ring: (JobRecordJson | undefined)[];
  #head = 0;
  #count = 0;
  #seq = 0;

  constructor(capacity = DEFAULT_JOB_HISTORY_SIZE) {
    this.capacity = Math.max(0, capacity);
    this.#ring = new Array(this.capacity);
  }

  /** The newest record's history id (0 before any). */
  get seq(): number {
    return this.#seq;
  }

  get size(): number {
    return this.#count;
  }

  /** Records a job that reached a final status. */
  record(cluster: string, status: DispyStatus, node: DispyNode | null, job: DispyJob): void {
    if (this.capacity === 0) return;
    const out = tail(job.stdout);
    const err = tail(job.stderr);
    const exception = typeof job.exception === 'string' ? job.exception.slice(0, EXCEPTION_MAX) : null;
    // A job that never started ran nowhere, even if a node handed it back.
    const ran = finite(job.startTime) !== null;
    const ip = ran ? (node?.ipAddr ?? (typeof job.ipAddr === 'string' ? job.ipAddr : null)) : null;
    const rec: JobRecordJson = {
      hid: ++this.#seq,
      uid: job._uid,
      job_id: safeString(job.id),
      cluster,
      args: renderArgs(job.args),
      status: statusName(status) as JobRecordJson['status'],
      node: ip,
      node_name: ran && node && typeof node.name === 'string' ? node.name : null,
      submit_time_ms: finite(job.submitTime) ?? 0,
      start_time_ms: finite(job.startTime),
      end_time_ms: finite(job.endTime) ?? Date.now(),
      exception,
      stdout: out.text,
      stderr: err.text,
      stdout_length: out.length,
      stderr_length: err.length,
    };
    this.#ring[this.#head] = rec;
    this.#head = (this.#head + 1) % this.capacity;
    if (this.#count < this.capacity) this.#count++;
  }

  /** Records newest first. */
  *#newest(): Generator<JobRecordJson> {
    for (let i = 1; i <= this.#count; i++) yield this.#ring[(this.#head - i + this.capacity) % this.capacity]!;
  }

  /** The record with history id `hid`, if still kept. */
  get(hid: number): JobRecordJson | undefined {
    if (hid > this.#seq || hid <= this.#seq - this.#count) return undefined;
    // Records are consecutive: hid seq is at head-1, hid seq-k at head-1-k.
    return this.#ring[(this.#head - 1 - (this.#seq - hid) + this.capacity * 2) % this.capacity];
  }

  /**
   * Records matching `q`, newest first, at most `limit`; `matched` counts every kept record
   * that matches (for "n of m"), `more` says whether older matching records remain.
   */
  query(q: HistoryQuery, showArgs: boolean): { jobs: JobRecordJson[]; matched: number; more: boolean } {
    const limit = Math.min(MAX_PAGE, Math.max(1, q.limit ?? 100));
    const status = q.status;
    const failed = status === 'failed';
    const jobs: JobRecordJson[] = [];
    let matched = 0;
    let more = false;
    for (const r of this.#newest()) {
      if (status && (failed ? r.status === 'Finished' : r.status !== status)) continue;
      if (q.node && r.node !== q.node && r.node_name !== q.node) continue;
      if (q.cluster && r.cluster !== q.cluster) continue;
      matched++;
      if (q.before !== undefined && r.hid >= q.before) continue;
      if (jobs.length < limit) jobs.push(showArgs ? r : { ...r, args: '' });
      else more = true;
    }
    return { jobs, matched, more };
  }
}
