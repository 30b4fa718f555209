/**
 * Events page (`events.html`): the server's event log, newest first: nodes joining, leaving,
 * lost and changing CPUs, the clusters followed, and every action, sign-in and sign-out with who
 * did it and how it ended. New entries arrive with the live stream while the page is open;
 * filters by kind and by text.
 */
import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getJson, replyError, serverPollSec } from '../lib/api.js';
import { formatDateTime, formatTime } from '../lib/format.js';
import { html } from '../lib/html.js';
import { LiveFeed } from '../lib/live.js';
import { ClusterStore } from '../lib/store.js';
import type { EventEntry, EventLogJson } from '../lib/types.js';
import { initialInterval, IntervalControl, Messages, OfflineBanner, TopBar } from '../components/common.js';
import { signal } from '@preact/signals';

/** Entries the page holds at most (the server's log may keep more). */
const MAX_SHOWN = 5000;

const entries = signal<EventEntry[]>([]);
const loaded = signal(false);
const loadError = signal('');

function take(b: EventLogJson): void {
  const list = b.resync
    ? b.entries
    : [...entries.value, ...b.entries.filter((e) => e.seq > (entries.value[entries.value.length - 1]?.seq ?? 0))];
  entries.value = list.length > MAX_SHOWN ? list.slice(-MAX_SHOWN) : list;
}

const store = new ClusterStore();
const feed = new LiveFeed({ store, intervalSec: initialInterval(serverPollSec()), onLog: take, logCursor: 0 });

const KINDS = [
  { value: '', label: 'All events' },
  { value: 'node', label: 'Nodes (joined, left, lost, CPUs)' },
  { value: 'action', label: 'Actions' },
  { value: 'login', label: 'Sign-ins and sign-outs' },
  { value: 'cluster', label: 'Clusters' },
];

const KIND_TEXT: Record<EventEntry['kind'], string> = {
  'node-arrived': 'node joined',
  'node-left': 'node left',
  'node-died': 'node lost',
  'node-cpus': 'CPUs',
  cluster: 'cluster',
  action: 'action',
  login: 'sign-in',
  logout: 'sign-out',
};

function matchesKind(e: EventEntry, kind: string): boolean {
  if (!kind) return true;
  if (kind === 'node') return e.kind.startsWith('node-');
  if (kind === 'login') return e.kind === 'login' || e.kind === 'logout';
  return e.kind === kind;
}

function EventsApp() {
  const [kind, setKind] = useState(new URLSearchParams(location.search).get('kind') ?? '');
  const [text, setText] = useState('');
  const all = entries.value;
  const shown = useMemo(() => {
    const t = text.trim().toLowerCase();
    const out: EventEntry[] = [];
    for (let i = all.length - 1; i >= 0; i--) {
      const e = all[i]!;
      if (matchesKind(e, kind) && (!t || e.text.toLowerCase().includes(t))) out.push(e);
    }
    return out;
  }, [all, kind, text]);
  useEffect(() => {
    const url = new URL(location.href);
    if (kind) url.searchParams.set('kind', kind);
    else url.searchParams.delete('kind');
    history.replaceState(null, '', url);
  }, [kind]);

  return html`<${TopBar} active="events" feed=${feed} />
    <main class="container" id="main">
      <div class="page-head"><h1>Event Log</h1><p class="subtitle" data-testid="event-count">${loaded.value ? `${shown.length} of ${all.length} events` : 'Loading…'}</p></div>
      <${OfflineBanner} feed=${feed} />
      <section class="card" aria-label="Filters">
        <div class="controls-row">
          <div class="field">
            <label for="f-kind">Show</label>
            <select id="f-kind" value=${kind} onChange=${(e: Event) => setKind((e.target as HTMLSelectElement).value)} data-testid="filter-kind">
              ${KINDS.map((k) => html`<option key=${k.value} value=${k.value}>${k.label}</option>`)}
            </select>
          </div>
          <div class="field">
            <label for="f-text">Containing</label>
            <input id="f-text" type="search" value=${text} placeholder="a node, a user, a cluster…" onInput=${(e: Event) => setText((e.target as HTMLInputElement).value)} data-testid="filter-text" />
          </div>
          <${IntervalControl} feed=${feed} />
        </div>
      </section>
      ${loadError.value ? html`<p class="banner banner-error" role="alert">${loadError.value}</p>` : null}
      <section class="card" aria-labelledby="log-h">
        <h2 id="log-h" class="card-title">Newest first</h2>
        <div class="scroll-x">
          <table class="data eventlog" data-testid="event-table" aria-describedby="log-h">
            <thead>
              <tr>
                <th scope="col" class="e-time">Time</th>
                <th scope="col" class="e-kind">Kind</th>
                <th scope="col" class="e-who">Who</th>
                <th scope="col" class="e-result">Result</th>
                <th scope="col">Event</th>
              </tr>
            </thead>
            <tbody>
              ${shown.length === 0 ? html`<tr><td colspan="5" class="muted">${loaded.value ? 'No event yet.' : 'Loading…'}</td></tr>` : null}
              ${shown.map(
                (e) => html`<tr key=${e.seq} data-seq=${e.seq} data-kind=${e.kind}>
                  <td class="e-time"><time title=${formatDateTime(e.time_ms)}>${formatTime(e.time_ms)}</time></td>
                  <td class="e-kind"><span class=${`ekind ekind-${e.kind}`}>${KIND_TEXT[e.kind] ?? e.kind}</span></td>
                  <td class="e-who">${e.user ? html`${e.user}${e.role ? html` <span class="muted">(${e.role})</span>` : null}` : html`<span class="muted">—</span>`}</td>
                  <td class="e-result">${e.result ? html`<span class=${`outcome outcome-${e.result === 'ok' ? 'ok' : 'err'}`}>${e.result}</span>` : null}</td>
                  <td class="wrap" data-testid="event-text">${e.text}</td>
                </tr>`,
              )}
            </tbody>
          </table>
        </div>
      </section>
      <${Messages} />
    </main>`;
}

render(html`<${EventsApp} />`, document.getElementById('app')!);

// The backlog first, then the live stream from its cursor.
void (async () => {
  const r = await getJson<EventLogJson>('event_log');
  if (r.ok && r.body && Array.isArray(r.body.entries)) {
    take({ ...r.body, resync: true });
    feed.setLogCursor(r.body.cursor);
  } else if (r.status !== 401) loadError.value = `Loading the event log failed: ${replyError(r)}; new events still appear.`;
  loaded.value = true;
  feed.start();
})();
