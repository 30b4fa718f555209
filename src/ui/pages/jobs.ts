/**
 * Jobs page (`jobs.html`): the recent history of finished jobs (Finished, Terminated, Cancelled,
 * Abandoned) the server keeps, newest first, filtered by status, node and cluster (the filters
 * live in the address, so a filtered view can be shared), refreshed as jobs end, with a detail
 * view per job (exception, stdout and stderr tails) that `?job=<hid>` opens directly.
 */
import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { getJson, replyError, serverPollSec } from '../lib/api.js';
import { compareIp, formatDateTime, formatFixed, formatInt, formatTime } from '../lib/format.js';
import { html } from '../lib/html.js';
import { LiveFeed } from '../lib/live.js';
import { ClusterStore } from '../lib/store.js';
import type { JobHistoryJson, JobRecordJson } from '../lib/types.js';
import { initialInterval, IntervalControl, Messages, noteLog, OfflineBanner, say, TopBar } from '../components/common.js';
import { JobRecordDetail, runSeconds, StatusTag } from '../components/job-record.js';

const store = new ClusterStore();
/** Set by the page: called after each update the feed applied. */
let onFeed: (() => void) | null = null;
const feed = new LiveFeed({ store, intervalSec: initialInterval(serverPollSec()), onApplied: () => onFeed?.(), onLog: noteLog });

const PAGE = 100;
const STATUSES = [
  { value: '', label: 'All statuses' },
  { value: 'Finished', label: 'Finished' },
  { value: 'failed', label: 'Failed (not Finished)' },
  { value: 'Terminated', label: 'Terminated' },
  { value: 'Cancelled', label: 'Cancelled' },
  { value: 'Abandoned', label: 'Abandoned' },
];

interface Filters {
  status: string;
  node: string;
  cluster: string;
}

function readFilters(): Filters {
  const q = new URLSearchParams(location.search);
  const status = q.get('status') ?? '';
  return { status: STATUSES.some((s) => s.value === status) ? status : '', node: q.get('node') ?? '', cluster: q.get('cluster') ?? '' };
}

function writeUrl(f: Filters, job: number | null): void {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(f)) {
    if (v) url.searchParams.set(k, v);
    else url.searchParams.delete(k);
  }
  if (job) url.searchParams.set('job', String(job));
  else url.searchParams.delete('job');
  history.replaceState(null, '', url);
}

function query(f: Filters, limit: number, before?: number): string {
  const q = new URLSearchParams({ limit: String(limit) });
  if (f.status) q.set('status', f.status);
  if (f.node) q.set('node', f.node);
  if (f.cluster) q.set('cluster', f.cluster);
  if (before) q.set('before', String(before));
  return `job_history?${q}`;
}

/** The history for `filters`, reloaded when jobs end (one request at a time). */
function useHistory(filters: Filters) {
  const [data, setData] = useState<JobHistoryJson | null>(null);
  const [error, setError] = useState('');
  const state = useRef({ inflight: false, again: false, shown: PAGE, filters });
  state.current.filters = filters;
  const load = async (): Promise<void> => {
    const s = state.current;
    if (s.inflight) {
      s.again = true;
      return;
    }
    s.inflight = true;
    const f = s.filters;
    const r = await getJson<JobHistoryJson>(query(f, Math.min(1000, s.shown)));
    s.inflight = false;
    if (f !== s.filters) s.again = true;
    else if (r.ok && r.body && Array.isArray(r.body.jobs)) {
      setData(r.body);
      setError('');
    } else
      setError(r.networkError ? 'The server did not answer; the page keeps retrying.' : `Loading the history failed: ${replyError(r)}`);
    if (s.again) {
      s.again = false;
      void load();
    }
  };
  const more = async (): Promise<void> => {
    const last = data?.jobs[data.jobs.length - 1];
    if (!data || !last) return;
    const r = await getJson<JobHistoryJson>(query(state.current.filters, PAGE, last.hid));
    if (!r.ok || !r.body) {
      say(`Loading more jobs failed: ${replyError(r)}`, 'error');
      return;
    }
    state.current.shown = data.jobs.length + r.body.jobs.length;
    setData({ ...r.body, jobs: [...data.jobs, ...r.body.jobs] });
  };
  useEffect(() => {
    state.current.shown = PAGE;
    void load();
  }, [filters.status, filters.node, filters.cluster]);
  return { data, error, load, more };
}

