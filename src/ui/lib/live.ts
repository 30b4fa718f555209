/**
 * Keeps a ClusterStore current. With a positive interval it follows the server's SSE stream
 * (`GET /events`, coalesced deltas at that interval); when streaming fails while the server
 * answers, it polls `GET /cluster_updates?since=` at the interval instead. An interval of 0 or
 * less stops timed updates; `refresh()` (the "Update" button) fetches at once in every mode.
 * The stream is closed while the tab is hidden (browsers allow six connections per origin) and
 * caught up when it is shown. When the server goes away the feed says so and keeps retrying; a
 * restarted server has a new epoch, so the first answer replaces the page's state (resync).
 * With `onLog`, the feed also follows the server's event log: new entries come with the stream
 * (`log` events) or, while polling, from `GET /event_log?since=`.
 */
import { signal } from '@preact/signals';
import { getJson } from './api.js';
import { asUpdates, type ApplyResult, type ClusterStore } from './store.js';
import type { EventLogJson, UpdatesJson } from './types.js';

/** A User Timing measure from `start` to now, for DevTools (none where the options form is missing). */
function measure(name: string, start: number): void {
  try {
    // Only the latest of each is kept: a page left open for days must not accumulate them.
    performance.clearMeasures(name);
    performance.measure(name, { start });
  } catch {
    // not supported
  }
}

export type FeedMode = 'connecting' | 'stream' | 'poll' | 'manual' | 'paused' | 'offline';

/** Stream failures (with the server answering) before falling back to polling. */
const STREAM_FAILURES_BEFORE_POLLING = 3;
/** Intervals the server's stream accepts (seconds). */
const MIN_STREAM_SEC = 0.05;
const MAX_STREAM_SEC = 3600;
/** Retry delays while the server is away, ms. */
const RETRY_MS = [500, 1000, 2000, 3000, 5000];

export interface LiveFeedOptions {
  store: ClusterStore;
  intervalSec: number;
  /** Called after each applied message. */
  onApplied?: (r: ApplyResult) => void;
  /** Called with new event-log entries (the first call may have none: it brings the cursor). */
  onLog?: (batch: EventLogJson) => void;
  /** The event-log cursor to follow from; `now` for new entries only. @default 'now' */
  logCursor?: number | 'now';
}

function asLog(body: unknown): EventLogJson | null {
  const b = body as EventLogJson | null;
  return b && typeof b === 'object' && typeof b.cursor === 'number' && Array.isArray(b.entries) ? b : null;
}

export class LiveFeed {
  readonly store: ClusterStore;
  readonly mode = signal<FeedMode>('connecting');
  readonly intervalSec = signal(10);
  /** ms of the last message applied (0: none yet). */
  readonly lastUpdate = signal(0);
  /** ms since which the server has not answered (0: it answers). */
  readonly offlineSince = signal(0);
  /** Whether updates come by polling because the stream failed. */
  readonly polling = signal(false);
  readonly #onApplied: ((r: ApplyResult) => void) | undefined;
  readonly #onLog: ((batch: EventLogJson) => void) | undefined;
  #logCursor: number | 'now';
  #cursor = 0;
  #epoch: string | null = null;
  #es: EventSource | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #inflight: Promise<boolean> | null = null;
  #streamFailures = 0;
  #retry = 0;
  #started = false;
  /** Bumped whenever the schedule is reset, so stale callbacks do nothing. */
  #gen = 0;

  constructor(opts: LiveFeedOptions) {
    this.store = opts.store;
    this.intervalSec.value = opts.intervalSec;
    this.#onApplied = opts.onApplied;
    this.#onLog = opts.onLog;
    this.#logCursor = opts.logCursor ?? 'now';
  }

  /** Starts following the event log from `cursor` (before start()). */
  setLogCursor(cursor: number): void {
    this.#logCursor = cursor;
  }

  get cursor(): number {
    return this.#cursor;
  }

