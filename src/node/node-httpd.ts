/**
 * `dispyts node --httpd [host:]port`: a small HTTP server of one node daemon, for that node
 * alone: its page (`/`), its state as JSON (`/status.json`), and, for an admin, changing its
 * CPUs (`POST /cpus`) and draining it (`POST /drain`). Off by default; on loopback unless told
 * otherwise; every request needs a token (`--httpd-token`, or one derived from the node's secret
 * and printed at start), and a second, viewer token may be given for read-only access.
 * Mutations must come from the page itself (Origin / Sec-Fetch-Site) or carry the token in a
 * header; the Host header must name the server; the page runs no inline script. Those checks,
 * proxies and connection caps are the HTTP guard's (src/protocol/http-guard.ts), shared with
 * DispyHTTPServer.
 */
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import os from 'node:os';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import type { Logger } from 'pino';
import { DispyError, invalidOption } from '../errors.js';
import {
  ConnectionCaps,
  cookie,
  HostPolicy,
  isLoopbackAddress,
  mutationAllowed,
  ProxyPolicy,
  readCookie,
  SECURITY_HEADERS,
  tokenMatches,
  type TrustedProxy,
} from '../protocol/http-guard.js';
import { HostMetrics } from './host-metrics.js';
import type { NodeDaemonStatus } from './node-status.js';
import { NODE_PAGE_CSS, NODE_PAGE_JS, renderLive, renderPage, type NodePageData, type NodePageRole } from './node-page.js';

/** What the server needs of the daemon (NodeDaemon has it). */
export interface NodePageSource {
  readonly host: string;
  readonly log: Logger;
  status(): NodeDaemonStatus;
  setCpuLimit(cpus: number): number;
  setDraining(on: boolean): boolean;
}

export interface NodeHttpdOptions {
  /**
   * Address to listen on. A non-loopback address makes the page reachable from the network
   * (still behind the token).
   * @default the node's address when it is on loopback, else '127.0.0.1'
   */
  host?: string;
  /** Port; 0 picks a free one (see `address`). @default 0 */
  port?: number;
  /**
   * The admin token (at least 16 characters), presented as `?token=` once (it then moves into
   * a cookie), as `Authorization: Bearer <token>`, or by the cookie.
   * @default derived from `secret` (see nodePageToken)
   */
  token?: string;
  /** The node's secret, to derive the token from when `token` is not given. @default undefined */
  secret?: Buffer | string;
  /** A second token that shows the page and the JSON without the admin controls. @default undefined */
  viewerToken?: string;
  /** Where the page measures free disk (the node's `--dest-path-prefix`). @default os.tmpdir() */
  diskPath?: string;
  /**
   * A reverse proxy in front of the page and the URL browsers use (as DispyHTTPServer's
   * `trustedProxy`): the same-origin rule compares Origin with `publicUrl`, whose host the Host
   * header may carry, and cookies are Secure when it is https.
   * @default undefined (no proxy)
   */
  trustedProxy?: TrustedProxy;
}

/** Connections the page keeps open at most, in total and from one address (429 beyond). */
export const NODE_PAGE_LIMITS = { connections: 256, connectionsPerAddress: 32 } as const;

/** Where the node's page listens, once it does. */
export interface NodeHttpdAddress {
  host: string;
  port: number;
  /** The page's URL without the token. */
  url: string;
  /** The URL that signs the browser in with the admin token. */
  loginUrl: string;
}

/**
 * The admin token of a node's page when none is given: HMAC-SHA256 of a fixed label under the
 * node's secret, so whoever holds the secret can compute it and the secret itself never travels.
 */
export function nodePageToken(secret: Buffer | string): string {
  return createHmac('sha256', secret).update('dispyts node page token v1').digest('base64url').slice(0, 32);
}

/** The page's CSP: its own script and styles only. */
const NODE_PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

