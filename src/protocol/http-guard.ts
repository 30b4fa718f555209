/**
 * The HTTP guard of both web servers (DispyHTTPServer in src/httpd and a node's own page in
 * src/node), below both layers so its rules live in one place: loopback peers and names,
 * constant-time token comparison, cookies, the Host header (DNS-rebinding guard), the same-origin
 * rule for mutations, reverse proxies (a request carrying forwarded headers is never trusted as
 * loopback; forwarded headers are honoured from the one proxy the operator names, whose public
 * URL the same-origin rule then uses), and caps on connections and streams (429 with
 * Retry-After beyond them).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { isIP } from 'node:net';
import type net from 'node:net';
import os from 'node:os';
import { invalidOption } from '../errors.js';
import { isLoopbackAddress, isLoopbackHost } from './loopback.js';

export { isLoopbackAddress } from './loopback.js';

/** Whether a host name can only mean this machine: `localhost`, `*.localhost` or a loopback address. */
export function isLoopbackName(host: string): boolean {
  const h = normalizeHost(host);
  return h === 'localhost' || h.endsWith('.localhost') || isLoopbackAddress(h);
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(presented: string | null | undefined, expected: string | null | undefined): boolean {
  if (!expected || typeof presented !== 'string' || presented.length === 0 || presented.length > 1024) return false;
  return timingSafeEqual(digest(presented), digest(expected));
}

/** Reads one cookie from a Cookie header; null when absent or malformed. */
export function readCookie(header: string | null | undefined, name: string): string | null {
  if (!header || header.length > 16384) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    const v = part.slice(eq + 1).trim();
    try {
      return decodeURIComponent(v);
    } catch {
      return null;
    }
  }
  return null;
}

/** A Set-Cookie value for our cookies: HttpOnly, SameSite=Strict, Secure over HTTPS. */
export function cookie(name: string, value: string, secure: boolean, maxAgeSec?: number): string {
  return `${name}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}${maxAgeSec === undefined ? '' : `; Max-Age=${maxAgeSec}`}`;
}

/** The host name of a Host header (port and IPv6 brackets removed, lower case); null if malformed. */
export function hostName(header: string | null | undefined): string | null {
  if (!header || header.length > 300) return null;
  let h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return null;
    const rest = h.slice(end + 1);
    if (rest && !/^:\d{1,5}$/.test(rest)) return null;
    h = h.slice(1, end);
    return isIP(h) === 6 ? h : null;
  }
  const colon = h.indexOf(':');
  if (colon >= 0) {
    if (!/^:\d{1,5}$/.test(h.slice(colon))) return null;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return /^[a-z0-9._-]{1,253}$/.test(h) ? h : null;
}

function normalizeHost(h: string): string {
  let s = h.trim().toLowerCase();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.endsWith('.')) s = s.slice(0, -1);
  return s;
}

/**
 * Which Host headers name this server: the bound address (and `localhost` for a loopback bind),
 * any address of the machine (and its host name) for a wildcard bind, and `allowedHosts`.
 */
export class HostPolicy {
  readonly #bindHost: string;
  readonly #allowed = new Set<string>();
  readonly #any: boolean;
  readonly #wildcard: boolean;
  #machine = new Set<string>();
  #machineReadAt = 0;

  constructor(bindHost: string, allowedHosts: readonly string[] = []) {
    this.#bindHost = normalizeHost(bindHost);
    this.#any = allowedHosts.includes('*');
    for (const h of allowedHosts) if (h !== '*') this.#allowed.add(normalizeHost(h));
    this.#wildcard = this.#bindHost === '' || this.#bindHost === '0.0.0.0' || this.#bindHost === '::';
    if (!this.#wildcard) {
      this.#allowed.add(this.#bindHost);
      if (isLoopbackHost(this.#bindHost)) this.#allowed.add('localhost');
    } else this.#allowed.add('localhost');
  }

  /** Adds the address the server actually bound (known once listening). */
  bound(address: string): void {
    const a = normalizeHost(address);
    if (a !== '0.0.0.0' && a !== '::') this.#allowed.add(a);
    if (isLoopbackAddress(a)) this.#allowed.add('localhost');
  }

  /** Adds a name (the public host of a trusted proxy). */
  allow(name: string): void {
    this.#allowed.add(normalizeHost(name));
  }

  #readMachine(): void {
    const s = new Set<string>();
    try {
      for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) s.add(normalizeHost(i.address.split('%')[0]!));
    } catch {
      // no interface list: only the configured names
    }
    try {
      s.add(os.hostname().toLowerCase());
    } catch {
      // no host name
    }
    this.#machine = s;
    this.#machineReadAt = Date.now();
  }

