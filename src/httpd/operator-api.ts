/**
 * The endpoints beyond dispy's API that operators asked for: the finished-job history
 * (`GET /job_history`), the event log (`GET /event_log`), who the browser is signed in as
 * (`GET /whoami`) and Prometheus metrics (`GET /metrics`). All reads; malformed queries are 400s.
 */
import type { Context } from 'hono';
import { DispyError } from '../errors.js';
import type { Identity } from './access.js';
import { jsonText, parseCursor, type ApiContext } from './api.js';
import type { EventLog } from './event-log.js';
import { MAX_PAGE, STATUS_FILTERS, type JobHistory } from './job-history.js';
import { METRICS_CONTENT_TYPE, renderMetrics, type ServerCounters } from './metrics.js';

export interface OperatorContext extends ApiContext {
  readonly history: JobHistory;
  readonly events: EventLog;
  readonly counters: ServerCounters;
  sseViewers(): number;
  /** Whether users sign in (the pages then offer sign-out). */
  readonly usersEnabled: boolean;
}

function bad(message: string): DispyError {
  return new DispyError('DISPY_ERR_BAD_REQUEST', message);
}

const NODE_RE = /^[A-Za-z0-9._:%[\]-]{1,255}$/;

function intParam(q: Record<string, string>, name: string, min: number, max: number): number | undefined {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,16}$/.test(v)) throw bad(`\`${name}\` must be an integer from ${min} to ${max}, got \`${v.slice(0, 40)}\``);
  const n = Number(v);
  if (n < min || n > max) throw bad(`\`${name}\` must be an integer from ${min} to ${max}, got ${n}`);
  return n;
}

/**
 * `GET /job_history?status=&node=&cluster=&before=&limit=`: finished jobs newest first,
 * `{ seq, capacity, size, matched, more, jobs }`; `?hid=N` answers one record `{ job }` (404 when
 * it is no longer kept).
 */
export function jobHistory(c: Context, ctx: OperatorContext): Response {
  const q = c.req.query();
  const h = ctx.history;
  const hid = intParam(q, 'hid', 1, Number.MAX_SAFE_INTEGER);
  if (hid !== undefined) {
    const job = h.get(hid);
    if (!job)
      throw new DispyError(
        'DISPY_ERR_NOT_FOUND',
        `job record ${hid} is not in the history (it keeps the latest ${h.capacity} finished jobs)`,
      );
    return jsonText(c, JSON.stringify({ job: ctx.settings.showJobArgs ? job : { ...job, args: '' } }));
  }
  const status = q.status || undefined;
  if (status !== undefined && !(STATUS_FILTERS as readonly string[]).includes(status))
    throw bad(`\`status\` must be one of ${STATUS_FILTERS.join(', ')}, got \`${status.slice(0, 40)}\``);
  const node = q.node || undefined;
  if (node !== undefined && !NODE_RE.test(node)) throw bad('`node` must be a node address or name');
  const cluster = q.cluster || undefined;
  if (cluster !== undefined && cluster.length > 256) throw bad('`cluster` is too long');
  const before = intParam(q, 'before', 1, Number.MAX_SAFE_INTEGER);
  const limit = intParam(q, 'limit', 1, MAX_PAGE);
  const r = h.query({ status, node, cluster, before, limit }, ctx.settings.showJobArgs);
  return jsonText(c, JSON.stringify({ seq: h.seq, capacity: h.capacity, size: h.size, matched: r.matched, more: r.more, jobs: r.jobs }));
}

/** `GET /event_log?since=N&limit=M`: `{ cursor, capacity, size, resync, entries }`, oldest first. */
export function eventLog(c: Context, ctx: OperatorContext): Response {
  const q = c.req.query();
  const since = q.since === undefined || q.since === '' ? 0 : parseCursor(q.since, 'since');
  const limit = intParam(q, 'limit', 1, ctx.events.capacity);
  const r = ctx.events.since(since, limit);
  return jsonText(
    c,
    JSON.stringify({ cursor: r.cursor, capacity: ctx.events.capacity, size: ctx.events.size, resync: r.resync, entries: r.entries }),
  );
}

/** `GET /whoami`: `{ user, role, via, can_act, login, session_expires_ms }`. */
export function whoami(c: Context, ctx: OperatorContext, who: Identity): Response {
  return jsonText(
    c,
    JSON.stringify({
      user: who.user,
      role: who.role,
      via: who.via,
      can_act: who.role === 'admin',
      login: ctx.usersEnabled,
      session_expires_ms: who.session?.exp ?? null,
    }),
  );
}

/** `GET /metrics`: the Prometheus text format. */
export function metrics(c: Context, ctx: OperatorContext): Response {
  const text = renderMetrics({
    registry: ctx.registry,
    counters: ctx.counters,
    sseViewers: ctx.sseViewers(),
    historySize: ctx.history.size,
    historyCapacity: ctx.history.capacity,
    eventLogSize: ctx.events.size,
  });
  return c.body(text, 200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Cache-Control': 'no-store' });
}
