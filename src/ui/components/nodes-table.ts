/**
 * The Monitor's nodes table: every field of dispy's plus state and real CPU used, sortable by any
 * column in both directions, rows selectable, a totals row, and windowed (only the rows near the
 * viewport exist in the DOM; a row re-renders only when its node record or selection changed).
 * Narrow screens keep address, name, busy/CPUs, jobs done and last update; the rest of a node's
 * fields are one tap away (its name opens the details panel).
 */
import { Component } from 'preact';
import { useEffect, useMemo, useRef } from 'preact/hooks';
import { formatBytes, formatFixed, formatInt, formatPercent, formatTime } from '../lib/format.js';
import { html } from '../lib/html.js';
import { secPerJob, sortNodes, type SortKey, type SortSpec } from '../lib/sort.js';
import { totals, type ClusterView, type NodeRec } from '../lib/store.js';
import { StateBadge, STATE_TEXT } from './common.js';
import { useRowWindow } from './windowing.js';

/** Height of a body row in CSS px (also the touch-target size). Kept in step with ui.css. */
export const ROW_HEIGHT = 44;

interface Column {
  key: SortKey;
  /** Class of the column's cells (the stylesheet hides some on narrow screens). */
  cls: string;
  label: string;
  /** Header text when it differs from `label` (which is the accessible name). */
  short?: string;
  title?: string;
  num?: boolean;
  cell(r: NodeRec): string;
}

export const COLUMNS: Column[] = [
  { key: 'ip', cls: 'c-ip', label: 'IP Address', cell: (r) => r.ip },
  { key: 'name', cls: 'c-name', label: 'Name', cell: (r) => r.name },
  { key: 'state', cls: 'c-state', label: 'State', cell: (r) => STATE_TEXT[r.state] },
  { key: 'cpus', cls: 'c-cpus', label: 'CPUs', num: true, title: 'CPUs the cluster uses on the node', cell: (r) => String(r.cpus) },
  { key: 'busy', cls: 'c-busy', label: 'Busy', num: true, title: 'CPUs running jobs now', cell: (r) => String(r.busy) },
  { key: 'busy', cls: 'c-bc', label: 'Busy / CPUs', short: 'Busy/ CPUs', num: true, cell: (r) => `${r.busy}/${r.cpus}` },
  { key: 'availCpu', cls: 'c-cpu', label: 'Available CPU', short: 'Avail CPU', num: true, cell: (r) => formatPercent(r.avail?.cpu) },
  { key: 'memory', cls: 'c-mem', label: 'Available Memory', short: 'Memory', num: true, cell: (r) => formatBytes(r.avail?.memory) },
  { key: 'swap', cls: 'c-swap', label: 'Available Swap', short: 'Swap', num: true, cell: (r) => formatPercent(r.avail?.swap) },
  { key: 'disk', cls: 'c-disk', label: 'Available Disk', short: 'Disk', num: true, cell: (r) => formatBytes(r.avail?.disk) },
  { key: 'tx', cls: 'c-tx', label: 'Data Sent', short: 'Sent', num: true, cell: (r) => formatBytes(r.tx) },
  { key: 'rx', cls: 'c-rx', label: 'Data Received', short: 'Recvd', num: true, cell: (r) => formatBytes(r.rx) },
  { key: 'jobsDone', cls: 'c-done', label: 'Jobs Done', short: 'Done', num: true, cell: (r) => formatInt(r.jobsDone) },
  { key: 'secPerJob', cls: 'c-spj', label: 'Seconds per Job', short: 'Sec/Job', num: true, cell: (r) => formatFixed(secPerJob(r)) },
  {
    key: 'jobTime',
    cls: 'c-jt',
    label: 'Job Time Seconds',
    short: 'Job Time s',
    num: true,
    title: "Sum of the jobs' run times (dispy's CPU Time)",
    cell: (r) => formatFixed(r.jobTime),
  },
  {
    key: 'cpuUsed',
    cls: 'c-cu',
    label: 'CPU Used Seconds',
    short: 'CPU Used s',
    num: true,
    title: 'Real user + system CPU seconds of the jobs',
    cell: (r) => formatFixed(r.cpuUsed),
  },
  { key: 'updateTime', cls: 'c-last', label: 'Last Update', num: true, cell: (r) => formatTime(r.updateTime) },
];

interface RowProps {
  rec: NodeRec;
  index: number;
  selected: boolean;
  selectable: boolean;
  onToggle(ip: string): void;
  onOpen(ip: string): void;
}

class NodeRow extends Component<RowProps> {
  override shouldComponentUpdate(next: RowProps): boolean {
    const p = this.props;
    return next.rec !== p.rec || next.selected !== p.selected || next.index !== p.index || next.selectable !== p.selectable;
  }

  override render({ rec, index, selected, selectable, onToggle, onOpen }: RowProps) {
    const r = rec;
    return html`<tr class=${`row st-${r.state}${index & 1 ? ' odd' : ''}${selected ? ' selected' : ''}`} aria-rowindex=${index + 2} data-ip=${r.ip}>
      <td class="c-sel">${selectable ? html`<label class="hit"><input type="checkbox" checked=${selected} aria-label=${`Select node ${r.ip}`} onChange=${() => onToggle(r.ip)} /></label>` : null}</td>
      <td class="c-ip"><a class="hit" href=${`node.html?host=${encodeURIComponent(r.ip)}`} title=${`Node page of ${r.ip}`}>${r.ip}</a></td>
      <td class="c-name"><button type="button" class="hit rowbtn" title=${r.name} aria-label=${`Details of node ${r.ip} ${r.name}`} onClick=${() => onOpen(r.ip)}><span class="nm">${r.name || '—'}</span><span class="sub">${STATE_TEXT[r.state]}</span></button></td>
      <td class="c-state"><${StateBadge} state=${r.state} /></td>
      ${COLUMNS.slice(3).map((c) => html`<td class=${`${c.cls} num`}>${c.cell(r)}</td>`)}
    </tr>`;
  }
}