  /** Whether a request's Host header is acceptable. */
  allows(header: string | null | undefined): boolean {
    if (this.#any) return true;
    const h = hostName(header);
    if (h === null) return false;
    if (this.#allowed.has(h)) return true;
    if (!this.#wildcard) return false;
    if (this.#machine.has(h)) return true;
    // Interfaces change (DHCP, VPN): re-read at most every 5 s on a miss.
    if (Date.now() - this.#machineReadAt > 5000) {
      this.#readMachine();
      return this.#machine.has(h);
    }
    return false;
  }
}

/**
 * Refuses, for a server that listens on loopback only, a Host name that is not a loopback name
 * unless a trusted proxy is named: such a name can only reach it through a proxy on this
 * machine, whose requests would otherwise look like a local user's.
 */
export function checkAllowedHosts(bindHost: string, allowedHosts: readonly string[], proxy: TrustedProxy | undefined, what: string): void {
  if (proxy || !isLoopbackHost(bindHost)) return;
  for (const h of allowedHosts) {
    if (h !== '*' && isLoopbackName(h)) continue;
    throw invalidOption(
      what,
      `loopback names only on a server listening on loopback (${bindHost}): \`${h}\` can only reach it through a reverse proxy on this machine, whose requests look like a local user's; name the proxy and the public URL with \`trustedProxy\` (README: "Behind nginx or Caddy"), or listen on the address \`${h}\` names`,
      h,
    );
  }
}

/** Whether a request says it was forwarded by a proxy (Forwarded, X-Forwarded-*, X-Real-IP). */
export function hasForwardedHeaders(headers: Headers): boolean {
  for (const name of headers.keys()) if (name === 'forwarded' || name === 'x-real-ip' || name.startsWith('x-forwarded-')) return true;
  return false;
}

/**
 * A reverse proxy in front of a server: requests from `address` come through it, with the
 * client's address in X-Forwarded-For (or X-Real-IP, or Forwarded), and browsers know the
 * server as `publicUrl`.
 */
export interface TrustedProxy {
  /**
   * The proxy's address as the server sees it (the peer address of its connections), or several.
   * @example address: '127.0.0.1'
   */
  address: string | readonly string[];
  /**
   * The URL browsers use (scheme, host and port, no path): the same-origin rule compares their
   * Origin with it, its host is accepted in the Host header, and cookies are Secure when it is
   * https.
   * @example publicUrl: 'https://monitor.example.org'
   */
  publicUrl: string;
}

/** Where one request comes from, as the guard sees it. */
export interface RequestSource {
  /** The socket's peer address. */
  peer: string;
  /** The client: the peer, or the address the trusted proxy forwarded (keys rate limits and caps). */
  client: string;
  /** It came through the trusted proxy. */
  viaProxy: boolean;
  /** It carries forwarded headers. */
  forwarded: boolean;
  /** A loopback peer that is neither the trusted proxy nor carries forwarded headers: a local program. */
  loopback: boolean;
  /** The Origin a same-origin request carries (the public URL's through the proxy); null without a Host. */
  origin: string | null;
  /** Whether cookies must be Secure (HTTPS here, or at the proxy). */
  secure: boolean;
}

/** The client address a trusted proxy forwarded: the last X-Forwarded-For entry (the one it added), X-Real-IP, or Forwarded's last `for=`. */
function forwardedClient(headers: Headers): string | null {
  const xff = headers.get('x-forwarded-for');
  if (xff) {
    const last = xff.split(',').pop()!.trim();
    if (last) return last;
  }
  const real = headers.get('x-real-ip')?.trim();
  if (real) return real;
  const fwd = headers.get('forwarded');
  if (fwd) {
    let found: string | null = null;
    for (const m of fwd.matchAll(/for\s*=\s*("?)\[?([^\]";,\s]+)\]?\1/gi)) found = m[2]!;
    if (found) return found;
  }
  return null;
}

function cleanAddress(a: string): string {
  const s = a
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  return s.startsWith('::ffff:') && isIP(s.slice(7)) === 4 ? s.slice(7) : s;
}

/** The trusted-proxy rules of one server (none when no proxy is named). */
export class ProxyPolicy {
  readonly #addresses: Set<string>;
  /** The public URL's origin (`https://monitor.example.org`), or null. */
  readonly publicOrigin: string | null;
  /** The public URL's host name, or null. */
  readonly publicHost: string | null;
  readonly #publicSecure: boolean;

  /** `what` names the option in errors. */
  constructor(proxy: TrustedProxy | undefined, what = 'trustedProxy') {
    if (proxy === undefined) {
      this.#addresses = new Set();
      this.publicOrigin = this.publicHost = null;
      this.#publicSecure = false;
      return;
    }
    if (proxy === null || typeof proxy !== 'object') throw invalidOption(what, '{ address, publicUrl }', proxy);
    const list = typeof proxy.address === 'string' ? [proxy.address] : proxy.address;
    if (!Array.isArray(list) || list.length === 0 || !list.every((a) => typeof a === 'string' && isIP(cleanAddress(a)) !== 0))
      throw invalidOption(`${what}.address`, "the proxy's IP address (or a list of them)", proxy.address);
    this.#addresses = new Set(list.map(cleanAddress));
    let url: URL;
    try {
      url = new URL(String(proxy.publicUrl));
    } catch {
      throw invalidOption(`${what}.publicUrl`, 'a URL such as https://monitor.example.org', proxy.publicUrl);
    }
    if (
      (url.protocol !== 'https:' && url.protocol !== 'http:') ||
      (url.pathname !== '/' && url.pathname !== '') ||
      url.search ||
      url.hash ||
      url.username ||
      url.password
    ) {
      throw invalidOption(
        `${what}.publicUrl`,
        'an http(s) URL with a host and no path, such as https://monitor.example.org',
        proxy.publicUrl,
      );
    }
    this.publicOrigin = url.origin;
    this.publicHost = normalizeHost(url.hostname);
    this.#publicSecure = url.protocol === 'https:';
  }

  /** Whether a proxy is named. */
  get enabled(): boolean {
    return this.#addresses.size > 0;
  }

  /** Whether `address` is the trusted proxy. */
  isProxy(address: string | undefined | null): boolean {
    return !!address && this.#addresses.has(cleanAddress(address));
  }

  /** Where a request from socket peer `peer` with these headers comes from. */
  source(peer: string | undefined, headers: Headers, scheme: 'http' | 'https'): RequestSource {
    const p = peer ? cleanAddress(peer) : 'unknown';
    const forwarded = hasForwardedHeaders(headers);
    const viaProxy = this.isProxy(p);
    let client = p;
    if (viaProxy) {
      const f = forwardedClient(headers);
      const c = f ? cleanAddress(f) : '';
      // What the proxy did not say stays its own (one key for every such request).
      client = c && isIP(c) ? c : `proxy:${p}`;
    }
    const host = headers.get('host');
    return {
      peer: p,
      client,
      viaProxy,
      forwarded,
      loopback: !forwarded && !viaProxy && isLoopbackAddress(p),
      origin: viaProxy ? this.publicOrigin : host ? `${scheme}://${host.trim().toLowerCase()}` : null,
      secure: scheme === 'https' || (viaProxy && this.#publicSecure),
    };
  }
}

/**
 * Whether a mutation (any method but GET/HEAD) may proceed: a browser must show it comes from
 * our own origin (Origin equal to `origin`, else Sec-Fetch-Site); a request with neither (curl,
 * scripts) needs credentials in a header (`tokenValid`) or a trusted loopback peer.
 */
export function mutationAllowed(
  headers: Headers,
  origin: string | null,
  tokenValid: boolean,
  loopback: boolean,
  noOriginHint = 'requests without an Origin header need the token',
): { ok: true } | { ok: false; reason: string } {
  const presented = headers.get('origin');
  const site = headers.get('sec-fetch-site');
  if (site !== null && site !== 'same-origin')
    return { ok: false, reason: `cross-origin request refused (Sec-Fetch-Site: ${site.slice(0, 40)})` };
  if (presented !== null) {
    if (!origin || presented.toLowerCase() !== origin.toLowerCase())
      return { ok: false, reason: 'cross-origin request refused (Origin does not match this server)' };
    return { ok: true };
  }
  if (site === 'same-origin') return { ok: true };
  if (tokenValid || loopback) return { ok: true };
  return { ok: false, reason: noOriginHint };
}

/** Headers every response of both servers carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** Seconds a client refused by a cap is told to wait. */
export const CAP_RETRY_AFTER_SEC = 10;

/** Caps on open connections. */
export interface ConnectionLimits {
  /** Connections open at once, in total. */
  connections: number;
  /** Connections open at once from one address (a trusted proxy's count only in the total). */
  connectionsPerAddress: number;
}

/**
 * Counts a server's open connections per peer address and in total. A request on a connection
 * beyond a cap is answered 429 with Retry-After and the connection closed; far beyond the total
 * the server drops new connections at once (its `maxConnections`).
 */
export class ConnectionCaps {
  readonly limits: ConnectionLimits;
  readonly #exempt: (address: string) => boolean;
  readonly #perAddress = new Map<string, number>();
  #total = 0;

  constructor(limits: ConnectionLimits, exempt: (address: string) => boolean = () => false) {
    this.limits = limits;
    this.#exempt = exempt;
  }

  /** Connections open now. */
  get open(): number {
    return this.#total;
  }

  /** Follows `server`'s connections (raw sockets: for HTTPS before the handshake too). */
  attach(server: net.Server): void {
    server.maxConnections = this.limits.connections + Math.max(16, this.limits.connections >> 2);
    server.on('connection', (socket: net.Socket) => {
      const a = cleanAddress(socket.remoteAddress ?? 'unknown');
      this.#total++;
      this.#perAddress.set(a, (this.#perAddress.get(a) ?? 0) + 1);
      socket.once('close', () => {
        this.#total--;
        const n = (this.#perAddress.get(a) ?? 1) - 1;
        if (n <= 0) this.#perAddress.delete(a);
        else this.#perAddress.set(a, n);
      });
    });
  }

  /** Why a request from `address` must be refused now, or null. */
  refusal(address: string | undefined): string | null {
    if (this.#total > this.limits.connections)
      return `the server has ${this.#total} connections open, more than its ${this.limits.connections}`;
    const a = cleanAddress(address ?? 'unknown');
    if (this.#exempt(a)) return null;
    const n = this.#perAddress.get(a) ?? 0;
    if (n > this.limits.connectionsPerAddress)
      return `${n} connections are open from ${a}, more than the ${this.limits.connectionsPerAddress} allowed per address`;
    return null;
  }

  /**
   * Wraps a request listener: requests on connections beyond a cap get 429 (JSON, Retry-After,
   * connection closed) without reaching it.
   */
  guard(listener: http.RequestListener): http.RequestListener {
    return (req, res) => {
      const why = this.refusal(req.socket.remoteAddress);
      if (why === null) {
        listener(req, res);
        return;
      }
      tooMany(res, why);
    };
  }
}

/** Answers 429 with Retry-After and closes the connection. */
export function tooMany(res: http.ServerResponse, message: string, retryAfter = CAP_RETRY_AFTER_SEC): void {
  const body = JSON.stringify({ error: { code: 'DISPY_ERR_TOO_MANY_REQUESTS', message: `${message}; try again in ${retryAfter} s` } });
  res.shouldKeepAlive = false;
  res.writeHead(429, {
    ...SECURITY_HEADERS,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Retry-After': String(retryAfter),
    'Cache-Control': 'no-store',
    Connection: 'close',
  });
  res.end(body);
}

/** Caps on long-lived streams. */
export interface StreamLimits {
  /** Streams open at once, in total. */
  total: number;
  /** Streams open at once for one client address. */
  perAddress: number;
  /** Streams open at once for one signed-in user. */
  perUser: number;
}

/** Slots for long-lived streams (SSE), per client address, per signed-in user and in total. */
export class StreamCaps {
  readonly limits: StreamLimits;
  readonly #perAddress = new Map<string, number>();
  readonly #perUser = new Map<string, number>();
  #total = 0;

  constructor(limits: StreamLimits) {
    this.limits = limits;
  }

  get open(): number {
    return this.#total;
  }

  /**
   * Takes a slot for a stream of `address` (and `user`, when signed in): a release function, or
   * the reason it is refused.
   */
  acquire(address: string, user: string | null): { release: () => void } | { refused: string } {
    const l = this.limits;
    if (this.#total >= l.total) return { refused: `the server has ${this.#total} event streams open, its most` };
    const a = this.#perAddress.get(address) ?? 0;
    if (a >= l.perAddress) return { refused: `${a} event streams are open from ${address}, the most allowed per address` };
    const u = user === null ? 0 : (this.#perUser.get(user) ?? 0);
    if (user !== null && u >= l.perUser) return { refused: `${u} event streams are open for ${user}, the most allowed per user` };
    this.#total++;
    this.#perAddress.set(address, a + 1);
    if (user !== null) this.#perUser.set(user, u + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#total--;
        dec(this.#perAddress, address);
        if (user !== null) dec(this.#perUser, user);
      },
    };
  }
}

function dec(m: Map<string, number>, k: string): void {
  const n = (m.get(k) ?? 1) - 1;
  if (n <= 0) m.delete(k);
  else m.set(k, n);
}
