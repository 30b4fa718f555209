/**
 * `GET /events`: Server-Sent Events. Each viewer has its own cursor and interval; every interval
 * it gets one event with everything that changed since its cursor (coalesced: a node that
 * changed ten times is sent once, as it is now), so it converges to the current state and misses
 * no changed node. The event id is `<epoch>:<cursor>`, so a reconnecting EventSource resumes
 * with Last-Event-ID; a cursor that cannot be resumed gets a full snapshot (`resync: true`).
 */
import type { ServerResponse } from 'node:http';
import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
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
}

export class SseHub {
  readonly #registry: ViewRegistry;
  readonly #viewers = new Set<Viewer>();

  constructor(registry: ViewRegistry) {
    this.#registry = registry;
  }

  /** Viewers connected now. */
  get size(): number {
    return this.#viewers.size;
  }

  /** Starts a stream for a viewer at `since` (of `epoch`) that wants an event every `intervalSec`. */
  open(c: Context, since: number, epoch: string | null, intervalSec: number, outgoing?: ServerResponse): Response {
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
      const v: Viewer = { stream, cursor: since, epoch, timer: null, intervalMs: Math.round(intervalSec * 1000), writing: false, lastWrite: Date.now(), finish, closed: false, sent };
      this.#viewers.add(v);
      stream.onAbort(() => this.#drop(v));
      await this.#push(v, true);
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
      await v.stream.write(': keep-alive\n\n');
      v.lastWrite = Date.now();
      v.writing = false;
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
    return true;
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
