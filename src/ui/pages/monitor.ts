/**
 * Monitor page (`/`, `monitor.html`): the seed's §5.3.1. Cluster selector (with `* Combined`
 * when there are several), the jobs summary, a throughput chart, the nodes table with totals,
 * and allocate / deallocate / close on the selected nodes.
 */
import { render } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import { postForm, replyError, serverPollSec, serverShowJobArgs } from '../lib/api.js';
import { formatInt } from '../lib/format.js';
import { perInterval } from '../lib/history.js';
import { html } from '../lib/html.js';
import { LiveFeed } from '../lib/live.js';
import { DEFAULT_SORT, type SortSpec } from '../lib/sort.js';
import { ClusterStore, totals, type ClusterView } from '../lib/store.js';
import { TimeChart } from '../components/chart.js';
import {
  clusterField,
  clusterLabel,
  ClusterSelect,
  initialInterval,
  IntervalControl,
  Messages,
  noteLog,
  OfflineBanner,
  pickView,
  say,
  TopBar,
  ViewerNote,
} from '../components/common.js';
import { canAct } from '../lib/session.js';
import { NodePanel } from '../components/node-details.js';
import { NodesTable } from '../components/nodes-table.js';
import { loadPref, savePref } from '../lib/prefs.js';

const store = new ClusterStore();
const EMPTY_VIEW: ClusterView = {
  key: '',
  label: '',
  jobs: { submitted: 0, done: 0, queued: 0, running: 0, failed: 0 },
  nodes: new Map(),
  closed: false,
  shared: false,
  note: null,
};
const feed = new LiveFeed({ store, intervalSec: initialInterval(serverPollSec()), onLog: noteLog });

const ACTIONS = [
  { value: 'allocate_node', label: 'Allocate to cluster', verb: 'Allocate' },
  { value: 'deallocate_node', label: 'Deallocate from cluster', verb: 'Deallocate' },
  { value: 'close_node', label: 'Close for cluster', verb: 'Close' },
] as const;
type Action = (typeof ACTIONS)[number]['value'];

function JobsSummary({
  jobs,
  nodes,
  cpus,
  busy,
}: {
  jobs: { submitted: number; done: number; queued: number; running: number; failed: number };
  nodes: number;
  cpus: number;
  busy: number;
}) {
  const items: Array<[string, number, string, string?]> = [
    ['Queued', jobs.queued, 'queued', 'Waiting for a CPU'],
    ['Running', jobs.running, 'running', "Started and not done (dispy's Jobs Pending)"],
    ['Done', jobs.done, 'done', 'Finished, terminated, cancelled or abandoned after starting'],
    ['Failed', jobs.failed, 'failed', 'Done but not Finished'],
    ['Submitted', jobs.submitted, 'submitted', 'Jobs that started running'],
  ];
  return html`<section class="summary" aria-label="Jobs and nodes summary" data-testid="jobs-summary">
    ${items.map(
      ([label, n, id, title]) => html`<div class=${`stat stat-${id}`} key=${id} title=${title}>
      <span class="stat-label">Jobs ${label}</span><span class="stat-value" data-testid=${`jobs-${id}`}>${formatInt(n)}</span></div>`,
    )}
    <div class="stat stat-nodes"><span class="stat-label">Nodes</span><span class="stat-value" data-testid="nodes-count">${formatInt(nodes)}</span></div>
    <div class="stat stat-busy" title="Busy CPUs of the CPUs the cluster uses">
      <span class="stat-label">Busy CPUs</span><span class="stat-value"><span data-testid="busy-cpus">${formatInt(busy)}</span><span class="stat-of"> / ${formatInt(cpus)}</span></span>
      <span class="meter" aria-hidden="true"><span class="meter-fill" style=${{ width: `${cpus ? Math.min(100, (100 * busy) / cpus) : 0}%` }}></span></span>
    </div>
  </section>`;
}

function Throughput({ viewKey, version, intervalSec }: { viewKey: string; version: number; intervalSec: number }) {
  const s = store.done.get(viewKey);
  const data = useMemo(() => {
    if (!s) return [[], []];
    const d = perInterval(s);
    return [d.t.map((t) => t / 1000), d.v];
  }, [s, version]);
  const last = data[1]!.length ? data[1]![data[1]!.length - 1]! : 0;
  return html`<section class="card" aria-labelledby="tp-h">
    <h2 id="tp-h" class="card-title">Throughput</h2>
    <${TimeChart} label="Jobs done per update" testid="chart-throughput"
      summary=${`${formatInt(last)} jobs done in the latest update${intervalSec > 0 ? ` (updates every ${intervalSec} s)` : ''}`}
      series=${[{ label: 'Jobs done', color: '--chart-3', kind: 'bars' }]} data=${data} height=${160} />
  </section>`;
}

