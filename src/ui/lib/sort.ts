/** Sorting of a view's nodes by any column, both directions; ties fall back to the address. */
import { compareIp } from './format.js';
import type { NodeRec, NodeState } from './store.js';

export type SortKey =
  | 'ip'
  | 'name'
  | 'state'
  | 'cpus'
  | 'busy'
  | 'availCpu'
  | 'memory'
  | 'swap'
  | 'disk'
  | 'tx'
  | 'rx'
  | 'jobsDone'
  | 'secPerJob'
  | 'jobTime'
  | 'cpuUsed'
  | 'updateTime';

export type SortDir = 'asc' | 'desc';

export interface SortSpec {
  key: SortKey;
  dir: SortDir;
}

/** The seed's default: IP address, descending. */
export const DEFAULT_SORT: SortSpec = { key: 'ip', dir: 'desc' };

/** Names compare as people expect: node2 before node10, case aside. */
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

const STATE_ORDER: Record<NodeState, number> = { unreachable: 0, closed: 1, idle: 2, busy: 3, full: 4 };

export function secPerJob(r: NodeRec): number {
  return r.jobsDone > 0 ? r.jobTime / r.jobsDone : 0;
}

/** A node's value for a numeric key (-1 for unknown resources, so they sort below zero). */
function value(r: NodeRec, key: SortKey): number {
  switch (key) {
    case 'state':
      return STATE_ORDER[r.state];
    case 'cpus':
      return r.cpus;
    case 'busy':
      return r.busy;
    case 'availCpu':
      return r.avail ? r.avail.cpu : -1;
    case 'memory':
      return r.avail ? r.avail.memory : -1;
    case 'swap':
      return r.avail ? r.avail.swap : -1;
    case 'disk':
      return r.avail ? r.avail.disk : -1;
    case 'tx':
      return r.tx;
    case 'rx':
      return r.rx;
    case 'jobsDone':
      return r.jobsDone;
    case 'secPerJob':
      return secPerJob(r);
    case 'jobTime':
      return r.jobTime;
    case 'cpuUsed':
      return r.cpuUsed;
    case 'updateTime':
      return r.updateTime;
    default:
      return 0;
  }
}

export function comparator(spec: SortSpec): (a: NodeRec, b: NodeRec) => number {
  const sign = spec.dir === 'asc' ? 1 : -1;
  const byIp = (a: NodeRec, b: NodeRec) => compareIp(a.ip, b.ip, a.ipKey, b.ipKey);
  if (spec.key === 'ip') return (a, b) => sign * byIp(a, b);
  if (spec.key === 'name') {
    return (a, b) => {
      const c = a.name === b.name ? 0 : collator.compare(a.name, b.name);
      return c !== 0 ? sign * c : sign * byIp(a, b);
    };
  }
  const key = spec.key;
  return (a, b) => {
    const c = value(a, key) - value(b, key);
    return c !== 0 ? sign * c : sign * byIp(a, b);
  };
}

/** The nodes in display order. */
export function sortNodes(nodes: Iterable<NodeRec>, spec: SortSpec): NodeRec[] {
  const list = Array.from(nodes);
  list.sort(comparator(spec));
  return list;
}
