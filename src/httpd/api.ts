/**
 * dispy's JSON API (dispy-reference §7.3) with its quirks fixed: every request is answered,
 * unknown nodes are 404 JSON, malformed input is 400 JSON with a DISPY_ERR_* code. Paths,
 * form fields and shapes are dispy's, so its own pages work as a documentRoot; `?since=`
 * cursors, the per-browser cookie cursor and `/healthz` are ours.
 */
import type { Context } from 'hono';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { DispyJob } from '../client/dispy-job.js';
import { DispyError } from '../errors.js';
import { NODE_PORT } from '../protocol/constants.js';
import { ChangeLog } from './change-log.js';
import type { ClusterView } from './cluster-view.js';
import type { FormFields } from './form.js';
import type { JobJson, NodeJson } from './node-json.js';
import { cookie, readCookie } from './security.js';
import type { ViewRegistry } from './view-registry.js';

/** Settings a page load starts with; `POST /update` changes them. */
export interface PageSettings {
  /** Seconds between updates for newly loaded pages (0: no timed updates). */
  pollSec: number;
  showJobArgs: boolean;
}

/** What the handlers need of the server. */
export interface ApiContext {
  readonly registry: ViewRegistry;
  readonly settings: PageSettings;
  readonly log: Logger;
  readonly secure: boolean;
  /** Name of the cursor cookie (per port: browsers share cookies across ports of a host). */
  cursorCookie(): string;
}

