/**
 * `GET /events`: Server-Sent Events. Each viewer has its own cursor and interval; every interval
 * it gets one event with everything that changed since its cursor (coalesced: a node that
 * changed ten times is sent once, as it is now), so it converges to the current state and misses
 * no changed node. The event id is `<epoch>:<cursor>`, so a reconnecting EventSource resumes
 * with Last-Event-ID; a cursor that cannot be resumed gets a full snapshot (`resync: true`).
 * A viewer that asks for the event log (`log=` a cursor, or `now`) also gets each new log entry
 * at once, as a `log` event `{ cursor, resync, entries }`.
 */
import type { ServerResponse } from 'node:http';
import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import type { EventLog } from './event-log.js';
import type { ViewRegistry } from './view-registry.js';

/** Seconds between comments that keep idle connections (and proxies) open. */
const HEARTBEAT_SEC = 15;
/** Bounds of the interval a viewer may ask for (seconds). */
export const MIN_INTERVAL_SEC = 0.05;
export const MAX_INTERVAL_SEC = 3600;

interface Viewer {
  stream: SSEStreamingApi;
  cursor: number;
  epoch: string | null;
  timer: NodeJS.Timeout | null;
  intervalMs: number;
  writing: boolean;
  lastWrite: number;
  finish: () => void;
  closed: boolean;
  /** Resolves once the response is fully sent or its connection is gone. */
  sent: Promise<void>;
  /** The viewer's event-log cursor, or null when it does not follow the log. */
  logCursor: number | null;
  /** Log entries arrived while a write was in progress. */
  logPending: boolean;
}

/** Log entries one `log` event carries at most (a resync sends the newest). */
const MAX_LOG_BATCH = 500;

export class SseHub {
  readonly #registry: ViewRegistry;
  readonly #viewers = new Set<Viewer>();
  readonly #events: EventLog | null;
  #logFlush: NodeJS.Immediate | null = null;

