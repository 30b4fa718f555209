/** A DispyNode of an internal cluster as the wire carries it to the owning client (`node-status`). */
import type { DispyNode } from '../client/dispy-node.js';
import type { NodeView } from '../protocol/scheduler-messages.js';

const count = (n: number): number => (Number.isInteger(n) && n >= 0 ? n : 0);
const finite = (n: number): number => (Number.isFinite(n) ? n : 0);

export function nodeView(n: DispyNode): NodeView {
  return {
    ipAddr: n.ipAddr.slice(0, 1024),
    port: n.port,
    name: n.name.slice(0, 1024),
    cpus: count(n.cpus),
    availCpus: count(n.availCpus),
    machineCpus: count(n.machineCpus),
    platform: n.platform.slice(0, 1024),
    busy: count(n.busy),
    jobsDone: count(n.jobsDone),
    jobTime: finite(n.jobTime),
    cpuUsed: finite(n.cpuUsed),
    tx: finite(n.tx),
    rx: finite(n.rx),
    availInfo: n.availInfo,
    updateTime: Number.isFinite(n.updateTime) ? n.updateTime : null,
  };
}
