/**
 * The server's hono application: the checks every request passes (Host, who it comes from,
 * same-origin for mutations, bounded bodies, security headers), then dispy's API, the operator
 * endpoints (`/job_history`, `/event_log`, `/whoami`, `/metrics`), sign-in and sign-out,
 * `/events`, `/healthz` and the document root. Actions need the admin role and are audited.
 * Errors become JSON without stack traces.
 */
import type { ServerResponse } from 'node:http';
import { Hono, type Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { DispyError } from '../errors.js';
import type { Access, Identity } from './access.js';
import * as api from './api.js';
import { summarize, type ActionName, type Audit } from './audit.js';
import { ChangeLog } from './change-log.js';
import { readForm, type FormFields } from './form.js';
import { LOGIN_CSS, loginPage, safeNext } from './login-page.js';
import * as ops from './operator-api.js';
import {
  CAP_RETRY_AFTER_SEC,
  cookie,
  mutationAllowed,
  SECURITY_HEADERS,
  type HostPolicy,
  type ProxyPolicy,
  type RequestSource,
  type StreamCaps,
} from '../protocol/http-guard.js';
import { refused, STRICT_CSP } from './security.js';
import { MAX_INTERVAL_SEC, MIN_INTERVAL_SEC, type SseHub } from './sse.js';
import type { StaticFiles } from './static-files.js';

/** What the routes need of the server, beyond the API's context. */
export interface RouteContext extends ops.OperatorContext {
  readonly access: Access;
  readonly audit: Audit;
  readonly hosts: HostPolicy;
  /** The trusted proxy, if any: where each request comes from. */
  readonly proxy: ProxyPolicy;
  /** Caps on `/events` streams. */
  readonly streams: StreamCaps;
  readonly sse: SseHub;
  readonly files: StaticFiles;
  readonly maxBody: number;
  /** Whether `/metrics` answers without credentials. */
  readonly metricsPublic: boolean;
  tokenCookie(): string;
  sessionCookie(): string;
}

type Env = { Bindings: HttpBindings; Variables: { tokenValid: boolean; who: Identity | null; source: RequestSource } };

const API_GET = new Set([
  '/cluster_status',
  '/cluster_updates',
  '/nodes',
  '/events',
  '/healthz',
  '/job_history',
  '/event_log',
  '/whoami',
  '/metrics',
]);
/** Routes named in the request metrics (anything else counts as `static` or `other`). */
const ROUTES = new Set([
  ...API_GET,
  '/node_info',
  '/cancel_jobs',
  '/add_node',
  '/allocate_node',
  '/deallocate_node',
  '/close_node',
  '/update',
  '/set_cpus',
  '/login',
  '/login.css',
  '/logout',
]);

function routeLabel(method: string, path: string): string {
  if (ROUTES.has(path)) return path;
  return method === 'GET' || method === 'HEAD' ? 'static' : 'other';
}

/** Whether a request may go without credentials. */
function isPublic(path: string, ctx: RouteContext): boolean {
  return (
    path === '/healthz' || path === '/login' || path === '/login.css' || path === '/logout' || (path === '/metrics' && ctx.metricsPublic)
  );
}

/** Whether the browser is loading a page (sent to the login form when signed out). */
function isPageLoad(c: Context, path: string): boolean {
  if (c.req.method !== 'GET') return false;
  const mode = c.req.header('sec-fetch-mode');
  if (mode) return mode === 'navigate';
  return (path === '/' || path.endsWith('.html')) && (c.req.header('accept') ?? '').includes('text/html');
}

function wantsHtml(c: Context): boolean {
  return (c.req.header('accept') ?? '').includes('text/html');
}

/** The client a request comes from (the trusted proxy's client, else the socket's peer). */
function peerOf(c: Context<Env>): string {
  return c.get('source').client;
}

/** Builds the application for one server. */
export function createApp(ctx: RouteContext): Hono<Env> {
  const app = new Hono<Env>();
  const scheme = ctx.secure ? 'https' : 'http';
  const users = ctx.access.users;

  app.use('*', async (c, next) => {
    // Set before the response exists: touching `c.res.headers` afterwards would make
    // @hono/node-server build a full Response and stream the body (several times slower).
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
    c.header('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
    await next();
    ctx.counters.request(c.req.method, routeLabel(c.req.method, c.req.path), c.res.status);
  });

  app.use('*', async (c, next) => {
    const incoming = c.env.incoming;
    // DNS-rebinding guard: the Host header (and an absolute request target) must name us.
    const hostHeader = incoming.headers.host;
    if (!ctx.hosts.allows(hostHeader)) {
      throw refused('DISPY_ERR_FORBIDDEN', 'Host header does not name this server; add the name to `allowedHosts`');
    }
    if (/^https?:\/\//i.test(incoming.url ?? '') && !ctx.hosts.allows(new URL(c.req.url).host)) {
      throw refused('DISPY_ERR_FORBIDDEN', 'request target does not name this server');
    }
    // A request a proxy forwarded is never a local user's, whatever its socket's peer.
    const source = ctx.proxy.source(incoming.socket?.remoteAddress, c.req.raw.headers, scheme);
    c.set('source', source);
    const peer = source.client;
    const url = new URL(c.req.url);
    const path = url.pathname;
    const v = await ctx.access.identify(c.req.raw.headers, url, peer, source.loopback, {
      token: ctx.tokenCookie(),
      session: ctx.sessionCookie(),
    });
    if (v.basicUser !== undefined) {
      const result = v.who ? 'ok' : v.failure?.kind === 'limited' ? 'limited' : 'failed';
      ctx.audit.login(shownName(ctx, v.basicUser), v.who?.role ?? null, peer, result, 'basic');
    }
    c.set('who', v.who);
    // Credentials in a header (token, Basic) cannot come from another site's page.
    c.set('tokenValid', v.tokenValid || v.who?.via === 'basic');
    if (!v.who && !isPublic(path, ctx)) {
      if (v.failure?.kind === 'limited') {
        c.header('Retry-After', String(v.failure.retryAfter));
        throw new DispyError('DISPY_ERR_TOO_MANY_REQUESTS', v.failure.message);
      }
      if (users) {
        if (isPageLoad(c, path)) {
          const next = path + url.search;
          const q = new URLSearchParams({ next });
          if (v.failure?.kind === 'session') q.set('expired', '1');
          return c.redirect(`/login?${q}`, 302);
        }
        // Scripts (no Fetch Metadata) are told they may use Basic; pages are told where to sign in.
        if (!c.req.header('sec-fetch-mode')) c.header('WWW-Authenticate', 'Basic realm="dispyts", charset="UTF-8"');
        c.header('X-Dispyts-Login', 'login');
        throw refused(
          'DISPY_ERR_UNAUTHORIZED',
          v.failure ? v.failure.message : 'sign in first: open /login, or send HTTP Basic credentials',
        );
      }
      throw refused(
        'DISPY_ERR_UNAUTHORIZED',
        v.token ? 'invalid token' : 'a token is required: open the login URL the server logged, or send `Authorization: Bearer <token>`',
      );
    }
    const method = c.req.method;
    if (method !== 'GET' && method !== 'HEAD') {
      const verdict = mutationAllowed(c.req.raw.headers, source.origin, c.get('tokenValid'), source.loopback);
      if (!verdict.ok) throw refused('DISPY_ERR_FORBIDDEN', verdict.reason);
    }
    if (v.fromQuery && v.tokenValid) {
      // The login URL: the token moves into a cookie and out of the address bar.
      const cookieValue = cookie(ctx.tokenCookie(), v.token!, source.secure);
      if (method === 'GET' && !API_GET.has(path)) {
        url.searchParams.delete('token');
        // One leading slash: `//host/x` would send the browser elsewhere.
        const location = `/${path.replace(/^\/+/, '')}${url.search}`;
        return new Response(null, { status: 302, headers: { Location: location, 'Set-Cookie': cookieValue, 'Cache-Control': 'no-store' } });
      }
      await next();
      c.res.headers.append('Set-Cookie', cookieValue);
      return;
    }
    await next();
  });

  app.get('/cluster_status', (c) => api.clusterStatus(c, ctx));
  app.get('/cluster_updates', (c) => api.clusterUpdates(c, ctx));
  app.get('/nodes', (c) => api.nodes(c, ctx));
  app.get('/healthz', (c) => api.healthz(c, ctx));
  app.get('/events', (c) => events(c, ctx));
  app.get('/job_history', (c) => ops.jobHistory(c, ctx));
  app.get('/event_log', (c) => ops.eventLog(c, ctx));
  app.get('/metrics', (c) => ops.metrics(c, ctx));
  app.get('/whoami', (c) => ops.whoami(c, ctx, c.get('who')!));

  // Reads that are POSTs in dispy's API: any role.
  app.post('/node_info', async (c) => api.nodeInfo(c, ctx, await readForm(c.req.raw, ctx.maxBody)));

  const action = (name: ActionName, handler: (c: Context, form: FormFields) => Response | Promise<Response>): void => {
    app.post(`/${name}`, async (c) => {
      const who = c.get('who')!;
      const peer = peerOf(c);
      if (who.role !== 'admin') {
        ctx.audit.refused(who, peer, name);
        throw new DispyError(
          'DISPY_ERR_ROLE',
          `${who.user} is a ${who.role}: viewers watch the cluster but cannot act on it (${name} needs an admin)`,
        );
      }
      const form = await readForm(c.req.raw, ctx.maxBody);
      let res: Response;
      try {
        res = await handler(c, form);
      } catch (err) {
        if (err instanceof DispyError)
          ctx.audit.action(who, peer, name, summarize(name, form, err.statusCode, JSON.stringify({ error: err.toJSON() })));
        throw err;
      }
      // Answers are small JSON documents: read a copy for the audit trail.
      const body = await res.clone().text();
      ctx.audit.action(who, peer, name, summarize(name, form, res.status, body));
      return res;
    });
  };
  action('cancel_jobs', (c, f) => api.cancelJobs(c, ctx, f));
  action('add_node', (c, f) => api.addNode(c, ctx, f));
  action('allocate_node', (c, f) => api.nodeAction(c, ctx, f, 'allocate'));
  action('deallocate_node', (c, f) => api.nodeAction(c, ctx, f, 'deallocate'));
  action('close_node', (c, f) => api.nodeAction(c, ctx, f, 'close'));
  action('update', (c, f) => api.update(c, ctx, f));
  action('set_cpus', (c, f) => api.setCpus(c, ctx, f));

  app.get('/login.css', (c) =>
    c.body(LOGIN_CSS, 200, { 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'private, max-age=3600' }),
  );
  app.get('/login', (c) => {
    if (!users) throw new DispyError('DISPY_ERR_NOT_FOUND', 'this server has no users to sign in: it uses a token (or nothing) instead');
    const q = c.req.query();
    const next = safeNext(q.next);
    const who = c.get('who');
    if (who?.via === 'session') return c.redirect(next, 302);
    const info = q.signed_out ? 'You are signed out.' : q.expired ? 'Your session has ended: sign in again.' : null;
    return loginHtml(c, 200, { next, info });
  });
  app.post('/login', async (c) => {
    if (!users || !ctx.access.sessions)
      throw new DispyError('DISPY_ERR_NOT_FOUND', 'this server has no users to sign in: it uses a token (or nothing) instead');
    const form = await readForm(c.req.raw, ctx.maxBody);
    const name = (form.get('user') ?? '').trim();
    const password = form.get('password') ?? '';
    const next = safeNext(form.get('next'));
    const html = wantsHtml(c);
    const fail = (err: DispyError, retryAfter?: number): Response => {
      if (retryAfter) c.header('Retry-After', String(retryAfter));
      if (html) return loginHtml(c, err.statusCode, { next, error: sentence(err.message), user: name.slice(0, 64) });
      return api.errorResponse(c, err);
    };
    if (!name || !password)
      return fail(
        new DispyError(
          'DISPY_ERR_BAD_REQUEST',
          !name && !password ? 'enter a user name and a password' : !name ? 'enter a user name' : 'enter a password',
        ),
      );
    if (name.length > 64 || password.length > 1024)
      return fail(new DispyError('DISPY_ERR_BAD_REQUEST', 'the user name (64) or the password (1024 characters) is too long'));
    const peer = peerOf(c);
    let user: Awaited<ReturnType<typeof ctx.access.login>>;
    try {
      user = await ctx.access.login(name, password, peer);
    } catch (err) {
      const e = err as DispyError & { retryAfter?: number };
      if (e.code === 'DISPY_ERR_TOO_MANY_REQUESTS' || e.code === 'DISPY_ERR_UNAUTHORIZED')
        ctx.audit.login(shownName(ctx, name), null, peer, e.code === 'DISPY_ERR_UNAUTHORIZED' ? 'failed' : 'limited', 'form');
      if (e instanceof DispyError) return fail(e, e.retryAfter);
      throw err;
    }
    const { value, session } = ctx.access.sessions.issue(user.name);
    ctx.audit.login(user.name, user.role, peer, 'ok', 'form');
    c.header('Set-Cookie', cookie(ctx.sessionCookie(), value, c.get('source').secure, ctx.access.sessions.maxAgeSec));
    c.header('Cache-Control', 'no-store');
    if (html) return c.redirect(next, 303);
    return api.jsonText(c, JSON.stringify({ user: user.name, role: user.role, session_expires_ms: session.exp }));
  });
  app.post('/logout', (c) => {
    const who = c.get('who');
    if (who?.via === 'session' && who.session) {
      ctx.access.sessions?.revoke(who.session);
      ctx.audit.logout(who, peerOf(c));
    }
    c.header('Set-Cookie', cookie(ctx.sessionCookie(), '', c.get('source').secure, 0));
    c.header('Cache-Control', 'no-store');
    if (wantsHtml(c)) return c.redirect(users ? '/login?signed_out=1' : '/', 303);
    return api.jsonText(c, JSON.stringify({ signed_out: who?.via === 'session' }));
  });

  app.get('*', async (c) => {
    const pathname = new URL(c.req.url).pathname;
    const r = await ctx.files.serve(pathname, ctx.settings);
    if (!r) throw new DispyError('DISPY_ERR_NOT_FOUND', 'no such file or endpoint');
    return c.body(r.body as string, r.status as 200, r.headers);
  });

  app.all('*', () => {
    throw new DispyError('DISPY_ERR_NOT_FOUND', 'no such endpoint for this method');
  });

  app.onError((err, c) => {
    if (err instanceof DispyError) return api.errorResponse(c, err);
    ctx.log.error({ err: (err as Error).message, path: c.req.path }, 'request failed');
    return api.errorResponse(c, new DispyError('DISPY_ERR_INTERNAL', 'internal error'));
  });
  app.notFound((c) => api.errorResponse(c, new DispyError('DISPY_ERR_NOT_FOUND', 'no such file or endpoint')));
  return app;
}

/**
 * The name a sign-in is logged under: a configured user's name, or a placeholder (people type
 * their password in the name field; it must not reach the event log every viewer reads).
 */
function shownName(ctx: RouteContext, name: string): string {
  return ctx.access.users?.get(name) ? name : '(an unknown name)';
}

/** A message as a sentence for the page: capitalized, with a full stop. */
function sentence(s: string): string {
  const t = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

function loginHtml(c: Context, status: number, v: Parameters<typeof loginPage>[0]): Response {
  return c.body(loginPage(v), status as 200, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Security-Policy': STRICT_CSP,
  });
}

/** `GET /events?interval=S[&since=N&epoch=E][&log=N|now]`, or resuming with Last-Event-ID. */
function events(c: Context<Env>, ctx: RouteContext): Response {
  // HEAD reaches GET handlers in hono: answer the headers without opening a stream.
  if (c.req.method === 'HEAD') return c.body(null, 200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  const q = c.req.query();
  let interval = ctx.settings.pollSec > 0 ? ctx.settings.pollSec : 10;
  if (q.interval !== undefined) {
    const n = Number(q.interval);
    if (q.interval.trim() === '' || !Number.isFinite(n) || n < MIN_INTERVAL_SEC || n > MAX_INTERVAL_SEC) {
      throw new DispyError('DISPY_ERR_BAD_REQUEST', `\`interval\` must be seconds from ${MIN_INTERVAL_SEC} to ${MAX_INTERVAL_SEC}`);
    }
    interval = n;
  }
  let since = 0;
  let epoch: string | null = null;
  const last = ChangeLog.parseToken(c.req.header('last-event-id'));
  if (last) {
    since = last.seq;
    epoch = last.epoch;
  } else if (q.since !== undefined) {
    since = api.parseCursor(q.since, 'since');
    if (q.epoch !== undefined) {
      if (!/^[0-9a-f]{1,32}$/.test(q.epoch))
        throw new DispyError('DISPY_ERR_BAD_REQUEST', '`epoch` must be the hexadecimal epoch a response gave');
      epoch = q.epoch;
    }
  }
  let log: number | 'now' | null = null;
  if (q.log !== undefined) log = q.log === 'now' ? 'now' : api.parseCursor(q.log, 'log');
  // Bounded: per client address, per signed-in user and in total; the slot is freed with the stream.
  const who = c.get('who');
  const user = who && (who.via === 'session' || who.via === 'basic') ? who.user : null;
  const slot = ctx.streams.acquire(c.get('source').client, user);
  if ('refused' in slot) {
    c.header('Retry-After', String(CAP_RETRY_AFTER_SEC));
    throw new DispyError('DISPY_ERR_TOO_MANY_REQUESTS', `${slot.refused}; try again in ${CAP_RETRY_AFTER_SEC} s`);
  }
  const outgoing = c.env.outgoing as ServerResponse;
  if (outgoing.destroyed) slot.release();
  else outgoing.once('close', slot.release);
  return ctx.sse.open(c, since, epoch, interval, outgoing, log);
}