  constructor(registry: ViewRegistry, events: EventLog | null = null) {
    this.#registry = registry;
    this.#events = events;
    // New entries go out together, once the current turn of the event loop is done.
    events?.subscribe(() => {
      this.#logFlush ??= setImmediate(() => {
        this.#logFlush = null;
        for (const v of this.#viewers) if (v.logCursor !== null) void this.#pushLog(v).catch(() => this.#drop(v));
      });
    });
  }

  /** Viewers connected now. */
  get size(): number {
    return this.#viewers.size;
  }

  /**
   * Starts a stream for a viewer at `since` (of `epoch`) that wants an event every `intervalSec`
   * and, with `log` (a cursor, or `now` for new entries only), the event log's new entries.
   */
  open(
    c: Context,
    since: number,
    epoch: string | null,
    intervalSec: number,
    outgoing?: ServerResponse,
    log: number | 'now' | null = null,
  ): Response {
    c.header('X-Accel-Buffering', 'no');
    const sent = outgoing
      ? new Promise<void>((r) => {
          if (outgoing.writableFinished || outgoing.destroyed) r();
          outgoing.once('finish', () => r());
          outgoing.once('close', () => r());
        })
      : Promise.resolve();
    return streamSSE(c, async (stream) => {
      let finish!: () => void;
      const done = new Promise<void>((r) => (finish = r));
      const logCursor = log === null || !this.#events ? null : log === 'now' ? this.#events.seq : log;
      const v: Viewer = {
        stream,
        cursor: since,
        epoch,
        timer: null,
        intervalMs: Math.round(intervalSec * 1000),
        writing: false,
        lastWrite: Date.now(),
        finish,
        closed: false,
        sent,
        logCursor,
        logPending: false,
      };
      this.#viewers.add(v);
      stream.onAbort(() => this.#drop(v));
      await this.#push(v, true);
      // The log's cursor (and any entries after the viewer's) right away.
      if (logCursor !== null) await this.#pushLog(v, true);
      if (!v.closed) {
        this.#schedule(v);
      }
      await done;
    });
  }

  #drop(v: Viewer): void {
    if (v.closed) return;
    v.closed = true;
    if (v.timer) clearTimeout(v.timer);
    this.#viewers.delete(v);
    v.finish();
  }

  /** The next tick one interval after this one ended: events are never closer than asked. */
  #schedule(v: Viewer): void {
    if (v.closed) return;
    v.timer = setTimeout(() => {
      v.timer = null;
      void this.#tick(v)
        .catch(() => this.#drop(v))
        .finally(() => this.#schedule(v));
    }, v.intervalMs);
    v.timer.unref();
  }

  async #tick(v: Viewer): Promise<void> {
    if (v.closed || v.writing) return;
    const sent = await this.#push(v, false);
    if (!sent && !v.closed && !v.writing && Date.now() - v.lastWrite >= HEARTBEAT_SEC * 1000) {
      v.writing = true;
      try {
        await v.stream.write(': keep-alive\n\n');
        v.lastWrite = Date.now();
      } finally {
        v.writing = false;
      }
      if (v.logPending) await this.#pushLog(v);
    }
  }

  /** Sends what changed since the viewer's cursor (always, when `force`); true if it sent. */
  async #push(v: Viewer, force: boolean): Promise<boolean> {
    // A slow viewer skips ticks instead of queueing events: its next event covers them.
    if (v.writing || v.closed) return false;
    const d = this.#registry.delta(v.cursor, v.epoch);
    if (!d.changed && !force) return false;
    v.writing = true;
    try {
      await v.stream.writeSSE({ data: d.json, id: this.#registry.log.token(d.cursor), ...(force ? { retry: 3000 } : {}) });
      v.cursor = d.cursor;
      v.epoch = this.#registry.log.epoch;
      v.lastWrite = Date.now();
    } finally {
      v.writing = false;
    }
    if (v.stream.aborted) this.#drop(v);
    if (v.logPending) await this.#pushLog(v);
    return true;
  }

  /** Sends the log entries after the viewer's log cursor (an empty batch too, when `force`). */
  async #pushLog(v: Viewer, force = false): Promise<void> {
    const events = this.#events;
    if (!events || v.closed || v.logCursor === null) return;
    if (v.writing) {
      v.logPending = true;
      return;
    }
    v.logPending = false;
    const r = events.since(v.logCursor, MAX_LOG_BATCH);
    if (r.entries.length === 0 && !force) return;
    v.writing = true;
    try {
      await v.stream.writeSSE({ event: 'log', data: JSON.stringify(r) });
      v.logCursor = r.cursor;
      v.lastWrite = Date.now();
    } finally {
      v.writing = false;
    }
    if (v.stream.aborted) this.#drop(v);
    else if (v.logPending) await this.#pushLog(v);
  }

  /** Sends each viewer its last changes and a `shutdown` event, then ends every stream. */
  async closeAll(): Promise<void> {
    const viewers = [...this.#viewers];
    const all = Promise.all(
      viewers.map(async (v) => {
        if (v.timer) clearTimeout(v.timer);
        v.timer = null;
        try {
          // Wait for a write in progress (bounded), then the final delta and the goodbye.
          for (let i = 0; v.writing && i < 50; i++) await new Promise((r) => setTimeout(r, 10));
          if (!v.writing) {
            await this.#push(v, false);
            await v.stream.writeSSE({ event: 'shutdown', data: '{}' });
          }
        } catch {
          // the viewer is gone already
        }
        this.#drop(v);
      }),
    );
    // A viewer that stopped reading must not hold the shutdown up.
    let timer: NodeJS.Timeout | undefined;
    const flushed = all.then(() => Promise.all(viewers.map((v) => v.sent)));
    await Promise.race([flushed, new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    for (const v of viewers) this.#drop(v);
  }
}
