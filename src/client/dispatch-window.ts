/**
 * How many jobs a node may hold for a cluster, and which node is least loaded: the dispatch
 * window. Pure arithmetic on a few counters (no I/O, no timers), so the rules are unit-tested
 * without a daemon (test/dispatch-window.test.ts). The running average of a cluster's job time
 * on a node, which sizes the window, is kept here too (computed by src/protocol/running-average.ts).
 */

/** Most jobs a node may hold per CPU it gives us (running plus queued there). */
export const MAX_WINDOW_PER_CPU = 64;

/**
 * @internal With a dispatch policy (`dispyts scheduler`), jobs averaging at least this many ms
 * (or of unknown length) are sent only to a free CPU of their node, never queued there.
 */
export const SCHEDULER_SHORT_JOB_MS = 50;

/**
 * Jobs per CPU we keep on a node. Until a job has ended there (its time unknown), one: the
 * first jobs spread over the nodes as they come up, instead of queueing on the first one. Then
 * one queued behind each running job, and for short jobs enough to cover a round trip (about
 * 10 ms of work), up to the maximum.
 */
export function windowPerCpu(avgMs: number): number {
  if (!Number.isFinite(avgMs)) return 1;
  return Math.max(2, Math.min(MAX_WINDOW_PER_CPU, 1 + Math.ceil(10 / Math.max(avgMs, 0.01))));
}

/**
 * Jobs per CPU a node's connection may hold when a dispatch policy is set: one while the jobs'
 * run time is unknown or long, so that the policy decides which cluster gets each freed CPU;
 * the usual pipelining window for short jobs, whose round trips would otherwise idle the CPU.
 */
export function policyWindowPerCpu(avgMs: number): number {
  return Number.isFinite(avgMs) && avgMs < SCHEDULER_SHORT_JOB_MS ? windowPerCpu(avgMs) : 1;
}

/** What the window reads of one node as one cluster uses it. */
export interface WindowState {
  /** CPUs this cluster may use there (its allocation or setNodeCpus). */
  cap: number;
  /** This cluster's jobs on the node (sent, not yet ended). */
  inflight: number;
  /** Running average of this cluster's job time there (ms), Infinity until a job ended. */
  avgMs: number;
}

/** What the window reads of the node's connection, shared by every cluster of the process. */
export interface LinkLoad {
  /** CPUs the node offers now. */
  cpus: number;
  /** Jobs of every cluster on the connection. */
  inflight: number;
}

/**
 * Whether one more job fits the window of `w` on a connection carrying `link`: under the
 * per-cluster window (per CPU of min(cap, node CPUs)), under the connection's overall window,
 * and, with a dispatch policy, under the policy's window.
 */
export function hasRoom(w: WindowState, link: LinkLoad, policy: boolean): boolean {
  return (
    w.inflight < windowPerCpu(w.avgMs) * Math.min(w.cap, link.cpus) &&
    link.inflight < MAX_WINDOW_PER_CPU * link.cpus &&
    (!policy || link.inflight < policyWindowPerCpu(w.avgMs) * link.cpus)
  );
}

/**
 * A node's load as the dispatcher compares them (lower is better): jobs per CPU on its
 * connection, ties broken by this cluster's own share of it.
 */
export function nodeLoad(w: WindowState, link: LinkLoad): number {
  return link.inflight / link.cpus + w.inflight / (w.cap * 1e3);
}

export { nextAvgMs } from '../protocol/running-average.js';