function MonitorApp() {
  const version = store.version.value;
  const [wanted, setWanted] = useState(loadPref('cluster', ''));
  const key = pickView(store, wanted);
  const view = store.view(key);
  const [sort, setSort] = useState<SortSpec>(loadPref('sort', DEFAULT_SORT));
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [open, setOpen] = useState<string | null>(null);
  const [action, setAction] = useState<Action>('allocate_node');
  const [terminate, setTerminate] = useState(false);
  const [running, setRunning] = useState(false);
  const [showArgs, setShowArgs] = useState(serverShowJobArgs());
  const admin = canAct.value;

  const chooseView = (k: string) => {
    setWanted(k);
    savePref('cluster', k);
    setSelected(new Set());
  };
  const chooseSort = (s: SortSpec) => {
    setSort(s);
    savePref('sort', s);
  };
  const toggle = (ip: string) => {
    setSelected((prev) => {
      const next = new Set(prev);
      if (next.has(ip)) next.delete(ip);
      else next.add(ip);
      return next;
    });
  };
  const toggleAll = (on: boolean, ips: string[]) => setSelected(on ? new Set(ips) : new Set());

  const targets = view ? [...selected].filter((ip) => view.nodes.has(ip)) : [];
  const execute = async (e: Event) => {
    e.preventDefault();
    if (!view || targets.length === 0) return;
    const a = ACTIONS.find((x) => x.value === action)!;
    const fields: Array<[string, string]> = [
      ['cluster', clusterField(key)],
      ['nodes', JSON.stringify(targets)],
    ];
    if (action === 'close_node' && terminate) fields.push(['terminate', 'true']);
    setRunning(true);
    const r = await postForm<number>(action, fields);
    setRunning(false);
    const what = `${a.verb} ${targets.length === 1 ? targets[0] : `${targets.length} nodes`} (${clusterLabel(key)})`;
    if (!r.ok) say(`${what} failed: ${replyError(r)}`, 'error');
    else if (r.body === 0) say(`${what}: done.`, 'ok');
    else say(`${what}: refused by the cluster (${String(r.body)}).`, 'error');
    void feed.refresh();
  };

  const changeShowArgs = async (on: boolean) => {
    setShowArgs(on);
    const r = await postForm('update', [['show_job_args', on ? 'true' : 'false']]);
    if (r.ok) say(on ? 'Job arguments are shown (for every viewer).' : 'Job arguments are hidden (for every viewer).', 'ok');
    else {
      setShowArgs(!on);
      say(`Could not change Show Job Arguments: ${replyError(r)}`, 'error');
    }
  };

  // Before the first update the page is drawn empty (the layout, its styles and fonts are ready
  // when a large snapshot arrives, so only the rows remain to paint).
  const shown = view ?? EMPTY_VIEW;
  const tot = totals(shown);
  const emptyText = view ? undefined : feed.lastUpdate.value ? 'The server follows no cluster yet.' : 'Loading…';
  const openRec = open && view ? view.nodes.get(open) : undefined;
  const allClosed = !!view && view.nodes.size > 0 && [...view.nodes.values()].every((n) => n.state === 'closed');
  return html`<${TopBar} active="monitor" feed=${feed} />
    <main class="container" id="main">
      <div class="page-head">
        <h1>Cluster Monitor</h1>
        ${view ? html`<p class="subtitle"><span data-testid="cluster-name">${clusterLabel(key)}</span>${view.closed || allClosed ? html` <span class="tag tag-closed">closed</span>` : null}${view.note ? html` <span class="tag tag-closed" data-testid="cluster-note">${view.note}</span>` : null}</p>` : null}
      </div>
      <${OfflineBanner} feed=${feed} />
      <section class="card" aria-label="Settings">
        <div class="controls-row">
          <${ClusterSelect} store=${store} value=${key} onChange=${chooseView} />
          <${IntervalControl} feed=${feed}>
            ${
              admin
                ? html`<div class="field field-check">
                  <label class="check hit"><input type="checkbox" checked=${showArgs} onChange=${(e: Event) => void changeShowArgs((e.target as HTMLInputElement).checked)} data-testid="show-args" /> Show Job Arguments</label>
                  <small class="help">Server-wide, on the Node page</small>
                </div>`
                : null
            }
          </${IntervalControl}>
        </div>
      </section>
      <${JobsSummary} jobs=${shown.jobs} nodes=${tot.nodes} cpus=${tot.cpus} busy=${tot.busy} />
      ${html`<section class="card" aria-labelledby="nodes-h">
            <div class="card-head">
              <h2 id="nodes-h" class="card-title">Nodes</h2>
              ${
                admin
                  ? html`<form class="actions" onSubmit=${execute} aria-label="Action on the selected nodes" data-testid="node-actions">
                <span class="muted" data-testid="selected-count">${targets.length} selected</span>
                <label class="sr-only" for="action">Action on selected nodes</label>
                <select id="action" value=${action} onChange=${(e: Event) => setAction((e.target as HTMLSelectElement).value as Action)}>
                  ${ACTIONS.map((a) => html`<option key=${a.value} value=${a.value}>${a.label}</option>`)}
                </select>
                ${action === 'close_node' ? html`<label class="check hit"><input type="checkbox" checked=${terminate} onChange=${(e: Event) => setTerminate((e.target as HTMLInputElement).checked)} /> terminate running jobs</label>` : null}
                <button type="submit" class="btn btn-primary" disabled=${targets.length === 0 || running} data-testid="execute">Execute</button>
              </form>`
                  : null
              }
            </div>
            <${ViewerNote} what="allocating, deallocating and closing nodes" />
            <${NodesTable} view=${shown} version=${version} sort=${sort} onSort=${chooseSort} selected=${selected} selectable=${admin}
              onToggle=${toggle} onToggleAll=${toggleAll} onOpen=${setOpen} emptyText=${emptyText} />
          </section>
          <${Throughput} viewKey=${key} version=${version} intervalSec=${feed.intervalSec.value} />`}
      <${Messages} />
    </main>
    ${openRec ? html`<${NodePanel} rec=${openRec} series=${store.history.get(key, openRec.ip)} version=${version} since=${store.since} onClose=${() => setOpen(null)} />` : null}`;
}

render(html`<${MonitorApp} />`, document.getElementById('app')!);
feed.start();
