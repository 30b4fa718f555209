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

export type DispyStatus = (typeof JobStatus)[keyof typeof JobStatus] | (typeof NodeStatus)[keyof typeof NodeStatus];

const NAMES: Record<number, string> = {
  4: 'Initialized',
  5: 'Created',
  6: 'Running',
  7: 'ProvisionalResult',
  8: 'Cancelled',
  9: 'Terminated',
  10: 'Abandoned',
  11: 'Finished',
  16: 'Closed',
  17: 'AvailInfo',
};

export function statusName(status: number): string {
  return NAMES[status] ?? `Unknown(${status})`;
}

/** Final job statuses: exactly one of these ends every job. */
export function isFinal(status: number): boolean {
  return (
    status === JobStatus.Finished || status === JobStatus.Terminated || status === JobStatus.Cancelled || status === JobStatus.Abandoned
  );
}
