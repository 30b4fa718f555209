/**
 * Fair hand-out of node capacity between the clusters of this process: one pass gives each
 * cluster with queued jobs one job in turn until no node has room. Runs once per tick however
 * many replies arrived in it.
 */
export interface Dispatchable {
  dispatchOne(): boolean;
}

const clusters = new Set<Dispatchable>();
let scheduled = false;
let offset = 0;

export function registerCluster(c: Dispatchable): void {
  clusters.add(c);
}

export function unregisterCluster(c: Dispatchable): void {
  clusters.delete(c);
}

export function requestPump(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(pump);
}

function pump(): void {
  scheduled = false;
  const list = [...clusters];
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
