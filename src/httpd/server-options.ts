/**
 * The options of DispyHTTPServer, their defaults and their checks (a bad option is refused with
 * DISPY_ERR_INVALID_OPTION naming it, before the server opens anything).
 */
import type { Logger } from 'pino';
import { invalidOption } from '../errors.js';
import type { TrustedProxy } from '../protocol/http-guard.js';
import type { AuthOptions } from './security.js';

export interface DispyHTTPServerOptions {
  /**
   * Address to listen on. `''` listens on every interface (dispy's default): the server is then
   * reachable from the network and protected by a token (see `auth`). Use `'127.0.0.1'` to keep
   * it on this machine.
   * @default ''
   * @example host: '127.0.0.1'
   */
  host?: string;
  /**
   * Port to listen on (0: any free port; see `address`).
   * @default 8181
   * @example port: 0
   */
  port?: number;
  /**
   * Seconds between updates that pages start with, and how long `shutdown()` waits so browsers
   * get the last update. At least 1.
   * @default 10
   * @example pollSec: 2
   */
  pollSec?: number;
  /**
   * Directory of the pages (for example dispy's own `data/` directory). `.html` files get
   * dispy's templating (`%(TIMEOUT)s`, `%(SHOW_JOB_ARGS)s`, `%%`); paths never leave it.
   * @default the built UI in `dist/ui` (a placeholder page linking the JSON API until it is built)
   * @example documentRoot: './dispy/py3/dispy/data'   // a checkout of dispy
   */
  documentRoot?: string;
  /**
   * HTTPS: the private key (PEM).
   * @default undefined (the key in `certFile`)
   * @example keyFile: '/etc/dispyts/httpd-key.pem'
   */
  keyFile?: string;
  /**
   * HTTPS: the certificate (PEM); with `keyFile`, or alone when it holds the key too.
   * @default undefined (plain HTTP)
   * @example certFile: '/etc/dispyts/httpd.pem'
   */
  certFile?: string;
  /**
   * Whether `/node_info` shows each job's arguments (their `toString()`).
   * @default true
   * @example showJobArgs: false
   */
  showJobArgs?: boolean;
  /**
   * Access control. By default a server listening beyond loopback generates a token and logs
   * the login URL; `{ token }` sets the token; `false` turns it off (logged as a warning).
   * Loopback peers need no token unless `trustLoopback: false`. `{ users }` adds users who sign
   * in (login form, or HTTP Basic for scripts) with the role `admin` or `viewer`.
   * @default undefined (a generated token beyond loopback, none on loopback)
   * @example auth: { token: process.env.DISPYTS_HTTP_TOKEN, trustLoopback: false }
   * @example auth: { users: { alice: { passwordHash: 'scrypt$16384$8$1$…', role: 'admin' }, bob: { password: 'a long passphrase', role: 'viewer' } } }
   */
  auth?: AuthOptions | false;
  /**
   * Who may read `GET /metrics`: `'protected'` asks for the same credentials as the pages;
   * `'public'` lets any client that can reach the server scrape it (the node addresses and
   * cluster names it shows are then public too).
   * @default 'protected'
   * @example metrics: 'public'
   */
  metrics?: 'public' | 'protected';
  /**
   * Finished jobs the Jobs page keeps (the oldest go first); 0 keeps none.
   * @default 1000
   * @example jobHistorySize: 10000
   */
  jobHistorySize?: number;
  /**
   * Entries the event log keeps (the oldest go first).
   * @default 1000
   * @example eventLogSize: 5000
   */
  eventLogSize?: number;
  /**
   * More names the Host header may carry (a DNS name of this machine); `'*'` accepts any (turns
   * the DNS-rebinding guard off). A server listening on loopback only accepts loopback names
   * here unless `trustedProxy` is given: any other name can only reach it through a proxy on
   * this machine, whose requests would look like a local user's.
   * @default []
   * @example allowedHosts: ['build-7.lab.example.org']
   */
  allowedHosts?: string[];
  /**
   * The reverse proxy in front of the server (nginx, Caddy; README "Behind nginx or Caddy") and
   * the URL browsers use. Requests from `address` are never trusted as loopback; the client
   * address it forwards (X-Forwarded-For, X-Real-IP, Forwarded) keys sign-in limits and caps;
   * the same-origin rule compares Origin with `publicUrl`, whose host the Host header may carry;
   * cookies are Secure when `publicUrl` is https. Forwarded headers from any other peer are
   * ignored, and such a request is never trusted as loopback either.
   * @default undefined (no proxy)
   * @example trustedProxy: { address: '127.0.0.1', publicUrl: 'https://monitor.example.org' }
   */
  trustedProxy?: TrustedProxy;
  /**
   * Caps on what clients hold open; beyond them requests get 429 with Retry-After.
   * `connections` / `connectionsPerAddress`: open connections in total and from one peer
   * address (a trusted proxy's count in the total only); `eventStreams`,
   * `eventStreamsPerAddress`, `eventStreamsPerUser`: `/events` streams in total, per client
   * address and per signed-in user.
   * @default { connections: 1024, connectionsPerAddress: 128, eventStreams: 256, eventStreamsPerAddress: 32, eventStreamsPerUser: 32 }
   * @example limits: { eventStreamsPerAddress: 8 }
   */
  limits?: HttpLimits;
  /**
   * Largest request body accepted (bytes).
   * @default 65536
   * @example maxBodyBytes: 1024 * 1024
   */
  maxBodyBytes?: number;
  /**
   * pino level of the server's log (stderr).
   * @default 'info'
   * @example logLevel: 'warn'
   */
  logLevel?: string;
  /**
   * A logger to use instead of a new one.
   * @default undefined (a pino logger on stderr at `logLevel`)
   * @example logger: cluster.log
   */
  logger?: Logger;
}

