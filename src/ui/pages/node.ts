/**
 * Node page (`node.html?host=…`): the seed's §5.3.2. The node's details and history charts, the
 * jobs running on it (with the `toString()` of their arguments) filtered by cluster, a job
 * detail view, terminating selected jobs after an explicit confirmation (the rows then show the
 * outcome), and allocate / deallocate / close for the node.
 */
import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { postForm, replyError, serverPollSec } from '../lib/api.js';
import { formatDateTime, formatTime } from '../lib/format.js';
import { html } from '../lib/html.js';
import { LiveFeed } from '../lib/live.js';
import { ClusterStore, COMBINED, toNodeRec, type NodeRec } from '../lib/store.js';
import type { JobJson, NodeInfoJson } from '../lib/types.js';
import { initialInterval, IntervalControl, Messages, noteLog, OfflineBanner, say, TopBar, ViewerNote } from '../components/common.js';
import { canAct } from '../lib/session.js';
import { NodeCharts, NodeFields } from '../components/node-details.js';

const store = new ClusterStore();
/** Set by the page: called after each update the feed applied. */
let onFeed: ((changed: Set<string>, full: boolean) => void) | null = null;
const feed = new LiveFeed({
  store,
  intervalSec: initialInterval(serverPollSec()),
  onApplied: (r) => onFeed?.(r.changed, r.full),
  onLog: noteLog,
});

const ALL = '*';

type Outcome = 'pending' | 'terminated' | 'failed';
interface OutcomeEntry {
  job: JobJson;
  outcome: Outcome;
  at: number;
}

const OUTCOME_TEXT: Record<Outcome, string> = {
  pending: 'Terminating…',
  terminated: 'Terminated',
  failed: 'Not terminated (it had ended or could not be killed)',
};

function jobKey(j: JobJson): string {
  return `${j.cluster}\u0000${j.uid}`;
}

/** One `POST /node_info` at a time; a request asked for meanwhile runs once after it. */
function useNodeInfo(host: string) {
  const [info, setInfo] = useState<NodeInfoJson | null>(null);
  const [error, setError] = useState('');
  const [loading, setLoading] = useState(false);
  const state = useRef({ inflight: false, again: false, host });
  state.current.host = host;
  const load = async (): Promise<void> => {
    const s = state.current;
    if (!s.host) return;
    if (s.inflight) {
      s.again = true;
      return;
    }
    s.inflight = true;
    setLoading(true);
    const h = s.host;
    const r = await postForm<NodeInfoJson>('node_info', [['host', h]]);
    s.inflight = false;
    setLoading(false);
    if (h !== s.host) {
      void load();
      return;
    }
    if (r.ok && r.body && typeof r.body === 'object' && r.body.node) {
      setInfo(r.body);
      setError('');
    } else if (r.status === 404 || (r.ok && !r.body)) {
      setInfo(null);
      setError(`No cluster knows a node "${h}".`);
    } else if (r.networkError) {
      setError('The server did not answer; the page keeps retrying.');
    } else {
      setError(`Node update failed: ${replyError(r)}`);
    }
    if (s.again) {
      s.again = false;
      void load();
    }
  };
  return { info, error, loading, load, setInfo };
}

function JobDetail({
  job,
  outcome,
  node,
  onClose,
  onTerminate,
}: {
  job: JobJson;
  outcome: OutcomeEntry | undefined;
  node: NodeRec | null;
  onClose(): void;
  onTerminate(j: JobJson): void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [confirming, setConfirming] = useState(false);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const close = () => onClose();
    d?.addEventListener('close', close);
    return () => d?.removeEventListener('close', close);
  }, []);
  const status = outcome ? OUTCOME_TEXT[outcome.outcome] : typeof job.status === 'string' ? job.status : 'Running';
  const rows: Array<[string, unknown]> = [
    ['Job ID', job.job_id],
    ['Cluster', job.cluster],
    ['Arguments', [job.args, job.kwargs].filter(Boolean).join(', ') || '—'],
    ['Status', status],
    ['Node', node ? `${node.ip}${node.name ? ` (${node.name})` : ''}` : '—'],
    ['Submitted', job.submit_time_ms ? formatDateTime(job.submit_time_ms) : '—'],
    ['Started', formatDateTime(job.start_time_ms)],
    ['Internal uid', String(job.uid)],
  ];
  return html`<dialog class="sheet" ref=${ref} aria-labelledby="job-title" data-testid="job-detail">
    <div class="panel-head">
      <h2 id="job-title">Job <span class="mono">${job.job_id}</span></h2>
      <button type="button" class="btn btn-icon" aria-label="Close job details" onClick=${() => ref.current?.close()}>✕</button>
    </div>
    <dl class="fields one-col">
      ${rows.map(([k, v]) => html`<div class="field-row" key=${k}><dt>${k}</dt><dd>${v}</dd></div>`)}
    </dl>
    ${
      !outcome && canAct.value
        ? confirming
          ? html`<div class="confirm" role="group" aria-label="Confirm termination">
            <span>Terminate job ${job.job_id}? Its process is killed.</span>
            <button type="button" class="btn btn-danger" onClick=${() => {
              onTerminate(job);
              ref.current?.close();
            }}>Terminate</button>
            <button type="button" class="btn" onClick=${() => setConfirming(false)}>Cancel</button>
          </div>`
          : html`<p><button type="button" class="btn" onClick=${() => setConfirming(true)}>Terminate this job…</button></p>`
        : null
    }
  </dialog>`;
}