function validate(o: NodeHttpdOptions): void {
  if (o.host !== undefined && (typeof o.host !== 'string' || !isIP(o.host))) throw invalidOption('httpd host', 'an IP address', o.host);
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535))
    throw invalidOption('httpd port', 'an integer from 0 to 65535', o.port);
  for (const k of ['token', 'viewerToken'] as const) {
    const t = o[k];
    if (t !== undefined && (typeof t !== 'string' || t.length < 16 || t.length > 512 || /[\s;,]/.test(t)))
      throw invalidOption(
        `httpd ${k}`,
        'a string of 16 to 512 characters without spaces, commas or semicolons',
        t === undefined ? t : `${String(t).length} characters`,
      );
  }
  if (o.token === undefined && o.secret === undefined)
    throw invalidOption('httpd token', 'a token, or the node secret to derive one from', undefined);
  if (o.token !== undefined && o.viewerToken !== undefined && o.token === o.viewerToken)
    throw invalidOption('httpd viewerToken', 'different from the admin token', '(the same)');
}

class RequestError extends DispyError {}

export class NodeHttpServer {
  /** Resolves once listening; rejects with DISPY_ERR_LISTEN. */
  readonly listening: Promise<NodeHttpdAddress>;
  readonly #source: NodePageSource;
  readonly #token: string;
  readonly #viewerToken: string | null;
  readonly #metrics: HostMetrics;
  readonly #server: http.Server;
  readonly #hosts: HostPolicy;
  readonly #proxy: ProxyPolicy;
  #address: NodeHttpdAddress | null = null;