/** Caps on connections and `/events` streams (see DispyHTTPServerOptions.limits). */
export interface HttpLimits {
  /** @default 1024 */
  connections?: number;
  /** @default 128 */
  connectionsPerAddress?: number;
  /** @default 256 */
  eventStreams?: number;
  /** @default 32 */
  eventStreamsPerAddress?: number;
  /** @default 32 */
  eventStreamsPerUser?: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<Required<HttpLimits>> = {
  connections: 1024,
  connectionsPerAddress: 128,
  eventStreams: 256,
  eventStreamsPerAddress: 32,
  eventStreamsPerUser: 32,
};

/** Where the server listens, once it does. */
export interface HttpServerAddress {
  host: string;
  port: number;
  /** URL to open (`localhost` for a wildcard bind), without the token. */
  url: string;
}

/** Checks the options. */
export function validate(o: DispyHTTPServerOptions): void {
  if (o === null || typeof o !== 'object') throw invalidOption('options', 'an object', o);
  if (o.host !== undefined && typeof o.host !== 'string')
    throw invalidOption('host', "an address or host name ('' for every interface)", o.host);
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535))
    throw invalidOption('port', 'an integer from 0 to 65535', o.port);
  if (o.pollSec !== undefined && !(typeof o.pollSec === 'number' && Number.isFinite(o.pollSec) && o.pollSec >= 1))
    throw invalidOption('pollSec', 'a number of seconds >= 1', o.pollSec);
  if (o.documentRoot !== undefined && (typeof o.documentRoot !== 'string' || o.documentRoot.length === 0))
    throw invalidOption('documentRoot', 'a directory path', o.documentRoot);
  for (const k of ['keyFile', 'certFile'] as const)
    if (o[k] !== undefined && (typeof o[k] !== 'string' || o[k].length === 0)) throw invalidOption(k, 'a file path', o[k]);
  if (o.keyFile !== undefined && o.certFile === undefined)
    throw invalidOption('certFile', 'a certificate file when `keyFile` is given', o.certFile);
  if (o.showJobArgs !== undefined && typeof o.showJobArgs !== 'boolean') throw invalidOption('showJobArgs', 'true or false', o.showJobArgs);
  if (
    o.allowedHosts !== undefined &&
    !(Array.isArray(o.allowedHosts) && o.allowedHosts.every((h) => typeof h === 'string' && h.length > 0 && h.length <= 253))
  ) {
    throw invalidOption('allowedHosts', 'an array of host names', o.allowedHosts);
  }
  if (o.maxBodyBytes !== undefined && !(Number.isInteger(o.maxBodyBytes) && o.maxBodyBytes >= 1024))
    throw invalidOption('maxBodyBytes', 'an integer >= 1024', o.maxBodyBytes);
  if (o.metrics !== undefined && o.metrics !== 'public' && o.metrics !== 'protected')
    throw invalidOption('metrics', "'public' or 'protected'", o.metrics);
  if (o.jobHistorySize !== undefined && !(Number.isInteger(o.jobHistorySize) && o.jobHistorySize >= 0 && o.jobHistorySize <= 1_000_000))
    throw invalidOption('jobHistorySize', 'an integer from 0 to 1000000', o.jobHistorySize);
  if (o.eventLogSize !== undefined && !(Number.isInteger(o.eventLogSize) && o.eventLogSize >= 1 && o.eventLogSize <= 1_000_000))
    throw invalidOption('eventLogSize', 'an integer from 1 to 1000000', o.eventLogSize);
  if (o.limits !== undefined) {
    if (o.limits === null || typeof o.limits !== 'object' || Array.isArray(o.limits))
      throw invalidOption('limits', `an object with any of ${Object.keys(DEFAULT_HTTP_LIMITS).join(', ')}`, o.limits);
    for (const [k, v] of Object.entries(o.limits)) {
      if (!(k in DEFAULT_HTTP_LIMITS)) throw invalidOption(`limits.${k}`, `one of ${Object.keys(DEFAULT_HTTP_LIMITS).join(', ')}`, k);
      if (!(Number.isInteger(v) && v >= 1 && v <= 1_000_000)) throw invalidOption(`limits.${k}`, 'an integer from 1 to 1000000', v);
    }
  }
}