const JSON_HEADERS = { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' } as const;

/** A JSON response from already serialized text (sent as bytes: see ViewRegistry.bytes). */
export function jsonText(c: Context, text: string | Buffer, status = 200): Response {
  const body = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  return c.body(body as unknown as ArrayBuffer, status as 200, JSON_HEADERS);
}

/** The JSON error body `{ error: { code, message } }` with the code's HTTP status. */
export function errorResponse(c: Context, err: DispyError): Response {
  return jsonText(c, JSON.stringify({ error: err.toJSON() }), err.statusCode);
}

function bad(message: string): DispyError {
  return new DispyError('DISPY_ERR_BAD_REQUEST', message);
}

/** A cursor from a query string: a non-negative safe integer. */
export function parseCursor(value: string, name: string): number {
  if (!/^\d{1,16}$/.test(value)) throw bad(`\`${name}\` must be a non-negative integer, got \`${value.slice(0, 40)}\``);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw bad(`\`${name}\` is too large`);
  return n;
}

function parseEpoch(value: string | undefined): string | null {
  if (value === undefined) return null;
  if (!/^[0-9a-f]{1,32}$/.test(value)) throw bad('`epoch` must be the hexadecimal epoch a response gave');
  return value;
}

function setCursorCookie(c: Context, ctx: ApiContext): void {
  c.header('Set-Cookie', cookie(ctx.cursorCookie(), ctx.registry.log.token(), ctx.secure));
}

/** `GET /cluster_status`: every cluster with its counters and every node. */
export function clusterStatus(c: Context, ctx: ApiContext): Response {
  const text = ctx.registry.statusBytes();
  // The page now holds everything: its cookie cursor starts here.
  setCursorCookie(c, ctx);
  return jsonText(c, text);
}

/**
 * `GET /cluster_updates`: with `?since=N[&epoch=E]`, `{ epoch, cursor, resync, clusters,
 * removed_clusters }`; without, dispy's shape with the nodes changed since this browser's
 * cookie cursor (so two browsers each see every change; tabs of one browser share it).
 */
export function clusterUpdates(c: Context, ctx: ApiContext): Response {
  const q = c.req.query();
  if (q.since !== undefined) {
    const since = parseCursor(q.since, 'since');
    const epoch = parseEpoch(q.epoch);
    const r = ctx.registry;
    // Every stale cursor gets the same snapshot: one cached document, not one per cursor.
    const key = r.log.needsResync(since, epoch) ? 'delta:full' : `delta:${since}`;
    return jsonText(
      c,
      r.bytes(key, () => r.delta(since, epoch).json),
    );
  }
  const held = ChangeLog.parseToken(readCookie(c.req.header('cookie') ?? null, ctx.cursorCookie()));
  const r = ctx.registry;
  const full = !held || r.log.needsResync(held.seq, held.epoch);
  const text = full ? r.statusBytes() : r.bytes(`dispy:${held.seq}`, () => r.dispyUpdatesJson(held.seq));
  setCursorCookie(c, ctx);
  return jsonText(c, text);
}

/** `GET /nodes`: `[{ name, nodes }]`. */
export function nodes(c: Context, ctx: ApiContext): Response {
  return jsonText(c, ctx.registry.nodesBytes());
}

/** `GET /healthz`. */
export function healthz(c: Context, ctx: ApiContext): Response {
  const r = ctx.registry;
  return jsonText(c, JSON.stringify({ status: 'ok', clusters: r.size, epoch: r.log.epoch, cursor: r.log.seq }));
}

const HOST_RE = /^[A-Za-z0-9._:*%[\]-]{1,255}$/;

function hostField(form: FormFields, name = 'host'): string {
  const host = (form.get(name) ?? '').trim();
  if (!host) throw bad(`\`${name}\` is required`);
  if (!HOST_RE.test(host)) throw bad(`\`${name}\` must be a host name, an IP address or a wildcard`);
  return host;
}

/** Addresses `host` names among the views: itself if an IP address, else nodes of that name. */
function resolveNode(ctx: ApiContext, host: string): string[] {
  if (isIP(host)) return [host];
  const ips = new Set<string>();
  for (const v of ctx.registry.views) for (const ip of v.ipsNamed(host)) ips.add(ip);
  return [...ips];
}

/**
 * `POST /node_info` (`host`): the node merged over the clusters that use it (jobs_done,
 * cpu_time, cpu_used, busy, tx, rx summed; update_time the latest; the rest from the first
 * cluster) and its running jobs per cluster. An unknown node is a 404.
 */
export function nodeInfo(c: Context, ctx: ApiContext, form: FormFields): Response {
  const host = hostField(form);
  const ips = resolveNode(ctx, host);
  let node: NodeJson | null = null;
  const clusterJobs: Record<string, JobJson[]> = {};
  for (const ip of ips.slice(0, 1)) {
    for (const v of ctx.registry.views) {
      const n = v.node(ip);
      if (!n) continue;
      if (!node) node = { ...n, avail_info: n.avail_info ? { ...n.avail_info } : null };
      else {
        node.jobs_done += n.jobs_done;
        node.cpu_time += n.cpu_time;
        node.cpu_used += n.cpu_used;
        node.busy += n.busy;
        node.tx += n.tx;
        node.rx += n.rx;
        node.update_time = Math.max(node.update_time, n.update_time);
      }
      clusterJobs[v.name] = v.runningJobs(ip, ctx.settings.showJobArgs);
    }
  }
  if (!node) throw new DispyError('DISPY_ERR_NODE_UNKNOWN', `no node ${host} in any cluster`);
  return jsonText(c, JSON.stringify({ node, cluster_jobs: clusterJobs }));
}

/**
 * `POST /cancel_jobs` (repeated `uid`, optional `grace`): the uids of the running jobs
 * cancelled. Killed at once, whatever the cluster's cancelGrace, unless `grace` (seconds) asks
 * for a polite stop.
 */
export async function cancelJobs(c: Context, ctx: ApiContext, form: FormFields): Promise<Response> {
  const raw = form.all('uid');
  if (raw.length === 0) throw bad('`uid` is required (one field per job)');
  const grace = intField(form, 'grace', 0, 0, 86_400);
  const uids = new Set<number>();
  for (const r of raw) {
    // dispy ignores invalid uids; so do we.
    if (/^\d{1,16}$/.test(r.trim())) uids.add(Number(r.trim()));
  }
  const targets: { view: ClusterView; job: DispyJob; uid: number }[] = [];
  for (const uid of uids) {
    for (const view of ctx.registry.views) {
      const job = view.runningJob(uid);
      if (job) targets.push({ view, job, uid });
    }
  }
  const results = await Promise.all(
    targets.map(async ({ view, job, uid }) => {
      try {
        return (await view.cluster.cancel?.(job, { grace })) === 0 ? uid : null;
      } catch (err) {
        ctx.log.warn({ uid, err: (err as Error).message }, 'cancelling a job failed');
        return null;
      }
    }),
  );
  return jsonText(c, JSON.stringify(results.filter((u): u is number => u !== null)));
}

function intField(form: FormFields, name: string, fallback: number, min: number, max: number): number {
  const raw = form.get(name);
  if (raw === undefined || raw.trim() === '') return fallback;
  const s = raw.trim();
  if (!/^-?\d{1,10}$/.test(s)) throw bad(`\`${name}\` must be an integer, got \`${s.slice(0, 40)}\``);
  const n = Number(s);
  if (n < min || n > max) throw bad(`\`${name}\` must be from ${min} to ${max}, got ${n}`);
  return n;
}

/**
 * `POST /add_node` (`host`, `port`, `cpus`, `cluster`, `id`): asks each selected cluster to
 * allocate the node and answers at once with the fields echoed (JSON, unlike dispy's text/html).
 * CPUs are ignored for a wildcard or a SharedJobCluster, and the answer says so.
 */
export function addNode(c: Context, ctx: ApiContext, form: FormFields): Response {
  const host = hostField(form);
  const port = intField(form, 'port', NODE_PORT, 0, 65535) || NODE_PORT;
  const cpus = intField(form, 'cpus', 0, -65536, 65536);
  const clusterName = form.get('cluster') ?? '';
  const id = (form.get('id') ?? null)?.slice(0, 256) ?? null;
  const views = ctx.registry.select(clusterName);
  if (views.length === 0 && clusterName !== '' && clusterName !== '*')
    throw new DispyError('DISPY_ERR_NOT_FOUND', `no cluster named ${clusterName.slice(0, 100)}`);
  const wildcard = host.includes('*');
  const notes: string[] = [];
  if (wildcard && cpus !== 0) notes.push('CPUs are ignored for a wildcard');
  let sharedIgnored = false;
  for (const view of views) {
    const shared = view.shared;
    if (shared && cpus !== 0) sharedIgnored = true;
    const spec = wildcard || shared || cpus === 0 ? { host, port } : { host, port, cpus };
    const allocate = view.cluster.allocateNode;
    if (!allocate) continue;
    void allocate.call(view.cluster, spec).then(
      (r) => {
        if (r !== 0) ctx.log.warn({ cluster: view.name, host, port }, 'add_node: the node could not be allocated');
      },
      (err: unknown) => ctx.log.warn({ cluster: view.name, host, err: (err as Error).message }, 'add_node failed'),
    );
  }
  if (sharedIgnored) notes.push('CPUs are ignored for a SharedJobCluster');
  const body: Record<string, unknown> = { host, port, cpus, cluster: clusterName, id, cpus_ignored: notes.length > 0 };
  if (notes.length) body.message = notes.join('; ');
  return jsonText(c, JSON.stringify(body));
}

function nodesField(form: FormFields): string[] {
  const raw = form.get('nodes');
  if (raw === undefined || raw.trim() === '') throw bad('`nodes` is required (a JSON array of node addresses or names)');
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch {
    throw bad('`nodes` must be a JSON array of node addresses or names');
  }
  if (!Array.isArray(list) || list.length === 0 || list.length > 10_000)
    throw bad('`nodes` must be a non-empty JSON array of node addresses or names');
  for (const n of list) if (typeof n !== 'string' || !HOST_RE.test(n)) throw bad('each entry of `nodes` must be a node address or name');
  return list as string[];
}

export type NodeAction = 'allocate' | 'deallocate' | 'close';

/**
 * `POST /allocate_node`, `/deallocate_node`, `/close_node` (`cluster`: a name, or `*` / '' for
 * every cluster; `nodes`: a JSON array): dispy's answer, the bitwise OR of the results (0 ok,
 * -1 if any failed or the cluster is unknown). `/close_node` takes `terminate=true` to kill the
 * node's running jobs.
 */
export async function nodeAction(c: Context, ctx: ApiContext, form: FormFields, action: NodeAction): Promise<Response> {
  const list = nodesField(form);
  const views = ctx.registry.select(form.get('cluster'));
  if (views.length === 0) return jsonText(c, '-1');
  const terminate = form.get('terminate') === 'true';
  const calls: Promise<number>[] = [];
  for (const view of views) {
    for (const host of list) {
      const cl = view.cluster;
      const call = async (): Promise<number> => {
        if (action === 'allocate') {
          // Nodes some cluster knows (by address or name), at the port they use: a name posted
          // here is never looked up in DNS (new hosts come through /add_node).
          const ip = resolveNode(ctx, host).find((a) => knownPort(ctx, a) !== undefined);
          if (!cl.allocateNode || ip === undefined) return -1;
          return cl.allocateNode({ host: ip, port: knownPort(ctx, ip)! });
        }
        if (action === 'deallocate') return cl.deallocateNode ? cl.deallocateNode(host) : -1;
        return cl.closeNode ? cl.closeNode(host, { terminatePending: terminate }) : -1;
      };
      calls.push(
        call().then(
          (r) => (typeof r === 'number' ? r : -1),
          (err: unknown) => {
            ctx.log.warn({ cluster: view.name, host, action, err: (err as Error).message }, 'node action failed');
            return -1;
          },
        ),
      );
    }
  }
  const results = await Promise.all(calls);
  return jsonText(c, String(results.reduce((a, r) => a | r, 0)));
}

function knownPort(ctx: ApiContext, host: string): number | undefined {
  for (const ip of resolveNode(ctx, host))
    for (const v of ctx.registry.views) {
      const n = v.node(ip);
      if (n && n.port > 0) return n.port;
    }
  return undefined;
}

/**
 * `POST /update` (`timeout` seconds, `show_job_args`): sets what newly loaded pages start with
 * and whether `/node_info` shows job arguments; answers with the settings (dispy sent nothing).
 */
export function update(c: Context, ctx: ApiContext, form: FormFields): Response {
  const t = form.get('timeout');
  if (t !== undefined && t.trim() !== '') {
    const n = Number(t.trim());
    if (!/^-?\d+(\.\d+)?$/.test(t.trim()) || !Number.isFinite(n))
      throw bad(`\`timeout\` must be a number of seconds, got \`${t.slice(0, 40)}\``);
    ctx.settings.pollSec = n < 1 ? 0 : Math.min(Math.floor(n), 86_400);
  }
  const s = form.get('show_job_args');
  if (s !== undefined) ctx.settings.showJobArgs = s === 'true';
  return jsonText(c, JSON.stringify({ timeout: ctx.settings.pollSec, show_job_args: ctx.settings.showJobArgs }));
}

/**
 * `POST /set_cpus` (fields `<ip>=<cpus>`): sets each node's CPUs in every cluster that uses it;
 * answers `{ ip: new cpus or -1 }`, leaving out addresses no cluster knows.
 */
export async function setCpus(c: Context, ctx: ApiContext, form: FormFields): Promise<Response> {
  const wanted = new Map<string, number>();
  for (const [k, v] of form.entries()) {
    const s = v.trim();
    if (!/^-?\d{1,6}$/.test(s)) throw bad(`CPUs for \`${k.slice(0, 60)}\` must be an integer, got \`${s.slice(0, 40)}\``);
    wanted.set(k, Number(s));
  }
  const out: Record<string, number> = {};
  await Promise.all(
    [...wanted].map(async ([ip, cpus]) => {
      let result: number | undefined;
      for (const v of ctx.registry.views) {
        if (!v.hasNode(ip)) continue;
        let r = -1;
        try {
          r = v.cluster.setNodeCpus ? await v.cluster.setNodeCpus(ip, cpus) : -1;
        } catch (err) {
          ctx.log.warn({ cluster: v.name, ip, err: (err as Error).message }, 'set_cpus failed');
        }
        // One cluster refusing makes the answer -1; otherwise the new CPU count.
        result = result === -1 ? -1 : typeof r === 'number' ? r : -1;
      }
      if (result !== undefined) out[ip] = result;
    }),
  );
  return jsonText(c, JSON.stringify(out));
}
