/**
 * Hand-out of node capacity between the clusters of this process. By default one pass gives
 * each cluster with queued jobs one job in turn until no node has room (fair rotation). A
 * process that runs other programs' clusters (`dispyts scheduler`) sets a dispatch policy
 * instead, which picks the cluster for every job. A cluster on hold (the scheduler's, while its
 * client is gone) gets no job and is never ranked. Runs once per tick however many replies
 * arrived in it.
 */
export interface Dispatchable {
  /** @internal */
  dispatchOne(): boolean;
  /**
   * @internal Submission order (lower = earlier) of the cluster's earliest queued job, or null when none
   * is queued: what the `fsfs` policy compares.
   */
  headOrder?(): number | null;
}

/**
 * How `dispyts scheduler` chooses the cluster that gets each free CPU (dispy's
 * scheduler policies): `fsfs` the cluster whose earliest queued job was submitted first, `fair`
 * the cluster dispatched to least recently, `early` the cluster created first.
 */
export type DispatchPolicy = 'fsfs' | 'fair' | 'early';

export const DISPATCH_POLICIES: readonly DispatchPolicy[] = ['fsfs', 'fair', 'early'];

interface Entry {
  /** Registration order (the `early` policy). */
  created: number;
  /** When the cluster last got a job out (the `fair` policy), as a dispatch counter. */
  lastDispatch: number;
}

const clusters = new Map<Dispatchable, Entry>();
/** Clusters that start no job for now. */
const held = new Set<Dispatchable>();
let scheduled = false;
let offset = 0;
let registered = 0;
let dispatches = 0;
let policy: DispatchPolicy | null = null;

export function registerCluster(c: Dispatchable): void {
  if (!clusters.has(c)) clusters.set(c, { created: ++registered, lastDispatch: 0 });
}

export function unregisterCluster(c: Dispatchable): void {
  clusters.delete(c);
  held.delete(c);
}

/**
 * @internal Puts a cluster on hold (no job of it starts, and it never outranks another) or
 * releases it. The scheduler holds a computation while its client is gone.
 */
export function holdCluster(c: Dispatchable, on: boolean): void {
  if (on) held.add(c);
  else if (held.delete(c)) requestPump();
}

/** @internal Whether `c` is on hold. */
export function isHeld(c: Dispatchable): boolean {
  return held.has(c);
}

/**
 * @internal Sets the process's dispatch policy (null: the default rotation). With a policy,
 * nodes also hold no more jobs than they have CPUs while jobs are long or of unknown length (see
 * `schedulerMode`), so the policy, not a node's queue, decides which cluster runs next.
 */
export function setDispatchPolicy(p: DispatchPolicy | null): void {
  policy = p;
  requestPump();
}

/** @internal The policy set by setDispatchPolicy, or null. */
export function dispatchPolicy(): DispatchPolicy | null {
  return policy;
}

export function requestPump(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(pump);
}

function pump(): void {
  scheduled = false;
  if (clusters.size === 0) return;
  if (policy) {
    pumpByPolicy(policy);
    return;
  }
  const list = held.size ? [...clusters.keys()].filter((c) => !held.has(c)) : [...clusters.keys()];
  if (list.length === 0) return;
  // Rotate the starting cluster so none is always first.
  offset = (offset + 1) % list.length;
  let progress = true;
  while (progress) {
    progress = false;
    for (let i = 0; i < list.length; i++) {
      if (list[(i + offset) % list.length]!.dispatchOne()) progress = true;
    }
  }
}

/** One job at a time to the cluster the policy ranks first among those that can send one. */
function pumpByPolicy(p: DispatchPolicy): void {
  for (;;) {
    const ranked: { c: Dispatchable; e: Entry; key: number }[] = [];
    for (const [c, e] of clusters) {
      // A cluster on hold is not ranked at all: it can never take a CPU from a live one.
      if (held.has(c)) continue;
      let key: number;
      if (p === 'fsfs') {
        const head = c.headOrder ? c.headOrder() : 0;
        if (head === null) continue;
        key = head;
      } else key = p === 'fair' ? e.lastDispatch : e.created;
      ranked.push({ c, e, key });
    }
    ranked.sort((a, b) => a.key - b.key || a.e.created - b.e.created);
    let sent = false;
    for (const r of ranked) {
      if (!r.c.dispatchOne()) continue;
      r.e.lastDispatch = ++dispatches;
      sent = true;
      break;
    }
    if (!sent) return;
  }
}
