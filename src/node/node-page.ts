/**
 * The node daemon's own page, rendered on the server: its state, CPUs, resources, uptime, the
 * client it serves and the jobs running, and (for an admin) forms to change its CPUs and to
 * drain it. Plain HTML forms that work without script; a small external script refreshes the
 * live part every few seconds. Every value written into the page is HTML-escaped.
 */
import type { AvailInfo } from '../protocol/messages.js';
import type { NodeDaemonStatus } from './node-status.js';

export type NodePageRole = 'admin' | 'viewer';

/** What the page and `/status.json` show. */
export interface NodePageData extends NodeDaemonStatus {
  availInfo: AvailInfo;
  uptimeSec: number;
  role: NodePageRole;
}

export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

function bytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(2)} ${units[i]}`;
}

/** `3 d 4 h`, `2 h 5 min`, `4 min 10 s`, `12 s`. */
export function duration(sec: number): string {
  const s = Math.max(0, Math.floor(sec));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

function time(ms: number | null): string {
  if (!ms) return '—';
  const iso = new Date(ms).toISOString();
  return `<time datetime="${iso}">${escapeHtml(iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'))}</time>`;
}

function stateOf(d: NodePageData): { text: string; cls: string } {
  if (d.stopping) return { text: 'Stopping', cls: 'st-stop' };
  if (d.draining) return { text: d.busy ? 'Draining' : 'Drained', cls: 'st-drain' };
  if (d.client) return { text: d.busy ? 'Running jobs' : 'Serving a client', cls: 'st-busy' };
  return { text: 'Idle', cls: 'st-idle' };
}

/** The part the script refreshes. */
export function renderLive(d: NodePageData): string {
  const st = stateOf(d);
  const a = d.availInfo;
  const stats: [string, string, string][] = [
    ['State', `<span class="state ${st.cls}">${escapeHtml(st.text)}</span>`, 'state'],
    ['Busy CPUs', `${d.busy} <span class="of">/ ${d.cpuLimit}</span>`, 'busy'],
    ['Jobs waiting', String(d.queued + Math.max(0, d.running - d.busy)), 'waiting'],
    ['Uptime', escapeHtml(duration(d.uptimeSec)), 'uptime'],
    ['Clients served', String(d.served), 'served'],
  ];
  const resources: [string, string, string][] = [
    ['CPUs in use now', `${d.cpuLimit}${d.cpuLimit !== d.cpus ? ` (lowered from ${d.cpus})` : ''}`, 'cpu-limit'],
    ['CPUs offered (--cpus)', String(d.cpus), 'cpus'],
    ['Machine CPUs', String(d.machineCpus), 'machine-cpus'],
    ['Available CPU', `${a.cpu.toFixed(2)} %`, 'avail-cpu'],
    ['Available memory', bytes(a.memory), 'avail-memory'],
    ['Available disk', bytes(a.disk), 'avail-disk'],
    ['Available swap', `${a.swap.toFixed(2)} %`, 'avail-swap'],
    ['Platform', escapeHtml(d.platform), 'platform'],
    ['TLS', d.tls === 'off' ? 'off' : d.tls === 'mutual' ? 'mutual (client certificates)' : 'on', 'tls'],
    ['Started', time(d.startTime), 'started'],
  ];
  const dl = (rows: [string, string, string][]) =>
    `<dl class="fields">${rows.map(([k, v, id]) => `<div><dt>${escapeHtml(k)}</dt><dd data-field="${id}">${v}</dd></div>`).join('')}</dl>`;
  const c = d.client;
  const client = c
    ? `${dl([
        ['Client', `<span class="mono">${escapeHtml(c.clientId)}</span>`, 'client-id'],
        [
          'Connections',
          c.peers.length
            ? c.peers.map((p) => `<span class="mono">${escapeHtml(p)}</span>`).join(', ')
            : '<span class="warn">none (the client is away)</span>',
          'peers',
        ],
        ['Served since', time(c.since), 'client-since'],
      ])}
      <table class="data" data-testid="computations"><thead><tr><th>Cluster</th><th>Computation</th><th class="num">CPU cap</th><th class="num">Running</th><th class="num">Waiting</th></tr></thead><tbody>
      ${c.computations.map((x) => `<tr><td>${escapeHtml(x.cluster)}${x.closing ? ' <span class="muted">(closing)</span>' : ''}</td><td class="mono">${escapeHtml(x.id)}</td><td class="num">${x.cap}</td><td class="num">${x.running}</td><td class="num">${x.queued}</td></tr>`).join('')}
      </tbody></table>`
    : '<p class="muted" data-testid="no-client">No client: the node is free.</p>';
  const now = Date.now();
  const running = d.jobs.filter((j) => j.state === 'running');
  const jobs = d.jobs.length
    ? `<table class="data" data-testid="node-jobs"><thead><tr><th class="num">Job</th><th>Cluster</th><th>State</th><th>Started</th><th class="num">Running for</th></tr></thead><tbody>
      ${[...d.jobs]
        .sort((x, y) => (x.startTime ?? Infinity) - (y.startTime ?? Infinity) || x.uid - y.uid)
        .map(
          (j) =>
            `<tr data-uid="${j.uid}"><td class="num mono">${j.uid}</td><td>${escapeHtml(j.cluster)}</td><td>${j.state === 'running' ? 'running' : 'waiting'}</td><td>${time(j.startTime)}</td><td class="num">${j.startTime ? escapeHtml(duration((now - j.startTime) / 1000)) : '—'}</td></tr>`,
        )
        .join('')}
      </tbody></table>`
    : '<p class="muted">No job here.</p>';
  return `<section class="stats" aria-label="Summary">${stats.map(([k, v, id]) => `<div class="stat"><span class="label">${escapeHtml(k)}</span><span class="value" data-testid="stat-${id}">${v}</span></div>`).join('')}</section>
<section class="card" aria-labelledby="res-h"><h2 id="res-h">CPUs and resources</h2>${dl(resources)}</section>
<section class="card" aria-labelledby="client-h"><h2 id="client-h">Client</h2>${client}</section>
<section class="card" aria-labelledby="jobs-h"><h2 id="jobs-h">Jobs <span class="muted" data-testid="jobs-running">(${running.length} running, ${d.jobs.length - running.length} waiting)</span></h2>${jobs}</section>`;
}

/** The whole page. `flash` is the outcome of the previous action, if any. */
export function renderPage(d: NodePageData, flash: { kind: 'ok' | 'error'; text: string } | null): string {
  const admin = d.role === 'admin';
  const controls = admin
    ? `<section class="card" aria-labelledby="admin-h" data-testid="admin-controls"><h2 id="admin-h">Manage this node</h2>
<form method="post" action="cpus" class="row">
<label for="cpus">CPUs to run jobs on</label>
<input id="cpus" name="cpus" type="number" min="1" max="${d.cpus}" step="1" value="${d.cpuLimit}" required data-testid="cpus-input">
<button type="submit" data-testid="set-cpus">Set CPUs</button>
<small>1 to ${d.cpus}. Lowering it lets running jobs finish and starts no more beyond it.</small>
</form>
<form method="post" action="drain" class="row">
<input type="hidden" name="drain" value="${d.draining ? 'off' : 'on'}">
<button type="submit" class="${d.draining ? '' : 'danger'}" data-testid="drain">${d.draining ? 'Resume serving jobs' : 'Drain: stop starting new jobs'}</button>
<small>${d.draining ? 'The node is draining: running jobs finish; no job starts and no new client is served until it resumes.' : 'Running jobs finish; jobs waiting here go back to their clients (to run on other nodes), none is sent here, and no new client is served until it resumes.'}</small>
</form>
</section>`
    : '<p class="muted" role="note" data-testid="viewer-note">You have the viewer token: changing CPUs and draining need the admin token.</p>';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="same-origin">
<title>dispyts node ${escapeHtml(d.name)} (${escapeHtml(d.host)})</title>
<link rel="stylesheet" href="node-page.css">
<script type="module" src="node-page.js"></script>
</head>
<body>
<header class="top"><span class="mark" aria-hidden="true"></span><strong>dispyts node</strong> <span data-testid="node-name">${escapeHtml(d.name)}</span> <span class="mono muted" data-testid="node-addr">${escapeHtml(d.host)}:${d.port}</span><span class="role role-${d.role}" data-testid="role">${d.role}</span></header>
<main>
${flash ? `<p class="flash flash-${flash.kind}" role="${flash.kind === 'error' ? 'alert' : 'status'}" data-testid="flash">${escapeHtml(flash.text)}</p>` : ''}
<div id="live" data-testid="live" aria-live="polite">
${renderLive(d)}
</div>
${controls}
<p class="muted small">JSON: <a href="status.json">status.json</a>. This page refreshes every few seconds.</p>
</main>
</body>
</html>
`;
}

export const NODE_PAGE_CSS = `:root{color-scheme:light dark;--bg:#f3f5f9;--surface:#fff;--fg:#111827;--muted:#5b6474;--border:#dfe4ec;--accent:#2563eb;--accent-fg:#fff;--ok:#15803d;--ok-soft:#e7f6ec;--err:#b91c1c;--err-soft:#fdecec;--warn:#b45309}
@media (prefers-color-scheme:dark){:root{--bg:#0c111b;--surface:#141b28;--fg:#e6e9ef;--muted:#9aa4b5;--border:#263247;--accent:#60a5fa;--accent-fg:#0c111b;--ok:#4ade80;--ok-soft:#12301f;--err:#f87171;--err-soft:#3a1717;--warn:#fbbf24}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-variant-numeric:tabular-nums}
.top{display:flex;flex-wrap:wrap;align-items:center;gap:8px 12px;padding:12px 16px;background:var(--surface);border-bottom:1px solid var(--border)}
.mark{width:18px;height:18px;border-radius:5px;background:var(--accent)}
.role{margin-left:auto;padding:1px 10px;border-radius:10px;border:1px solid var(--border);font-size:12px;color:var(--muted)}
.role-admin{color:var(--accent)}
main{max-width:1100px;margin:0 auto;padding:16px}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-bottom:12px}
.stat,.card{background:var(--surface);border:1px solid var(--border);border-radius:10px;padding:12px 14px}
.card{margin-bottom:12px}
.label{display:block;color:var(--muted);font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.value{font-size:20px;font-weight:700}
.of{color:var(--muted);font-weight:400;font-size:15px}
h2{font-size:16px;margin:0 0 10px}
.fields{display:grid;grid-template-columns:repeat(auto-fit,minmax(240px,1fr));gap:4px 16px;margin:0 0 10px}
.fields div{display:flex;justify-content:space-between;gap:10px;border-bottom:1px dashed var(--border);padding:3px 0}
dt{color:var(--muted)}dd{margin:0;text-align:right;overflow-wrap:anywhere}
table.data{width:100%;border-collapse:collapse}
table.data th,table.data td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--border)}
table.data th{font-size:12px;color:var(--muted)}
.num{text-align:right!important}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:var(--muted)}.small{font-size:12px}.warn{color:var(--warn)}
.state{font-weight:700}.st-busy{color:var(--accent)}.st-drain,.st-stop{color:var(--warn)}.st-idle{color:var(--muted)}
form.row{display:flex;flex-wrap:wrap;align-items:center;gap:8px 12px;margin:8px 0 14px}
form.row small{flex-basis:100%;color:var(--muted)}
input[type=number]{font:inherit;width:7em;min-height:40px;padding:6px 8px;border:1px solid var(--border);border-radius:8px;background:var(--bg);color:var(--fg)}
button{font:inherit;font-weight:600;min-height:40px;padding:0 14px;border:0;border-radius:8px;background:var(--accent);color:var(--accent-fg);cursor:pointer}
button.danger{background:var(--err);color:#fff}
:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.flash{padding:8px 12px;border-radius:8px;font-weight:600}.flash-ok{background:var(--ok-soft);color:var(--ok)}.flash-error{background:var(--err-soft);color:var(--err)}
@media (max-width:600px){.value{font-size:17px}table.data th:nth-child(4),table.data td:nth-child(4){display:none}}
`;

/** Refreshes `#live` from `?part=live` every few seconds (the server renders it, escaped). */
export const NODE_PAGE_JS = `const live = document.getElementById('live');
let failures = 0;
async function refresh() {
  try {
    const r = await fetch('./?part=live', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'text/html' } });
    if (r.status === 401 || r.status === 403) return;
    if (r.ok) {
      live.innerHTML = await r.text();
      failures = 0;
      live.removeAttribute('data-stale');
    } else failures++;
  } catch {
    failures++;
  }
  if (failures > 0) live.setAttribute('data-stale', String(failures));
  setTimeout(refresh, failures ? Math.min(10000, 2000 * failures) : 2000);
}
if (live) setTimeout(refresh, 2000);
`;
