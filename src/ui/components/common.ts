/**
 * Pieces every page has: the top bar (navigation, new event-log entries, who is signed in and
 * the connection's state), the banner shown
 * while the server is away, the "Update Interval Seconds" control with its "Update" button, the
 * messages list, the node-state badge and the cluster selector. Text from the cluster is only
 * ever passed as children or attributes (Preact sets it as text), never as markup.
 */
import { signal } from '@preact/signals';
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { postForm, replyError } from '../lib/api.js';
import { formatTime } from '../lib/format.js';
import { html } from '../lib/html.js';
import type { FeedMode, LiveFeed } from '../lib/live.js';
import { loadMe, me } from '../lib/session.js';
import { COMBINED, COMBINED_LABEL, type ClusterStore, type NodeState } from '../lib/store.js';
import type { EventEntry, EventLogJson } from '../lib/types.js';

// ---- messages ------------------------------------------------------------------------------

export type MessageKind = 'info' | 'ok' | 'error';
export interface Message {
  id: number;
  at: number;
  kind: MessageKind;
  text: string;
}

export const messages = signal<Message[]>([]);
let messageId = 0;
const MAX_MESSAGES = 8;

/** Adds a line to the page's messages (newest first). */
export function say(text: string, kind: MessageKind = 'info'): void {
  messages.value = [{ id: ++messageId, at: Date.now(), kind, text }, ...messages.value].slice(0, MAX_MESSAGES);
}

export function Messages() {
  const list = messages.value;
  return html`<section class="card messages" aria-labelledby="messages-h">
    <h2 id="messages-h" class="card-title">Messages</h2>
    <ul role="log" aria-live="polite" class="message-list">
      ${list.length === 0 ? html`<li class="muted">No messages yet.</li>` : null}
      ${list.map((m) => html`<li key=${m.id} class=${`msg msg-${m.kind}`}><time>${formatTime(m.at)}</time> <span>${m.text}</span></li>`)}
    </ul>
  </section>`;
}

// ---- top bar -------------------------------------------------------------------------------

const PAGES = [
  { id: 'monitor', href: 'monitor.html', label: 'Monitor' },
  { id: 'node', href: 'node.html', label: 'Node' },
  { id: 'manage', href: 'manage.html', label: 'Manage' },
  { id: 'jobs', href: 'jobs.html', label: 'Jobs' },
  { id: 'events', href: 'events.html', label: 'Events' },
] as const;

export type PageId = (typeof PAGES)[number]['id'];

/** Event-log entries that arrived since the page was loaded (the Events link counts them). */
export const unseenEvents = signal(0);
export const latestEvent = signal<EventEntry | null>(null);

/** A LiveFeed's `onLog` for pages other than Events: counts new entries for the top bar. */
export function noteLog(b: EventLogJson): void {
  if (b.entries.length === 0) return;
  unseenEvents.value += b.entries.length;
  latestEvent.value = b.entries[b.entries.length - 1]!;
}

/** Says why a viewer sees no controls (nothing for admins, or before the server answered). */
export function ViewerNote({ what }: { what: string }) {
  const m = me.value;
  if (!m || m.can_act) return null;
  return html`<p class="help viewer-note" role="note" data-testid="viewer-note">You are signed in as a viewer: ${what} need an admin.</p>`;
}

/**
 * Signs out with a fetch (its Origin stays ours: under the server's no-referrer policy a plain
 * form would send `Origin: null`, which the server refuses), then shows the login form.
 */
async function signOut(e: Event): Promise<void> {
  e.preventDefault();
  const r = await postForm('logout', []);
  if (r.ok) location.assign('login?signed_out=1');
  else say(`Signing out failed: ${replyError(r)}`, 'error');
}

/** Who is signed in, and the sign-out button when users sign in with a session. */
function WhoAmI() {
  useEffect(() => void loadMe(), []);
  const m = me.value;
  if (!m) return null;
  const named = m.via === 'session' || m.via === 'basic';
  return html`<span class="who" data-testid="whoami" data-role=${m.role}>
    ${named ? html`<span class="who-name">${m.user}</span>` : null}
    <span class=${`role-tag role-${m.role}`} title=${m.role === 'viewer' ? 'Viewers watch the cluster; actions need an admin' : 'Admins watch and act'}>${m.role}</span>
    ${
      m.via === 'session'
        ? html`<form method="post" action="logout" class="signout" onSubmit=${signOut}><button type="submit" class="btn btn-small" data-testid="sign-out">Sign out</button></form>`
        : null
    }
  </span>`;
}

const MODE_TEXT: Record<FeedMode, string> = {
  connecting: 'Connecting…',
  stream: 'Live',
  poll: 'Live (polling)',
  manual: 'Timed updates off',
  paused: 'Paused (tab hidden)',
  offline: 'Server unreachable',
};

export function TopBar({ active, feed }: { active: PageId; feed: LiveFeed }) {
  const mode = feed.mode.value;
  const unseen = active === 'events' ? 0 : unseenEvents.value;
  const latest = latestEvent.value;
  return html`<header class="topbar">
    <a class="brand" href="monitor.html"><span class="brand-mark" aria-hidden="true"></span><span class="brand-text">dispyts</span></a>
    <nav aria-label="Pages" class="nav">
      ${PAGES.map(
        (
          p,
        ) => html`<a key=${p.id} href=${p.href} class=${p.id === active ? 'nav-link active' : 'nav-link'} aria-current=${p.id === active ? 'page' : undefined}
          title=${p.id === 'events' && unseen && latest ? `Latest: ${latest.text}` : undefined}>${p.label}${
            p.id === 'events' && unseen
              ? html`<span class="badge" data-testid="events-badge" aria-label=${`${unseen} new`}>${unseen > 99 ? '99+' : unseen}</span>`
              : null
          }</a>`,
      )}
    </nav>
    <span class=${`conn conn-${mode}`} role="status" aria-live="polite" data-testid="conn"><span class="conn-dot" aria-hidden="true"></span>${MODE_TEXT[mode]}</span>
    <${WhoAmI} />
  </header>`;
}

