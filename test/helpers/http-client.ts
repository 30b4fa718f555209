/**
 * HTTP helpers for the httpd tests: raw requests with any headers (Host, Origin, cookies) over
 * HTTP or HTTPS, form bodies, viewers that keep the state a page would build from
 * `/cluster_updates` or `/events`, and an SSE reader. Loopback only.
 */
import http from 'node:http';
import https from 'node:https';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json<T = any>(): T;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** CA for HTTPS (the test's self-signed certificate). */
  ca?: string | Buffer;
  timeoutMs?: number;
  /** Resolve at the response headers and drop the connection (for streams). */
  headersOnly?: boolean;
  /** The local address to send from (127.0.0.x: another client address). */
  localAddress?: string;
}

/** One request; resolves with the whole answer (never rejects on an HTTP status). */
export function request(url: string, opts: RequestOptions = {}): Promise<Reply> {
  const u = new URL(url);
  const lib = u.protocol === 'https:' ? https : http;
  // The path as written (URL would resolve `..` and re-encode).
  const path = /^https?:\/\/[^/]+(\/.*)?$/.exec(url)?.[1] ?? '/';
  return new Promise((resolve, reject) => {
    const req = lib.request(
      {
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port,
        path,
        method: opts.method ?? 'GET',
        headers: opts.headers ?? {},
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
        agent: false,
        timeout: opts.timeoutMs ?? 20_000,
      },
      (res) => {
        if (opts.headersOnly) {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', json: () => null as never });
          req.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** A form-encoded body from fields (repeat a name by giving an array). */
export function form(fields: Record<string, string | number | (string | number)[]>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, String(x));
  return p.toString();
}

/** POSTs a form from loopback without an Origin (as curl does). */
export function post(
  base: string,
  path: string,
  fields: Record<string, string | number | (string | number)[]>,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return request(base + path, {
    method: 'POST',
    body: form(fields),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

export type NodeState = Record<string, any>;
export interface ClusterState {
  jobs: Record<string, number>;
  nodes: Map<string, NodeState>;
}

/** The state a viewer builds: cluster name -> counters and nodes by address. */
export type ViewState = Map<string, ClusterState>;

/** The truth: `GET /cluster_status` as a ViewState. */
export async function snapshot(base: string, headers: Record<string, string> = {}): Promise<ViewState> {
  const r = await request(`${base}/cluster_status`, { headers });
  const out: ViewState = new Map();
  for (const c of r.json<any[]>()) out.set(c.name, { jobs: c.jobs, nodes: new Map(c.nodes.map((n: NodeState) => [n.ip_addr, n])) });
  return out;
}

/** Plain comparable form of a ViewState. */
export function plain(s: ViewState): Record<string, { jobs: Record<string, number>; nodes: Record<string, NodeState> }> {
  const out: Record<string, { jobs: Record<string, number>; nodes: Record<string, NodeState> }> = {};
  for (const [name, c] of [...s].sort(([a], [b]) => a.localeCompare(b))) {
    out[name] = { jobs: c.jobs, nodes: Object.fromEntries([...c.nodes].sort(([a], [b]) => a.localeCompare(b))) };
  }
  return out;
}

/** Applies a `{ epoch, cursor, resync, clusters, removed_clusters }` document to a state. */
export function applyDelta(state: ViewState, d: any): void {
  if (d.resync) state.clear();
  for (const name of d.removed_clusters ?? []) state.delete(name);
  for (const c of d.clusters) {
    let cs = state.get(c.name);
    if (!cs) {
      cs = { jobs: c.jobs, nodes: new Map() };
      state.set(c.name, cs);
    }
    cs.jobs = c.jobs;
    for (const ip of c.removed_nodes ?? []) cs.nodes.delete(ip);
    for (const n of c.nodes) cs.nodes.set(n.ip_addr, n);
  }
}

/** Every version of every node a viewer saw, to check it saw a given change. */
export type Seen = NodeState[];

/** A viewer polling `/cluster_updates?since=` like our pages. */
export class SinceViewer {
  readonly state: ViewState = new Map();
  readonly seen: Seen = [];
  cursor = 0;
  epoch: string | null = null;
  readonly base: string;
  constructor(base: string) {
    this.base = base;
  }
  async poll(): Promise<any> {
    const q = this.epoch ? `since=${this.cursor}&epoch=${this.epoch}` : `since=${this.cursor}`;
    const r = await request(`${this.base}/cluster_updates?${q}`);
    if (r.status !== 200) throw new Error(`cluster_updates ${r.status}: ${r.body}`);
    const d = r.json();
    applyDelta(this.state, d);
    for (const c of d.clusters) this.seen.push(...c.nodes);
    this.cursor = d.cursor;
    this.epoch = d.epoch;
    return d;
  }
}

/** A viewer like dispy's pages: `/cluster_status` once, then `/cluster_updates` with its cookie. */
export class CookieViewer {
  readonly state: ViewState = new Map();
  readonly seen: Seen = [];
  cookie = '';
  readonly base: string;
  constructor(base: string) {
    this.base = base;
  }
  #take(r: Reply): void {
    const set = r.headers['set-cookie'];
    for (const c of set ?? []) {
      const kv = c.split(';')[0]!;
      if (kv.startsWith('dispyts_cursor')) this.cookie = kv;
    }
  }
  async load(): Promise<void> {
    const r = await request(`${this.base}/cluster_status`, { headers: this.cookie ? { cookie: this.cookie } : {} });
    this.#take(r);
    this.state.clear();
    for (const c of r.json<any[]>()) {
      this.state.set(c.name, { jobs: c.jobs, nodes: new Map(c.nodes.map((n: NodeState) => [n.ip_addr, n])) });
      this.seen.push(...c.nodes);
    }
  }
  async poll(): Promise<any[]> {
    const r = await request(`${this.base}/cluster_updates`, { headers: this.cookie ? { cookie: this.cookie } : {} });
    if (r.status !== 200) throw new Error(`cluster_updates ${r.status}: ${r.body}`);
    this.#take(r);
    const list = r.json<any[]>();
    // dispy's page logic: counters replaced, nodes merged by address.
    for (const c of list) {
      let cs = this.state.get(c.name);
      if (!cs) {
        cs = { jobs: c.jobs, nodes: new Map() };
        this.state.set(c.name, cs);
      }
      cs.jobs = c.jobs;
      for (const n of c.nodes) cs.nodes.set(n.ip_addr, n);
      this.seen.push(...c.nodes);
    }
    return list;
  }
}

export interface SseEvent {
  id: string | null;
  event: string | null;
  data: string;
}

/** Reads an SSE stream; keeps the events and the state built from them. */
export class SseViewer {
  readonly events: SseEvent[] = [];
  /** When each event arrived (ms since epoch). */
  readonly times: number[] = [];
  readonly state: ViewState = new Map();
  readonly seen: Seen = [];
  status = 0;
  headers: http.IncomingHttpHeaders = {};
  ended = false;
  readonly #req: http.ClientRequest;
  readonly opened: Promise<void>;
  readonly done: Promise<void>;
  #waiters: (() => void)[] = [];

  constructor(url: string, opts: { headers?: Record<string, string>; ca?: string | Buffer; localAddress?: string } = {}) {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    let opened!: () => void;
    let done!: () => void;
    this.opened = new Promise((r) => (opened = r));
    this.done = new Promise((r) => (done = r));
    this.#req = lib.get(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        headers: { accept: 'text/event-stream', ...opts.headers },
        agent: false,
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      },
      (res) => {
        this.status = res.statusCode ?? 0;
        this.headers = res.headers;
        opened();
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          buf += d;
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            this.#block(block);
          }
        });
        const end = (): void => {
          this.ended = true;
          done();
          this.#wake();
        };
        res.on('end', end);
        res.on('close', end);
        res.on('error', end);
      },
    );
    this.#req.on('error', () => {
      this.ended = true;
      opened();
      done();
      this.#wake();
    });
  }

  #block(block: string): void {
    let id: string | null = null;
    let event: string | null = null;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0 && event === null) return;
    const e = { id, event, data: data.join('\n') };
    this.events.push(e);
    this.times.push(Date.now());
    if (event === null) {
      const d = JSON.parse(e.data);
      applyDelta(this.state, d);
      for (const c of d.clusters) this.seen.push(...c.nodes);
    }
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `check()` holds (re-checked at each event), or rejects after `timeoutMs`. */
  async until(check: () => boolean, timeoutMs = 10_000, what = 'SSE condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.ended) throw new Error(`SSE stream ended before ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  get lastId(): string | null {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]!.id) return this.events[i]!.id;
    return null;
  }

  close(): void {
    this.#req.destroy();
  }
}