export interface NodesTableProps {
  view: ClusterView;
  version: number;
  sort: SortSpec;
  onSort(s: SortSpec): void;
  selected: ReadonlySet<string>;
  onToggle(ip: string): void;
  onToggleAll(select: boolean, ips: string[]): void;
  onOpen(ip: string): void;
  /** What the body says when there are no nodes. */
  emptyText?: string | undefined;
  /** Whether rows can be selected (for actions: admins only). @default true */
  selectable?: boolean;
}

export function NodesTable({
  view,
  version,
  sort,
  onSort,
  selected,
  onToggle,
  onToggleAll,
  onOpen,
  emptyText,
  selectable = true,
}: NodesTableProps) {
  const rows = useMemo(() => sortNodes(view.nodes.values(), sort), [view, version, sort.key, sort.dir]);
  const tot = useMemo(() => totals(view), [view, version]);
  const body = useRef<HTMLTableSectionElement>(null);
  const all = useRef<HTMLInputElement>(null);
  const win = useRowWindow(rows.length, ROW_HEIGHT, body);
  let nSel = 0;
  for (const r of rows) if (selected.has(r.ip)) nSel++;
  useEffect(() => {
    if (all.current) all.current.indeterminate = nSel > 0 && nSel < rows.length;
  });
  const header = (c: Column, i: number) => {
    const active = sort.key === c.key;
    const aria = active ? (sort.dir === 'asc' ? 'ascending' : 'descending') : undefined;
    const click = () => onSort({ key: c.key, dir: active && sort.dir === 'desc' ? 'asc' : 'desc' });
    return html`<th key=${i} scope="col" class=${`${c.cls}${c.num ? ' num' : ''}${active ? ' sorted' : ''}`} aria-sort=${aria} title=${c.title}>
      <button type="button" class="sortbtn" onClick=${click} aria-label=${`${c.label}: sort ${active && sort.dir === 'desc' ? 'ascending' : 'descending'}`}>
        <span>${c.short ?? c.label}</span><span class="sort-ind" aria-hidden="true">${active ? (sort.dir === 'asc' ? '▲' : '▼') : ''}</span>
      </button>
    </th>`;
  };
  const visible = rows.slice(win.start, win.end);
  return html`<div class="table-wrap">
    <table class=${rows.length > 12 ? 'nodes long' : 'nodes'} aria-label="Nodes" aria-rowcount=${rows.length + 2} data-testid="nodes-table">
      <thead>
        <tr aria-rowindex="1">
          <th scope="col" class="c-sel">${
            selectable
              ? html`<label class="hit"><input ref=${all} type="checkbox" aria-label="Select all nodes" checked=${rows.length > 0 && nSel === rows.length} disabled=${rows.length === 0}
            onChange=${(e: Event) =>
              onToggleAll(
                (e.target as HTMLInputElement).checked,
                rows.map((r) => r.ip),
              )} /></label>`
              : html`<span class="sr-only">No selection</span>`
          }</th>
          ${COLUMNS.map(header)}
        </tr>
      </thead>
      <tbody ref=${body}>
        ${win.start > 0 ? html`<tr class="spacer" aria-hidden="true" style=${{ height: `${win.start * ROW_HEIGHT}px` }}><td colspan="18"></td></tr>` : null}
        ${visible.map((r, i) => html`<${NodeRow} key=${r.ip} rec=${r} index=${win.start + i} selected=${selectable && selected.has(r.ip)} selectable=${selectable} onToggle=${onToggle} onOpen=${onOpen} />`)}
        ${win.end < rows.length ? html`<tr class="spacer" aria-hidden="true" style=${{ height: `${(rows.length - win.end) * ROW_HEIGHT}px` }}><td colspan="18"></td></tr>` : null}
        ${rows.length === 0 ? html`<tr class="empty"><td colspan="18" data-testid="nodes-empty">${emptyText ?? 'No nodes in this cluster yet.'}</td></tr>` : null}
      </tbody>
      <tfoot>
        <tr class="totals" aria-rowindex=${rows.length + 2} data-testid="totals">
          <td class="c-sel"></td>
          <th scope="row" class="c-ip">Total</th>
          <td class="c-name" data-testid="total-nodes">${tot.nodes}<span class="t-long"> node${tot.nodes === 1 ? '' : 's'}</span></td>
          <td class="c-state">${nSel ? `${nSel} selected` : ''}</td>
          <td class="c-cpus num" data-testid="total-cpus">${tot.cpus}</td>
          <td class="c-busy num" data-testid="total-busy">${tot.busy}</td>
          <td class="c-bc num">${tot.busy}/${tot.cpus}</td>
          <td class="c-cpu num"></td>
          <td class="c-mem num"></td>
          <td class="c-swap num"></td>
          <td class="c-disk num"></td>
          <td class="c-tx num">${formatBytes(tot.tx)}</td>
          <td class="c-rx num">${formatBytes(tot.rx)}</td>
          <td class="c-done num" data-testid="total-done">${formatInt(tot.jobsDone)}</td>
          <td class="c-spj num">${formatFixed(tot.jobsDone ? tot.jobTime / tot.jobsDone : 0)}</td>
          <td class="c-jt num">${formatFixed(tot.jobTime)}</td>
          <td class="c-cu num">${formatFixed(tot.cpuUsed)}</td>
          <td class="c-last num"></td>
        </tr>
      </tfoot>
    </table>
  </div>`;
}
