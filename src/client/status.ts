/** dispy's status numbers, shared by jobs, nodes and the events the cluster emits. */

export const JobStatus = {
  Created: 5,
  Running: 6,
  ProvisionalResult: 7,
  Cancelled: 8,
  Terminated: 9,
  Abandoned: 10,
  Finished: 11,
} as const;

export const NodeStatus = {
  Initialized: 4,
  Closed: 16,
  AvailInfo: 17,
} as const;

/** A job's status: what `DispyJob.status` holds. */
export type JobStatusCode = (typeof JobStatus)[keyof typeof JobStatus];
/** A node's status, or a node event (AvailInfo): what `DispyNode.status` and node events hold. */
export type NodeStatusCode = (typeof NodeStatus)[keyof typeof NodeStatus];
/** The statuses that end a job: exactly one of them ends every job. */
export type FinalJobStatus =
  | typeof JobStatus.Finished
  | typeof JobStatus.Terminated
  | typeof JobStatus.Cancelled
  | typeof JobStatus.Abandoned;
/** A status a cluster's events carry: a job's or a node's. */
export type DispyStatus = JobStatusCode | NodeStatusCode;
/** A status's name, as `statusName` gives it. */
export type StatusName = keyof typeof JobStatus | keyof typeof NodeStatus;
/** The name of a final job status. */
export type FinalStatusName = 'Finished' | 'Terminated' | 'Cancelled' | 'Abandoned';

/** The one table of status names, made from the two status objects. */
const NAMES = new Map<number, StatusName>(
  [...Object.entries(JobStatus), ...Object.entries(NodeStatus)].map(([name, code]) => [code, name as StatusName]),
);

export function statusName(status: JobStatusCode): keyof typeof JobStatus;
export function statusName(status: number): string;
export function statusName(status: number): string {
  return NAMES.get(status) ?? `Unknown(${status})`;
}

/** Final job statuses: exactly one of these ends every job. */
export function isFinal(status: number): status is FinalJobStatus {
  return (
    status === JobStatus.Finished || status === JobStatus.Terminated || status === JobStatus.Cancelled || status === JobStatus.Abandoned
  );
}
