/**
 * What the scheduler tells a client about the end of one of its jobs (`job-end`): built from the
 * cluster's finished job or from a refusal, fitted to the largest message the client takes, and
 * kept, bounded, while the client is away (shared-computation.ts).
 */
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { DispyJob } from '../client/dispy-job.js';
import { type FinalJobStatus, JobStatus } from '../client/status.js';
import { type DispyErrorCode, Errors, jobException } from '../errors.js';
import type { jobEndSchema } from '../protocol/scheduler-messages.js';

export type JobEnd = z.infer<typeof jobEndSchema>;

export const MAX_TEXT = 1024 * 1024;
/** Job-ends kept for a client that is away, at most (count, and bytes of results and output). */
const MAX_AWAY_ENDS = 100_000;
const MAX_AWAY_BYTES = 256 * 1024 * 1024;

/** Why the scheduler closed a computation on its own (jobs it ended get this code). */
export interface CloseNote {
  code: DispyErrorCode;
  reason: string;
}

/** Job-ends kept for a client that is away, with roughly the memory they hold. */
export interface AwayEnds {
  ends: JobEnd[];
  bytes: number;
}

/** Roughly what a kept job-end holds in memory (bytes). */
function endSize(e: JobEnd): number {
  return 256 + (e.result?.length ?? 0) + (e.exception?.length ?? 0) + e.stdout.length + e.stderr.length;
}

/** Bytes a job-end takes in a message, roughly. */
function endBytes(e: JobEnd): number {
  return (
    1024 + (e.result?.byteLength ?? 0) + Buffer.byteLength(e.exception ?? '') + Buffer.byteLength(e.stdout) + Buffer.byteLength(e.stderr)
  );
}

/** A job-end for a job that never reached a node (refused, or dropped before it ran). */
export function refusedJob(uid: number, code: DispyErrorCode, message: string): JobEnd {
  return {
    t: 'job-end',
    uid,
    status: JobStatus.Cancelled,
    result: null,
    exception: jobException(message).slice(0, MAX_TEXT * 4),
    code,
    stdout: '',
    stderr: '',
    ip: null,
    startTime: null,
    endTime: Date.now(),
  };
}

/**
 * The job-end of the cluster's finished `job` (client uid `uid`). A job ended because the
 * scheduler closed the computation (`note`) says why, with the note's code: a node reports
 * that with a generic code.
 */
export function finishedJob(job: DispyJob, uid: number, status: FinalJobStatus, nodeIp: string | null, note: CloseNote | null): JobEnd {
  const generic = job._errorCode === null || job._errorCode === 'DISPY_ERR_JOB_TERMINATED' || job._errorCode === 'DISPY_ERR_JOB_CANCELLED';
  const byUs = note !== null && generic && (status === JobStatus.Cancelled || status === JobStatus.Terminated);
  const exception = byUs ? `${job.exception ?? jobException('job ended')} (${note!.reason})` : job.exception;
  return {
    t: 'job-end',
    uid,
    status,
    result: job.result instanceof Uint8Array ? job.result : null,
    exception: exception === null ? null : exception.slice(0, MAX_TEXT * 4),
    code: byUs ? note!.code : job._errorCode,
    stdout: job.stdout.slice(0, MAX_TEXT * 16),
    stderr: job.stderr.slice(0, MAX_TEXT * 16),
    ip: job.ipAddr ?? nodeIp,
    startTime: job.startTime,
    endTime: job.endTime,
  };
}

/**
 * A job-end larger than the client takes (`max`; the node's limit may be above the
 * scheduler's): the result is refused, the job ends Terminated with DISPY_ERR_MESSAGE_TOO_LARGE
 * naming both sizes, and output is shortened to the room left.
 */
export function fitEnd(end: JobEnd, max: number, log: Logger, computation: string): JobEnd {
  if (endBytes(end) <= max) return end;
  let out = end;
  if (out.result && endBytes({ ...out, stdout: '', stderr: '' }) > max) {
    const bytes = out.result.byteLength;
    log.warn({ computation, uid: end.uid, bytes, max }, 'job result too large for the client: refused');
    out = {
      ...out,
      status: JobStatus.Terminated,
      result: null,
      code: 'DISPY_ERR_MESSAGE_TOO_LARGE',
      exception: jobException(Errors.resultTooLarge(bytes, "the scheduler's", max).message),
    };
  }
  if (endBytes(out) > max) {
    const room = Math.max(0, Math.floor((max - endBytes({ ...out, stdout: '', stderr: '' })) / 2) - 64);
    const cut = (text: string): string =>
      Buffer.byteLength(text) <= room
        ? text
        : `${Buffer.from(text).subarray(0, room).toString('utf8')}\n[dispyts: output truncated to fit the scheduler's maximum message size]\n`;
    out = { ...out, stdout: cut(out.stdout), stderr: cut(out.stderr) };
  }
  return out;
}

/** Keeps `end` for a client that is away; bounded: the oldest go first. */
export function keepAway(away: AwayEnds, end: JobEnd, log: Logger, computation: string): void {
  away.ends.push(end);
  away.bytes += endSize(end);
  // A client that resumes sends the dropped jobs again (unknown here).
  while (away.ends.length > MAX_AWAY_ENDS || (away.bytes > MAX_AWAY_BYTES && away.ends.length > 1)) {
    const dropped = away.ends.shift()!;
    away.bytes -= endSize(dropped);
    log.warn({ computation, uid: dropped.uid }, 'result kept for an absent client dropped (too many kept)');
  }
}
