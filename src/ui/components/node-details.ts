/**
 * A node's every field as a definition list, its history charts (busy CPUs and available CPU %,
 * from samples the page took), and the Monitor's details panel that shows both for one node.
 */
import { useEffect, useMemo, useRef } from 'preact/hooks';
import { formatBytes, formatDateTime, formatFixed, formatInt, formatPercent, formatTime } from '../lib/format.js';
import type { NodeSeries } from '../lib/history.js';
import { html } from '../lib/html.js';
import { secPerJob } from '../lib/sort.js';
import type { NodeRec } from '../lib/store.js';
import { TimeChart } from './chart.js';
import { StateBadge } from './common.js';

export function NodeFields({ rec, testid }: { rec: NodeRec; testid?: string }) {
  const r = rec;
  const rows: Array<[string, unknown, string?]> = [
    ['IP Address', r.ip, 'ip'],
    ['Name', r.name || '—', 'name'],
    ['State', html`<${StateBadge} state=${r.state} />`, 'state'],
    ['Platform', r.platform || '—'],
    ['Port', r.port || '—'],
    ['Machine CPUs', r.machineCpus || '—', 'machine-cpus'],
    ['CPUs Offered by Node', r.availCpus, 'avail-cpus'],
    ['CPUs Used by Cluster', r.cpus, 'cpus'],
    ['Busy CPUs', r.busy, 'busy'],
    ['Available CPU', r.avail ? formatPercent(r.avail.cpu) : 'Unknown', 'avail-cpu'],
    ['Available Memory', r.avail ? formatBytes(r.avail.memory) : 'Unknown', 'avail-memory'],
    ['Available Swap', r.avail ? formatPercent(r.avail.swap) : 'Unknown', 'avail-swap'],
    ['Available Disk', r.avail ? formatBytes(r.avail.disk) : 'Unknown', 'avail-disk'],
    ['Jobs Done', formatInt(r.jobsDone), 'jobs-done'],
    ['Job Time Sec', formatFixed(r.jobTime), 'job-time'],
    ['CPU Used Sec', formatFixed(r.cpuUsed), 'cpu-used'],
    ['Sec per Job', formatFixed(secPerJob(r)), 'sec-per-job'],
    ['Data Sent', formatBytes(r.tx), 'tx'],
    ['Data Received', formatBytes(r.rx), 'rx'],
    ['Last Update', html`<time title=${formatDateTime(r.updateTime)}>${formatTime(r.updateTime)}</time>`, 'last-update'],
  ];
  return html`<dl class="fields" data-testid=${testid}>
    ${rows.map(([k, v, id]) => html`<div class="field-row" key=${k}><dt>${k}</dt><dd data-field=${id}>${v}</dd></div>`)}
  </dl>`;
}

/**
 * Chart data from a node's samples, extended to `now` with the latest values; a node that has
 * not changed since `since` (the page's first update) is flat from then.
 */
export function historyData(s: NodeSeries | undefined, rec: NodeRec, now: number, since = 0): number[][] {
  const start = since > 0 ? Math.min(now, Math.max(since, rec.updateTime)) : 0;
  const t = s ? s.t.map((x) => x / 1000) : start ? [start / 1000] : [];
  const busy = s ? s.busy.slice() : start ? [rec.busy] : [];
  const cpu = s ? s.cpu.slice() : start ? [rec.avail ? rec.avail.cpu : Number.NaN] : [];
  const last = t.length ? t[t.length - 1]! : 0;
  if (now / 1000 > last) {
    t.push(now / 1000);
    busy.push(rec.busy);
    cpu.push(rec.avail ? rec.avail.cpu : Number.NaN);
  }
  return [t, busy, cpu.map((v) => (Number.isFinite(v) ? v : null)) as number[]];
}

export function NodeCharts({
  rec,
  series,
  version,
  since,
}: {
  rec: NodeRec;
  series: NodeSeries | undefined;
  version: number;
  since: number;
}) {
  const data = useMemo(() => historyData(series, rec, Date.now(), since), [series, rec, version, since]);
  const cpuNow = rec.avail ? formatPercent(rec.avail.cpu) : 'unknown';
  return html`<div class="charts">
    <${TimeChart} label="Busy CPUs" summary=${`${rec.busy} of ${rec.cpus} CPUs busy now`} testid="chart-busy"
      series=${[{ label: 'Busy CPUs', color: '--chart-1', kind: 'step' }]} data=${[data[0]!, data[1]!]} yMax=${Math.max(1, rec.cpus)} height=${150} />
    <${TimeChart} label="Available CPU %" summary=${`${cpuNow} available now`} testid="chart-cpu"
      series=${[{ label: 'Available CPU', color: '--chart-2', scale: 'pct', digits: 1 }]} data=${[data[0]!, data[2]!]} height=${150} />
  </div>`;
}

/** The Monitor's panel with one node's fields and charts (the narrow screen's "one tap away"). */
export function NodePanel({
  rec,
  series,
  version,
  since,
  onClose,
}: {
  rec: NodeRec;
  series: NodeSeries | undefined;
  version: number;
  since: number;
  onClose(): void;
}) {
  const panel = useRef<HTMLElement>(null);
  const closeBtn = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const opener = document.activeElement as HTMLElement | null;
    closeBtn.current?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') onClose();
    };
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('keydown', onKey);
      if (opener && document.contains(opener)) opener.focus();
    };
  }, [rec.ip]);
  return html`<aside class="panel" ref=${panel} role="dialog" aria-modal="false" aria-labelledby="panel-title" data-testid="node-panel">
    <div class="panel-head">
      <h2 id="panel-title">Node <span class="mono">${rec.ip}</span></h2>
      <button type="button" class="btn btn-icon" ref=${closeBtn} aria-label="Close node details" onClick=${onClose}>✕</button>
    </div>
    <p class="panel-links"><a class="btn btn-small" href=${`node.html?host=${encodeURIComponent(rec.ip)}`}>Open node page: jobs running</a></p>
    <${NodeFields} rec=${rec} testid="panel-fields" />
    <${NodeCharts} rec=${rec} series=${series} version=${version} since=${since} />
  </aside>`;
}
