/** dispy's `print_status` table of a cluster's nodes, shared by JobCluster and SharedJobCluster. */
import type { DispyNode } from './dispy-node.js';

/** 1024-based sizes as dispy prints them. */
export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} ${units[i]}` : `${v.toFixed(1)} ${units[i]}`;
}

/** The table: one row per node (closed ones included), then pending jobs, times and speedup. */
export function statusTable(rows: readonly DispyNode[], pending: number, wallTime?: number): string {
  const line = '-'.repeat(98);
  const out: string[] = [];
  out.push(`${'Node'.padStart(36)} |  CPUs |    Jobs |    Sec/Job | Node Time Sec |    Sent |    Rcvd`);
  out.push(line);
  let total = 0;
  for (const n of rows) {
    total += n.jobTime;
    const label = n.name ? `${n.ipAddr} (${n.name})` : n.ipAddr;
    const perJob = n.jobsDone ? n.jobTime / n.jobsDone : 0;
    out.push(
      `${label.slice(0, 36).padStart(36)} | ${String(n.cpus).padStart(5)} | ${String(n.jobsDone).padStart(7)} | ${perJob.toFixed(3).padStart(10)} | ${n.jobTime.toFixed(3).padStart(13)} | ${formatBytes(n.tx).padStart(7)} | ${formatBytes(n.rx).padStart(7)}`,
    );
  }
  out.push('');
  out.push(`Jobs pending: ${pending}`);
  out.push(`Total job time: ${total.toFixed(3)} sec`);
  if (wallTime && wallTime > 0) out.push(`Total wall time: ${wallTime.toFixed(3)} sec, speedup: ${(total / wallTime).toFixed(3)}`);
  return `${out.join('\n')}\n`;
}