  constructor(source: NodePageSource, options: NodeHttpdOptions) {
    validate(options);
    this.#source = source;
    this.#token = options.token ?? nodePageToken(options.secret!);
    this.#viewerToken = options.viewerToken ?? null;
    this.#metrics = new HostMetrics(options.diskPath ?? os.tmpdir());
    const host = options.host ?? (isLoopbackAddress(source.host) && isIP(source.host) ? source.host : '127.0.0.1');
    const port = options.port ?? 0;
    this.#proxy = new ProxyPolicy(options.trustedProxy, 'httpd trustedProxy');
    this.#hosts = new HostPolicy(host);
    // An ssh tunnel from a workstation reaches the page as localhost.
    this.#hosts.allow('localhost');
    if (this.#proxy.publicHost) this.#hosts.allow(this.#proxy.publicHost);
    const caps = new ConnectionCaps(NODE_PAGE_LIMITS, (a) => this.#proxy.isProxy(a));
    const app = this.#app();
    this.#server = http.createServer(
      caps.guard(
        getRequestListener(app.fetch, {
          errorHandler: () =>
            new Response(JSON.stringify({ error: { code: 'DISPY_ERR_BAD_REQUEST', message: 'malformed request' } }), {
              status: 400,
              headers: { 'Content-Type': 'application/json; charset=utf-8' },
            }),
        }),
      ),
    );
    caps.attach(this.#server);
    this.#server.headersTimeout = 20_000;
    this.#server.requestTimeout = 30_000;
    this.listening = new Promise<NodeHttpdAddress>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(new DispyError('DISPY_ERR_LISTEN', `the node page cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
      this.#server.once('error', onError);
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        this.#server.on('error', (err) => source.log.error({ err: err.message }, 'node page server error'));
        const a = this.#server.address() as AddressInfo;
        this.#hosts.bound(a.address);
        const h = a.address.includes(':') ? `[${a.address}]` : a.address;
        const url = `http://${h}:${a.port}/`;
        this.#address = { host: a.address, port: a.port, url, loginUrl: `${url}?token=${encodeURIComponent(this.#token)}` };
        source.log.info({ url }, 'node page listening');
        resolve(this.#address);
      });
    });
    this.listening.catch((err: DispyError) => source.log.error({ code: err.code }, err.message));
  }

  get address(): NodeHttpdAddress | null {
    return this.#address;
  }

  /** The admin token. */
  get token(): string {
    return this.#token;
  }

  /** Stops listening and closes every connection. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #cookieName(): string {
    return `dispyts_node_token_${this.#address?.port ?? 0}`;
  }

  #data(role: NodePageRole): NodePageData {
    const st = this.#source.status();
    return { ...st, availInfo: this.#metrics.sample(), uptimeSec: Math.round((Date.now() - st.startTime) / 1000), role };
  }

  #app(): Hono<{ Bindings: HttpBindings; Variables: { role: NodePageRole; viaHeader: boolean } }> {
    const app = new Hono<{ Bindings: HttpBindings; Variables: { role: NodePageRole; viaHeader: boolean } }>();
    const log = this.#source.log;

    app.use('*', async (c, next) => {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
      c.header('Content-Security-Policy', NODE_PAGE_CSP);
      if (!this.#hosts.allows(c.env.incoming.headers.host))
        throw new RequestError('DISPY_ERR_FORBIDDEN', 'Host header does not name this server');
      // Every request needs the token here, loopback or not; the source gives the origin to expect.
      const source = this.#proxy.source(c.env.incoming.socket?.remoteAddress, c.req.raw.headers, 'http');
      const url = new URL(c.req.url);
      if (url.pathname === '/healthz') return next();
      const authz = c.req.header('authorization');
      const bearer = authz && /^bearer\s+/i.test(authz) ? authz.replace(/^bearer\s+/i, '').trim() : null;
      const query = url.searchParams.get('token');
      const presented = bearer ?? query ?? readCookie(c.req.header('cookie'), this.#cookieName());
      const role: NodePageRole | null = tokenMatches(presented, this.#token)
        ? 'admin'
        : tokenMatches(presented, this.#viewerToken)
          ? 'viewer'
          : null;
      if (!role)
        throw new RequestError(
          'DISPY_ERR_UNAUTHORIZED',
          presented
            ? 'invalid token'
            : 'a token is required: open the URL the node printed at start, or send `Authorization: Bearer <token>`',
        );
      c.set('role', role);
      c.set('viaHeader', bearer !== null);
      if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
        const verdict = mutationAllowed(
          c.req.raw.headers,
          source.origin,
          bearer !== null,
          false,
          'requests without an Origin header need `Authorization: Bearer <token>`',
        );
        if (!verdict.ok) throw new RequestError('DISPY_ERR_FORBIDDEN', verdict.reason);
      }
      if (query !== null && c.req.method === 'GET') {
        // The URL printed at start: the token moves into a cookie and out of the address bar.
        url.searchParams.delete('token');
        return new Response(null, {
          status: 302,
          headers: {
            Location: `/${url.pathname.replace(/^\/+/, '')}${url.search}`,
            'Set-Cookie': cookie(this.#cookieName(), presented!, source.secure),
            'Cache-Control': 'no-store',
          },
        });
      }
      return next();
    });

    app.get('/healthz', (c) => c.json({ status: 'ok' }));
    app.get('/node-page.css', (c) =>
      c.body(NODE_PAGE_CSS, 200, { 'Content-Type': 'text/css; charset=utf-8', 'Cache-Control': 'no-cache' }),
    );
    app.get('/node-page.js', (c) =>
      c.body(NODE_PAGE_JS, 200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache' }),
    );
    app.get('/status.json', (c) => {
      c.header('Cache-Control', 'no-store');
      return c.json(this.#data(c.get('role')));
    });
    app.get('/', (c) => {
      const q = c.req.query();
      const d = this.#data(c.get('role'));
      c.header('Cache-Control', 'no-store');
      if (q.part === 'live') return c.html(renderLive(d));
      const flash = q.ok
        ? { kind: 'ok' as const, text: q.ok.slice(0, 200) }
        : q.error
          ? { kind: 'error' as const, text: q.error.slice(0, 300) }
          : null;
      return c.html(renderPage(d, flash));
    });

    /** An admin action: JSON for scripts, back to the page (with its outcome) for the form. */
    const action = (path: string, run: (form: Record<string, string | File>) => { ok: string; json: Record<string, unknown> }): void => {
      app.post(path, async (c) => {
        const role = c.get('role');
        const peer = this.#proxy.source(c.env.incoming.socket?.remoteAddress, c.req.raw.headers, 'http').client;
        const html = (c.req.header('accept') ?? '').includes('text/html');
        if (role !== 'admin') {
          log.warn({ audit: true, role, peer, action: path }, `node page: ${path} refused for the viewer token`);
          throw new RequestError('DISPY_ERR_ROLE', 'the viewer token shows the node; changing it needs the admin token');
        }
        const declared = Number(c.req.header('content-length') ?? 0);
        if (declared > 4096) throw new RequestError('DISPY_ERR_PAYLOAD_TOO_LARGE', 'request body larger than 4096 bytes');
        let form: Record<string, string | File>;
        try {
          form = (await c.req.parseBody()) as Record<string, string | File>;
        } catch {
          throw new RequestError('DISPY_ERR_BAD_REQUEST', 'the body must be a form (application/x-www-form-urlencoded)');
        }
        try {
          const r = run(form);
          log.info({ audit: true, role, peer, action: path, ...r.json }, `node page: ${r.ok}`);
          if (html) return c.redirect(`/?ok=${encodeURIComponent(r.ok)}`, 303);
          return c.json(r.json);
        } catch (err) {
          const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', (err as Error).message);
          log.warn({ audit: true, role, peer, action: path, code: e.code }, `node page: ${path} failed: ${e.message}`);
          if (html && e.statusCode < 500) return c.redirect(`/?error=${encodeURIComponent(e.message)}`, 303);
          throw e;
        }
      });
    };
    action('/cpus', (form) => {
      const raw = typeof form.cpus === 'string' ? form.cpus.trim() : '';
      const max = this.#source.status().cpus;
      if (!/^\d{1,6}$/.test(raw))
        throw new RequestError('DISPY_ERR_BAD_REQUEST', `\`cpus\` must be an integer from 1 to ${max}, got \`${raw.slice(0, 20)}\``);
      const n = Number(raw);
      if (n < 1 || n > max)
        throw new RequestError('DISPY_ERR_BAD_REQUEST', `\`cpus\` must be from 1 to ${max} (this node's --cpus), got ${n}`);
      const cpus = this.#source.setCpuLimit(n);
      return { ok: `The node now runs jobs on ${cpus} CPU${cpus === 1 ? '' : 's'}.`, json: { cpus } };
    });
    action('/drain', (form) => {
      const raw = typeof form.drain === 'string' ? form.drain.trim().toLowerCase() : '';
      if (!['on', 'off', 'true', 'false'].includes(raw))
        throw new RequestError('DISPY_ERR_BAD_REQUEST', `\`drain\` must be on or off, got \`${raw.slice(0, 20)}\``);
      const draining = this.#source.setDraining(raw === 'on' || raw === 'true');
      return {
        ok: draining ? 'The node is draining: running jobs finish, no job starts.' : 'The node serves jobs again.',
        json: { draining },
      };
    });

    app.all('*', () => {
      throw new RequestError('DISPY_ERR_NOT_FOUND', 'no such page or endpoint');
    });
    app.onError((err, c) => {
      const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', 'internal error');
      if (!(err instanceof DispyError)) log.error({ err: (err as Error).message }, 'node page request failed');
      return c.json({ error: e.toJSON() }, e.statusCode as 400);
    });
    return app;
  }
}

/** Parses `--httpd [host:]port`: `8182`, `127.0.0.1:8182`, `[::1]:8182`. */
export function parseHttpdAddress(text: string): { host?: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[2]) : NaN;
  const host = m?.[1]?.replace(/^\[|\]$/g, '');
  if (!m || port > 65535 || (host !== undefined && !isIP(host))) {
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `--httpd: expected [host:]port with an IP address, such as 8182, 127.0.0.1:8182 or [::1]:8182, got \`${text}\``,
    );
  }
  return host === undefined ? { port } : { host, port };
}