  get epoch(): string | null {
    return this.#epoch;
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.#pause();
      else this.#kick();
    });
    // Back/forward cache: a restored page catches up at once.
    window.addEventListener('pageshow', (e) => {
      if ((e as PageTransitionEvent).persisted) this.#kick();
    });
    this.#kick();
  }

  /** Fetches what changed at once (the "Update" button); resumes the schedule. */
  async refresh(): Promise<boolean> {
    const gen = ++this.#gen;
    this.#stop();
    const ok = await this.#fetch();
    if (gen !== this.#gen) return ok;
    if (ok) this.#schedule();
    else this.#offline();
    return ok;
  }

  /** Changes the update interval (seconds; 0 or less: no timed updates). */
  setIntervalSec(sec: number): void {
    if (!Number.isFinite(sec)) return;
    this.intervalSec.value = sec;
    if (!this.#started || this.mode.value === 'offline' || document.visibilityState === 'hidden') return;
    this.#gen++;
    this.#stop();
    this.#schedule();
  }

  /** Stops everything (tests, page unload). */
  close(): void {
    this.#gen++;
    this.#stop();
    this.#started = false;
  }

  #stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#es) {
      this.#es.onmessage = null;
      this.#es.onerror = null;
      this.#es.onopen = null;
      this.#es.close();
      this.#es = null;
    }
  }

  #pause(): void {
    this.#gen++;
    this.#stop();
    if (this.mode.value !== 'offline') this.mode.value = 'paused';
  }

  #kick(): void {
    if (document.visibilityState === 'hidden') {
      this.#pause();
      return;
    }
    void this.refresh();
  }

  #schedule(): void {
    const gen = this.#gen;
    if (document.visibilityState === 'hidden') {
      this.mode.value = 'paused';
      return;
    }
    const sec = this.intervalSec.value;
    if (!(sec > 0)) {
      this.mode.value = 'manual';
      return;
    }
    if (!this.polling.value && typeof EventSource === 'function') {
      this.#openStream(sec, gen);
      return;
    }
    this.mode.value = 'poll';
    this.#timer = setTimeout(() => {
      if (gen !== this.#gen) return;
      void this.#fetch().then((ok) => {
        if (gen !== this.#gen) return;
        if (ok) this.#schedule();
        else this.#offline();
      });
    }, sec * 1000);
  }

  #openStream(sec: number, gen: number): void {
    const q = new URLSearchParams({
      interval: String(Math.min(MAX_STREAM_SEC, Math.max(MIN_STREAM_SEC, sec))),
      since: String(this.#cursor),
    });
    if (this.#epoch) q.set('epoch', this.#epoch);
    if (this.#onLog) q.set('log', String(this.#logCursor));
    const es = new EventSource(`events?${q}`);
    es.addEventListener('log', (ev) => {
      if (gen !== this.#gen) return;
      let body: unknown;
      try {
        body = JSON.parse((ev as MessageEvent<string>).data);
      } catch {
        return;
      }
      const b = asLog(body);
      if (b) this.#applyLog(b);
    });
    this.#es = es;
    if (this.mode.value !== 'stream') this.mode.value = 'connecting';
    es.onopen = () => {
      if (gen === this.#gen) this.mode.value = 'stream';
    };
    es.onmessage = (ev: MessageEvent<string>) => {
      if (gen !== this.#gen) return;
      let body: unknown;
      try {
        body = JSON.parse(ev.data);
      } catch {
        return;
      }
      const u = asUpdates(body);
      if (!u) return;
      this.#streamFailures = 0;
      this.mode.value = 'stream';
      this.#apply(u);
    };
    // The server says goodbye before it shuts down: find out at once whether it is gone.
    es.addEventListener('shutdown', () => {
      if (gen !== this.#gen) return;
      this.#stop();
      void this.#fetch().then((ok) => {
        if (gen !== this.#gen) return;
        if (ok) this.#schedule();
        else this.#offline();
      });
    });
    es.onerror = () => {
      if (gen !== this.#gen) return;
      // Take over from EventSource's own reconnection: find out whether the server is there.
      this.#stop();
      void this.#fetch().then((ok) => {
        if (gen !== this.#gen) return;
        if (!ok) {
          this.#offline();
          return;
        }
        if (++this.#streamFailures >= STREAM_FAILURES_BEFORE_POLLING) this.polling.value = true;
        this.#timer = setTimeout(
          () => {
            if (gen === this.#gen) this.#schedule();
          },
          Math.min(2000, Math.max(250, sec * 1000)),
        );
      });
    };
  }

  #offline(): void {
    const gen = ++this.#gen;
    this.#stop();
    this.mode.value = 'offline';
    if (!this.offlineSince.value) this.offlineSince.value = Date.now();
    const delay = RETRY_MS[Math.min(this.#retry++, RETRY_MS.length - 1)]!;
    this.#timer = setTimeout(() => {
      if (gen !== this.#gen) return;
      if (document.visibilityState === 'hidden') {
        // Keep retrying slowly while hidden: the page shows the outage when it is looked at.
        this.#offline();
        return;
      }
      void this.#fetch().then((ok) => {
        if (gen !== this.#gen) return;
        if (ok) this.#schedule();
        else this.#offline();
      });
    }, delay);
  }

  /** One `GET /cluster_updates?since=`; true when the server answered with updates. */
  #fetch(): Promise<boolean> {
    if (this.#inflight !== null) return this.#inflight;
    const q = new URLSearchParams({ since: String(this.#cursor) });
    if (this.#epoch) q.set('epoch', this.#epoch);
    const p = getJson<unknown>(`cluster_updates?${q}`).then(async (r) => {
      const u = r.ok ? asUpdates(r.body) : null;
      if (!u) return false;
      this.#apply(u);
      // Without the stream, the event log's new entries are fetched with each update.
      if (this.#onLog && !this.#es) await this.#fetchLog();
      return true;
    });
    this.#inflight = p;
    void p.finally(() => {
      if (this.#inflight === p) this.#inflight = null;
    });
    return p;
  }

  async #fetchLog(): Promise<void> {
    const q = this.#logCursor === 'now' ? 'limit=1' : `since=${this.#logCursor}`;
    const r = await getJson<unknown>(`event_log?${q}`);
    const b = r.ok ? asLog(r.body) : null;
    if (!b) return;
    // Following from now: only the cursor of the first answer counts.
    this.#applyLog(this.#logCursor === 'now' ? { ...b, entries: [] } : b);
  }

  #applyLog(b: EventLogJson): void {
    if (typeof this.#logCursor === 'number' && b.cursor < this.#logCursor && !b.resync) return;
    this.#logCursor = b.cursor;
    this.#onLog?.(b);
  }

  #apply(u: UpdatesJson): void {
    this.offlineSince.value = 0;
    this.#retry = 0;
    const full = u.resync || u.epoch !== this.#epoch;
    const cursor = typeof u.cursor === 'number' ? u.cursor : Number(u.cursor);
    // A message older than what the page has (a poll crossing the stream) would roll nodes back.
    if (!full && Number.isFinite(cursor) && cursor < this.#cursor) {
      this.lastUpdate.value = Date.now();
      return;
    }
    const t0 = performance.now();
    const r = this.store.apply(u, full);
    // User Timing for DevTools and the benchmark: the apply, then the render it caused (Preact
    // renders in a microtask queued during the apply).
    measure('dispyts:apply', t0);
    queueMicrotask(() => queueMicrotask(() => measure('dispyts:apply+render', t0)));
    this.#epoch = u.epoch;
    if (Number.isFinite(cursor)) this.#cursor = cursor;
    this.lastUpdate.value = Date.now();
    this.#onApplied?.(r);
  }
}