function NodeApp() {
  const version = store.version.value;
  const initial = new URLSearchParams(location.search).get('host')?.trim() ?? '';
  const [host, setHost] = useState(initial);
  const [hostInput, setHostInput] = useState(initial);
  const [filter, setFilter] = useState(ALL);
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [confirming, setConfirming] = useState(false);
  const [outcomes, setOutcomes] = useState<ReadonlyMap<string, OutcomeEntry>>(new Map());
  const [detail, setDetail] = useState<string | null>(null);
  const [nodeAction, setNodeAction] = useState('allocate_node');
  const { info, error, loading, load } = useNodeInfo(host);
  const confirmBtn = useRef<HTMLButtonElement>(null);
  const admin = canAct.value;

  const ip = info?.node?.ip_addr ?? host;
  // Fetch the jobs again whenever the node changed (or the picture was replaced).
  useEffect(() => {
    onFeed = (changed, full) => {
      if (full || changed.has(ip)) void load();
    };
    return () => {
      onFeed = null;
    };
  }, [ip]);
  useEffect(() => {
    if (host) void load();
  }, [host]);
  useEffect(() => {
    if (confirming) confirmBtn.current?.focus();
  }, [confirming]);

  const clusters = useMemo(() => {
    const names = new Set<string>(Object.keys(info?.cluster_jobs ?? {}));
    for (const [name, v] of store.clusters) if (v.nodes.has(ip)) names.add(name);
    return [...names];
  }, [info, version, ip]);
  const viewKey = filter !== ALL ? filter : store.combined ? COMBINED : (store.clusters.keys().next().value ?? '');
  const rec: NodeRec | null = store.view(viewKey)?.nodes.get(ip) ?? (info?.node ? toNodeRec(info.node) : null);

  const jobs = useMemo(() => {
    const list: JobJson[] = [];
    for (const [name, js] of Object.entries(info?.cluster_jobs ?? {}))
      if (filter === ALL || filter === name) for (const j of js) list.push({ ...j, cluster: j.cluster || name });
    list.sort((a, b) => a.start_time_ms - b.start_time_ms || a.uid - b.uid);
    // Jobs terminated from this page stay listed with their outcome after they left the node.
    const present = new Set(list.map(jobKey));
    for (const [k, o] of outcomes) if (!present.has(k) && (filter === ALL || filter === o.job.cluster)) list.push(o.job);
    return list;
  }, [info, filter, outcomes]);
  const liveKeys = new Set(
    Object.entries(info?.cluster_jobs ?? {}).flatMap(([name, js]) => js.map((j) => `${j.cluster || name}\u0000${j.uid}`)),
  );
  const selectable = jobs.filter((j) => liveKeys.has(jobKey(j)) && !outcomes.has(jobKey(j)));
  const chosen = selectable.filter((j) => selected.has(jobKey(j)));

  const show = (e: Event) => {
    e.preventDefault();
    const h = hostInput.trim();
    setHost(h);
    setSelected(new Set());
    const url = new URL(location.href);
    if (h) url.searchParams.set('host', h);
    else url.searchParams.delete('host');
    history.replaceState(null, '', url);
  };

  const terminate = async (list: JobJson[]) => {
    if (list.length === 0) return;
    setConfirming(false);
    setSelected(new Set());
    const now = Date.now();
    setOutcomes((prev) => {
      const m = new Map(prev);
      for (const j of list) m.set(jobKey(j), { job: j, outcome: 'pending', at: now });
      return m;
    });
    const r = await postForm<number[]>(
      'cancel_jobs',
      list.map((j) => ['uid', String(j.uid)] as [string, string]),
    );
    const done = new Set(r.ok && Array.isArray(r.body) ? r.body.map(Number) : []);
    setOutcomes((prev) => {
      const m = new Map(prev);
      for (const j of list) m.set(jobKey(j), { job: j, outcome: done.has(j.uid) ? 'terminated' : 'failed', at: Date.now() });
      return m;
    });
    if (!r.ok) say(`Terminating failed: ${replyError(r)}`, 'error');
    else {
      const ok = list.filter((j) => done.has(j.uid)).length;
      say(`Terminated ${ok} of ${list.length} job${list.length === 1 ? '' : 's'} on ${ip}.`, ok === list.length ? 'ok' : 'error');
    }
    void load();
  };

  const runNodeAction = async (e: Event) => {
    e.preventDefault();
    if (!ip) return;
    const fields: Array<[string, string]> = [
      ['cluster', filter === ALL ? '*' : filter],
      ['nodes', JSON.stringify([ip])],
    ];
    const r = await postForm<number>(nodeAction, fields);
    const verb = nodeAction === 'allocate_node' ? 'Allocate' : nodeAction === 'deallocate_node' ? 'Deallocate' : 'Close';
    const what = `${verb} ${ip} (${filter === ALL ? 'all clusters' : filter})`;
    if (!r.ok) say(`${what} failed: ${replyError(r)}`, 'error');
    else if (r.body === 0) say(`${what}: done.`, 'ok');
    else say(`${what}: refused by the cluster (${String(r.body)}).`, 'error');
    void feed.refresh();
  };

  const toggle = (k: string) =>
    setSelected((prev) => {
      const n = new Set(prev);
      if (n.has(k)) n.delete(k);
      else n.add(k);
      return n;
    });
  const detailJob = detail ? jobs.find((j) => jobKey(j) === detail) : undefined;

  return html`<${TopBar} active="node" feed=${feed} />
    <main class="container" id="main">
      <div class="page-head">
        <h1>Node${rec ? html` <span class="mono" data-testid="node-ip">${rec.ip}</span>` : null}</h1>
        ${rec?.name ? html`<p class="subtitle" data-testid="node-name">${rec.name}</p>` : null}
      </div>
      <${OfflineBanner} feed=${feed} />
      <section class="card" aria-label="Settings">
        <div class="controls-row">
          <form class="controls" onSubmit=${show}>
            <div class="field">
              <label for="host">Name or IP of Node to Show</label>
              <input id="host" type="text" value=${hostInput} autocomplete="off" spellcheck=${false} placeholder="e.g. 127.0.0.2"
                onInput=${(e: Event) => setHostInput((e.target as HTMLInputElement).value)} />
            </div>
            <div class="field field-button"><button type="submit" class="btn">Show</button></div>
          </form>
          <div class="field">
            <label for="cluster">Cluster</label>
            <select id="cluster" value=${filter} onChange=${(e: Event) => {
              setFilter((e.target as HTMLSelectElement).value);
              setSelected(new Set());
            }}>
              <option value=${ALL}>* (All)</option>
              ${clusters.map((c) => html`<option key=${c} value=${c}>${c}</option>`)}
            </select>
          </div>
          <${IntervalControl} feed=${feed} onUpdate=${() => void load()} />
        </div>
      </section>
      ${
        !host
          ? html`<section class="card empty-state"><p>Enter a node's name or IP address, or pick one on the <a href="monitor.html">Monitor</a>.</p></section>`
          : error && !rec
            ? html`<section class="card empty-state" role="alert" data-testid="node-error"><p>${error}</p></section>`
            : null
      }
      ${
        rec
          ? html`<section class="card" aria-labelledby="details-h">
            <h2 id="details-h" class="card-title">Details${filter !== ALL ? html` <span class="muted">(cluster ${filter})</span>` : null}</h2>
            ${error ? html`<p class="help help-error" role="alert">${error}</p>` : null}
            <${NodeFields} rec=${rec} testid="node-fields" />
            <${NodeCharts} rec=${rec} series=${store.history.get(viewKey, rec.ip)} version=${version} since=${store.since} />
          </section>`
          : null
      }
      ${
        host
          ? html`<section class="card" aria-labelledby="jobs-h">
            <div class="card-head">
              <h2 id="jobs-h" class="card-title">Jobs Running <span class="muted" data-testid="jobs-count">(${jobs.length - [...outcomes.keys()].filter((k) => !liveKeys.has(k)).length})</span></h2>
              ${outcomes.size ? html`<button type="button" class="btn btn-small" onClick=${() => setOutcomes(new Map())}>Clear outcomes</button>` : null}
            </div>
            <div class="scroll-x">
              <table class="data jobs" data-testid="jobs-table" aria-describedby="jobs-h">
                <thead>
                  <tr>
                    <th scope="col" class="c-sel">${
                      admin
                        ? html`<label class="hit"><input type="checkbox" aria-label="Select all running jobs"
                      checked=${selectable.length > 0 && chosen.length === selectable.length} disabled=${selectable.length === 0}
                      onChange=${(e: Event) => setSelected((e.target as HTMLInputElement).checked ? new Set(selectable.map(jobKey)) : new Set())} /></label>`
                        : html`<span class="sr-only">No selection</span>`
                    }</th>
                    <th scope="col" class="j-cluster">Cluster</th>
                    <th scope="col" class="j-id">Job ID</th>
                    <th scope="col">Arguments</th>
                    <th scope="col" class="j-started">Started At</th>
                    <th scope="col" class="j-status">Status</th>
                  </tr>
                </thead>
                <tbody>
                  ${jobs.length === 0 ? html`<tr><td colspan="6" class="muted">${loading && !info ? 'Loading…' : 'No jobs running on this node.'}</td></tr>` : null}
                  ${jobs.map((j) => {
                    const k = jobKey(j);
                    const o = outcomes.get(k);
                    const live = liveKeys.has(k);
                    const args = [j.args, j.kwargs].filter(Boolean).join(', ');
                    return html`<tr key=${k} class=${o ? 'gone' : ''} data-uid=${j.uid}>
                      <td class="c-sel">${admin ? html`<label class="hit"><input type="checkbox" aria-label=${`Select job ${j.job_id}`} checked=${selected.has(k)} disabled=${!live || !!o} onChange=${() => toggle(k)} /></label>` : null}</td>
                      <td class="j-cluster">${j.cluster}</td>
                      <td class="j-id"><button type="button" class="btn btn-small linkbtn" aria-label=${`Details of job ${j.job_id}`} onClick=${() => setDetail(k)}>${j.job_id}</button></td>
                      <td class="wrap args" data-testid="job-args">${args || html`<span class="muted">—</span>`}</td>
                      <td class="j-started"><time title=${formatDateTime(j.start_time_ms)}>${formatTime(j.start_time_ms)}</time></td>
                      <td class=${`j-status outcome outcome-${o ? (o.outcome === 'terminated' ? 'ok' : o.outcome === 'failed' ? 'err' : 'pending') : 'live'}`} data-testid="job-status">${o ? OUTCOME_TEXT[o.outcome] : 'Running'}</td>
                    </tr>`;
                  })}
                </tbody>
              </table>
            </div>
            ${
              admin
                ? html`<div class="actions terminate-bar">
                  <button type="button" class="btn btn-danger" disabled=${chosen.length === 0 || confirming} onClick=${() => setConfirming(true)} data-testid="terminate">
                    Terminate Selected Jobs${chosen.length ? ` (${chosen.length})` : ''}
                  </button>
                </div>`
                : html`<${ViewerNote} what="terminating jobs and node actions" />`
            }
            ${
              admin && confirming && chosen.length
                ? html`<div class="confirm" role="alertdialog" aria-labelledby="confirm-text" data-testid="confirm">
                  <span id="confirm-text">Terminate ${chosen.length} job${chosen.length === 1 ? '' : 's'} on ${ip}? Their processes are killed; this cannot be undone.</span>
                  <button type="button" class="btn btn-danger" ref=${confirmBtn} onClick=${() => void terminate(chosen)} data-testid="confirm-terminate">Yes, terminate</button>
                  <button type="button" class="btn" onClick=${() => setConfirming(false)}>Cancel</button>
                </div>`
                : null
            }
          </section>
          ${
            admin
              ? html`<section class="card" aria-labelledby="action-h" data-testid="node-action-card">
            <h2 id="action-h" class="card-title">Node Action</h2>
            <form class="actions" onSubmit=${runNodeAction}>
              <label class="sr-only" for="node-action">Node action</label>
              <select id="node-action" value=${nodeAction} onChange=${(e: Event) => setNodeAction((e.target as HTMLSelectElement).value)}>
                <option value="allocate_node">Allocate to ${filter === ALL ? 'all clusters' : `cluster ${filter}`}</option>
                <option value="deallocate_node">Deallocate from ${filter === ALL ? 'all clusters' : `cluster ${filter}`}</option>
                <option value="close_node">Close for ${filter === ALL ? 'all clusters' : `cluster ${filter}`}</option>
              </select>
              <button type="submit" class="btn btn-primary" disabled=${!ip}>Execute</button>
            </form>
          </section>`
              : null
          }`
          : null
      }
      <${Messages} />
    </main>
    ${detailJob ? html`<${JobDetail} key=${detail} job=${detailJob} outcome=${outcomes.get(detail!)} node=${rec} onClose=${() => setDetail(null)} onTerminate=${(j: JobJson) => void terminate([j])} />` : null}`;
}

render(html`<${NodeApp} />`, document.getElementById('app')!);
feed.start();