function JobsApp() {
  const version = store.version.value;
  const [filters, setFilters] = useState<Filters>(readFilters);
  const [detail, setDetail] = useState<JobRecordJson | null>(null);
  const { data, error, load, more } = useHistory(filters);

  // Reload with each update the feed applies: jobs end with the changes it brings.
  useEffect(() => {
    onFeed = () => void load();
    return () => {
      onFeed = null;
    };
  }, []);

  // `?job=<hid>` opens that job's details.
  useEffect(() => {
    const hid = Number(new URLSearchParams(location.search).get('job'));
    if (!Number.isInteger(hid) || hid <= 0) return;
    void getJson<{ job: JobRecordJson }>(`job_history?hid=${hid}`).then((r) => {
      if (r.ok && r.body?.job) setDetail(r.body.job);
      else say(`Job record ${hid}: ${replyError(r)}`, 'error');
    });
  }, []);

  const change = (patch: Partial<Filters>) => {
    const next = { ...filters, ...patch };
    setFilters(next);
    writeUrl(next, null);
  };
  const open = (j: JobRecordJson) => {
    setDetail(j);
    writeUrl(filters, j.hid);
  };
  const close = () => {
    setDetail(null);
    writeUrl(filters, null);
  };

  // Nodes and clusters to filter by: those the page knows of, and those in the records.
  const nodes = useMemo(() => {
    const m = new Map<string, string>();
    for (const v of store.clusters.values()) for (const n of v.nodes.values()) m.set(n.ip, n.name);
    for (const j of data?.jobs ?? []) if (j.node && !m.has(j.node)) m.set(j.node, j.node_name ?? '');
    if (filters.node && !m.has(filters.node)) m.set(filters.node, '');
    return [...m].sort((a, b) => compareIp(a[0], b[0]));
  }, [version, data, filters.node]);
  const clusters = useMemo(() => {
    const s = new Set<string>(store.clusters.keys());
    for (const j of data?.jobs ?? []) s.add(j.cluster);
    if (filters.cluster) s.add(filters.cluster);
    return [...s];
  }, [version, data, filters.cluster]);

  const jobs = data?.jobs ?? [];
  return html`<${TopBar} active="jobs" feed=${feed} />
    <main class="container" id="main">
      <div class="page-head"><h1>Finished Jobs</h1>
        ${data ? html`<p class="subtitle" data-testid="history-count">Showing ${formatInt(jobs.length)} of ${formatInt(data.matched)} matching; the server keeps the latest ${formatInt(data.capacity)} finished jobs</p>` : null}
      </div>
      <${OfflineBanner} feed=${feed} />
      <section class="card" aria-label="Filters">
        <div class="controls-row">
          <div class="field">
            <label for="f-status">Status</label>
            <select id="f-status" value=${filters.status} onChange=${(e: Event) => change({ status: (e.target as HTMLSelectElement).value })} data-testid="filter-status">
              ${STATUSES.map((s) => html`<option key=${s.value} value=${s.value}>${s.label}</option>`)}
            </select>
          </div>
          <div class="field">
            <label for="f-node">Node</label>
            <select id="f-node" value=${filters.node} onChange=${(e: Event) => change({ node: (e.target as HTMLSelectElement).value })} data-testid="filter-node">
              <option value="">All nodes</option>
              ${nodes.map(([ip, name]) => html`<option key=${ip} value=${ip}>${name && name !== ip ? `${ip} (${name})` : ip}</option>`)}
            </select>
          </div>
          <div class="field">
            <label for="f-cluster">Cluster</label>
            <select id="f-cluster" value=${filters.cluster} onChange=${(e: Event) => change({ cluster: (e.target as HTMLSelectElement).value })} data-testid="filter-cluster">
              <option value="">All clusters</option>
              ${clusters.map((c) => html`<option key=${c} value=${c}>${c}</option>`)}
            </select>
          </div>
          <${IntervalControl} feed=${feed} onUpdate=${() => void load()} />
        </div>
      </section>
      ${error ? html`<p class="banner banner-error" role="alert">${error}</p>` : null}
      <section class="card" aria-labelledby="history-h">
        <h2 id="history-h" class="card-title">History</h2>
        <div class="scroll-x">
          <table class="data history" data-testid="history-table" aria-describedby="history-h">
            <thead>
              <tr>
                <th scope="col" class="h-id">Job ID</th>
                <th scope="col" class="h-status">Status</th>
                <th scope="col" class="h-cluster">Cluster</th>
                <th scope="col" class="h-node">Node</th>
                <th scope="col" class="h-args">Arguments</th>
                <th scope="col" class="h-end">Ended</th>
                <th scope="col" class="num h-run">Run s</th>
              </tr>
            </thead>
            <tbody>
              ${
                jobs.length === 0
                  ? html`<tr><td colspan="7" class="muted" data-testid="history-empty">${data ? (filters.status || filters.node || filters.cluster ? 'No finished job matches these filters.' : 'No job has finished yet.') : 'Loading…'}</td></tr>`
                  : null
              }
              ${jobs.map((j) => {
                const run = runSeconds(j);
                return html`<tr key=${j.hid} data-hid=${j.hid} data-status=${j.status}>
                  <td class="h-id"><button type="button" class="btn btn-small linkbtn" aria-label=${`Details of job ${j.job_id}`} onClick=${() => open(j)} data-testid="history-open">${j.job_id}</button></td>
                  <td class="h-status"><${StatusTag} status=${j.status} /></td>
                  <td class="h-cluster">${j.cluster}</td>
                  <td class="h-node mono" data-testid="history-node">${j.node ?? html`<span class="muted">—</span>`}</td>
                  <td class="wrap args">${j.args || html`<span class="muted">—</span>`}</td>
                  <td class="h-end"><time title=${formatDateTime(j.end_time_ms)}>${formatTime(j.end_time_ms)}</time></td>
                  <td class="num h-run">${run === null ? '—' : formatFixed(run, 2)}</td>
                </tr>`;
              })}
            </tbody>
          </table>
        </div>
        ${data?.more ? html`<div class="actions form-foot"><button type="button" class="btn" onClick=${() => void more()} data-testid="history-more">Load older jobs</button></div>` : null}
      </section>
      <${Messages} />
    </main>
    ${detail ? html`<${JobRecordDetail} key=${detail.hid} job=${detail} onClose=${close} />` : null}`;
}

render(html`<${JobsApp} />`, document.getElementById('app')!);
feed.start();