/** Ticks every second while mounted (for "since …" texts). */
function useNow(active: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [active]);
  return now;
}

export function OfflineBanner({ feed }: { feed: LiveFeed }) {
  const since = feed.offlineSince.value;
  const now = useNow(since > 0);
  if (!since) return null;
  const secs = Math.max(0, Math.round((now - since) / 1000));
  return html`<div class="banner banner-error" role="alert" data-testid="offline">
    <strong>The server is not answering</strong> (since ${formatTime(since)}, ${secs} s). The page keeps retrying and
    catches up as soon as it is back.
    <button type="button" class="btn btn-small" onClick=${() => void feed.refresh()}>Retry now</button>
  </div>`;
}

// ---- update interval -----------------------------------------------------------------------

const INTERVAL_KEY = 'dispyts.intervalSec';

/** The interval a page starts with: the one chosen earlier in this tab, else the server's. */
export function initialInterval(serverPollSec: number): number {
  try {
    const v = sessionStorage.getItem(INTERVAL_KEY);
    if (v !== null && v !== '' && Number.isFinite(Number(v))) return Number(v);
  } catch {
    // storage disabled
  }
  return serverPollSec;
}

export function IntervalControl({ feed, onUpdate, children }: { feed: LiveFeed; onUpdate?: () => void; children?: ComponentChildren }) {
  const sec = feed.intervalSec.value;
  const [text, setText] = useState(String(sec));
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  useEffect(() => setText(String(sec)), [sec]);
  const apply = () => {
    const v = Number(text.trim());
    if (text.trim() === '' || !Number.isFinite(v)) {
      setError('Enter a number of seconds (0 or less turns timed updates off).');
      return;
    }
    setError('');
    try {
      sessionStorage.setItem(INTERVAL_KEY, String(v));
    } catch {
      // storage disabled
    }
    if (v !== feed.intervalSec.value) {
      feed.setIntervalSec(v);
      say(v > 0 ? `Updates every ${v} s.` : 'Timed updates are off; use Update to refresh.', 'info');
    }
  };
  const update = async () => {
    apply();
    setBusy(true);
    const ok = await feed.refresh();
    onUpdate?.();
    setBusy(false);
    if (!ok) say('Update failed: the server did not answer.', 'error');
  };
  const last = feed.lastUpdate.value;
  return html`<form class="controls" onSubmit=${(e: Event) => {
    e.preventDefault();
    void update();
  }}>
    <div class="field">
      <label for="interval">Update Interval Seconds</label>
      <input id="interval" name="interval" type="number" step="any" inputmode="decimal" value=${text}
        aria-describedby="interval-help" aria-invalid=${error ? 'true' : undefined}
        onInput=${(e: Event) => setText((e.target as HTMLInputElement).value)}
        onChange=${apply} />
      <small id="interval-help" class=${error ? 'help help-error' : 'help'}>${error || (sec > 0 ? `Every ${sec} s` : 'Timed updates off')}</small>
    </div>
    ${children}
    <div class="field field-button">
      <button type="submit" class="btn btn-primary" disabled=${busy} data-testid="update">Update</button>
      <small class="help" data-testid="last-update">${last ? `Updated ${formatTime(last)}` : 'Not updated yet'}</small>
    </div>
  </form>`;
}

// ---- small pieces --------------------------------------------------------------------------

export const STATE_TEXT: Record<NodeState, string> = {
  idle: 'idle',
  busy: 'busy',
  full: 'full',
  closed: 'closed',
  unreachable: 'unreachable',
};

export function StateBadge({ state }: { state: NodeState }) {
  return html`<span class=${`state state-${state}`}><span class="state-dot" aria-hidden="true"></span>${STATE_TEXT[state]}</span>`;
}

export function clusterLabel(key: string): string {
  return key === COMBINED ? COMBINED_LABEL : key;
}

export function ClusterSelect({
  store,
  value,
  onChange,
  id = 'cluster',
  label = 'Cluster',
  extra,
}: {
  store: ClusterStore;
  value: string;
  onChange: (v: string) => void;
  id?: string;
  label?: string;
  extra?: Array<{ value: string; label: string }>;
}) {
  void store.version.value;
  const keys = store.viewKeys();
  const options = [...(extra ?? []), ...keys.map((k) => ({ value: k, label: clusterLabel(k) }))];
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} value=${value} onChange=${(e: Event) => onChange((e.target as HTMLSelectElement).value)} disabled=${options.length === 0}>
      ${options.length === 0 ? html`<option value="">(no cluster)</option>` : null}
      ${options.map((o) => html`<option key=${o.value} value=${o.value}>${o.label}</option>`)}
    </select>
  </div>`;
}

/** Picks a view key that exists: the wanted one, else `* Combined` / the only cluster. */
export function pickView(store: ClusterStore, wanted: string): string {
  const keys = store.viewKeys();
  if (keys.includes(wanted)) return wanted;
  return keys[0] ?? '';
}

/** The value a form's `cluster` field gets for a view: `*` (all) for the combined view. */
export function clusterField(key: string): string {
  return key === COMBINED ? '*' : key;
}
