/**
 * The server's hono application: the security checks every request passes (Host, token,
 * same-origin for mutations, bounded bodies, security headers), then dispy's API, `/events`,
 * `/healthz` and the document root. Errors become JSON without stack traces.
 */
import type { ServerResponse } from 'node:http';
import { Hono, type Context } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import { DispyError } from '../errors.js';
import * as api from './api.js';
import { ChangeLog } from './change-log.js';
import { readForm, type FormFields } from './form.js';
import { cookie, isLoopbackAddress, mutationAllowed, presentedToken, refused, SECURITY_HEADERS, tokenMatches, type AuthPolicy, type HostPolicy } from './security.js';
import { MAX_INTERVAL_SEC, MIN_INTERVAL_SEC, type SseHub } from './sse.js';
import type { StaticFiles } from './static-files.js';

/** What the routes need of the server, beyond the API's context. */
export interface RouteContext extends api.ApiContext {
  readonly auth: AuthPolicy;
  readonly hosts: HostPolicy;
  readonly sse: SseHub;
  readonly files: StaticFiles;
  readonly maxBody: number;
  tokenCookie(): string;
}

type Env = { Bindings: HttpBindings; Variables: { tokenValid: boolean } };

const API_GET = new Set(['/cluster_status', '/cluster_updates', '/nodes', '/events', '/healthz']);

/** Builds the application for one server. */
export function createApp(ctx: RouteContext): Hono<Env> {
  const app = new Hono<Env>();
  const scheme = ctx.secure ? 'https' : 'http';

  app.use('*', async (c, next) => {
    // Set before the response exists: touching `c.res.headers` afterwards would make
    // @hono/node-server build a full Response and stream the body (several times slower).
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
    c.header('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
    await next();
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
    const peer = incoming.socket?.remoteAddress;
    const loopbackPeer = isLoopbackAddress(peer);
    const url = new URL(c.req.url);
    const { token, fromQuery } = presentedToken(c.req.raw.headers, url, ctx.tokenCookie());
    const tokenValid = tokenMatches(token, ctx.auth.token);
    c.set('tokenValid', tokenValid);
    const needToken = ctx.auth.token !== null && !(loopbackPeer && ctx.auth.trustLoopback) && url.pathname !== '/healthz';
    if (needToken && !tokenValid) {
      throw refused('DISPY_ERR_UNAUTHORIZED', token ? 'invalid token' : 'a token is required: open the login URL the server logged, or send `Authorization: Bearer <token>`');
    }
    const method = c.req.method;
    if (method !== 'GET' && method !== 'HEAD') {
      const verdict = mutationAllowed(c.req.raw.headers, scheme, tokenValid, loopbackPeer);
      if (!verdict.ok) throw refused('DISPY_ERR_FORBIDDEN', verdict.reason);
    }
    if (fromQuery && tokenValid) {
      // The login URL: the token moves into a cookie and out of the address bar.
      const cookieValue = cookie(ctx.tokenCookie(), token!, ctx.secure);
      if (method === 'GET' && !API_GET.has(url.pathname)) {
        url.searchParams.delete('token');
        // One leading slash: `//host/x` would send the browser elsewhere.
        const location = '/' + url.pathname.replace(/^\/+/, '') + url.search;
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

  const post = (path: string, handler: (c: Context, form: FormFields) => Response | Promise<Response>): void => {
    app.post(path, async (c) => handler(c, await readForm(c.req.raw, ctx.maxBody)));
  };
  post('/node_info', (c, f) => api.nodeInfo(c, ctx, f));
  post('/cancel_jobs', (c, f) => api.cancelJobs(c, ctx, f));
  post('/add_node', (c, f) => api.addNode(c, ctx, f));
  post('/allocate_node', (c, f) => api.nodeAction(c, ctx, f, 'allocate'));
  post('/deallocate_node', (c, f) => api.nodeAction(c, ctx, f, 'deallocate'));
  post('/close_node', (c, f) => api.nodeAction(c, ctx, f, 'close'));
  post('/update', (c, f) => api.update(c, ctx, f));
  post('/set_cpus', (c, f) => api.setCpus(c, ctx, f));

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

/** `GET /events?interval=S[&since=N&epoch=E]`, or resuming with Last-Event-ID. */
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
      if (!/^[0-9a-f]{1,32}$/.test(q.epoch)) throw new DispyError('DISPY_ERR_BAD_REQUEST', '`epoch` must be the hexadecimal epoch a response gave');
      epoch = q.epoch;
    }
  }
  return ctx.sse.open(c, since, epoch, interval, c.env.outgoing as ServerResponse);
}
