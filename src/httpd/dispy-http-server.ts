/**
 * DispyHTTPServer: the seed's HTTP server, embedded in the client program, to monitor and manage
 * its clusters from a browser. It follows each cluster's event stream (never replacing the
 * user's callbacks), keeps a view of it updated event by event, and serves dispy's JSON API,
 * Server-Sent Events and the document root, safe by default (see security.ts).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { getRequestListener } from '@hono/node-server';
import pino, { type Logger } from 'pino';
import type { DispyJob } from '../client/dispy-job.js';
import type { DispyNode } from '../client/dispy-node.js';
import type { DispyStatus } from '../client/status.js';
import { DispyError, invalidOption } from '../errors.js';
import { HTTP_PORT } from '../protocol/constants.js';
import { Access } from './access.js';
import type { PageSettings } from './api.js';
import { Audit } from './audit.js';
import type { ClusterNote, ClusterView, NodeChange, ViewedCluster, ViewObserver } from './cluster-view.js';
import { DEFAULT_EVENT_LOG_SIZE, EventLog } from './event-log.js';
import { DEFAULT_MAX_BODY } from './form.js';
import { DEFAULT_JOB_HISTORY_SIZE, JobHistory } from './job-history.js';
import { ServerCounters } from './metrics.js';
import type { NodeJson } from './node-json.js';
import { createApp, type RouteContext } from './routes.js';
import { checkAllowedHosts, ConnectionCaps, HostPolicy, ProxyPolicy, StreamCaps } from '../protocol/http-guard.js';
import type { AuthPolicy } from './security.js';
import { SseHub } from './sse.js';
import { StaticFiles } from './static-files.js';
import { ViewRegistry } from './view-registry.js';
import { DEFAULT_HTTP_LIMITS, type DispyHTTPServerOptions, type HttpServerAddress, validate } from './server-options.js';

export { DEFAULT_HTTP_LIMITS, type DispyHTTPServerOptions, type HttpLimits, type HttpServerAddress } from './server-options.js';

type StatusListener = (e: { status: DispyStatus; node: DispyNode | null; job: DispyJob | null }) => void;

interface Expected {
  status: DispyStatus;
  node: DispyNode | null;
  job: DispyJob | null;
}

function isCluster(v: unknown): v is ViewedCluster {
  return !!v && typeof v === 'object' && typeof (v as ViewedCluster).on === 'function' && typeof (v as ViewedCluster).off === 'function';
}

function nodeLabel(n: NodeJson): string {
  return n.name && n.name !== n.ip_addr ? `${n.ip_addr} (${n.name})` : n.ip_addr;
}

/** A node change in a sentence for the event log. */
function nodeChangeText(cluster: string, n: NodeJson, change: NodeChange): string {
  switch (change.kind) {
    case 'arrived':
      return `Node ${nodeLabel(n)} ${change.rejoined ? 'rejoined' : 'joined'} cluster ${cluster} with ${n.cpus} CPU${n.cpus === 1 ? '' : 's'}`;
    case 'left':
      return `Node ${nodeLabel(n)} left cluster ${cluster} (closed, deallocated or stopped)`;
    case 'died':
      return `Node ${nodeLabel(n)} was lost by cluster ${cluster} with ${change.jobs} running job${change.jobs === 1 ? '' : 's'} (abandoned or re-queued)`;
    case 'cpus':
      return `CPUs of node ${nodeLabel(n)} in cluster ${cluster}: ${change.from} → ${change.to}`;
  }
}

const CHANGE_KIND = { arrived: 'node-arrived', left: 'node-left', died: 'node-died', cpus: 'node-cpus' } as const;

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new DispyError('DISPY_ERR_TLS', `cannot read the HTTPS ${what} ${path}: ${(err as Error).message}`);
  }
}

/** An address for a URL: brackets for IPv6. */
function urlHost(h: string): string {
  return h.includes(':') ? `[${h}]` : h;
}

/** Addresses of this machine's interfaces other than loopback (for the login URL). */
function externalAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces()))
    for (const i of list ?? []) if (!i.internal && i.family === 'IPv4') out.push(i.address);
  return out;
}

export class DispyHTTPServer {
  /** Resolves once the server listens (to its address); rejects with DISPY_ERR_LISTEN. */
  readonly listening: Promise<HttpServerAddress>;
  readonly #registry: ViewRegistry;
  readonly #events: EventLog;
  readonly #history: JobHistory;
  readonly #settings: PageSettings;
  readonly #pollSec: number;
  readonly #log: Logger;
  readonly #auth: AuthPolicy;
  readonly #server: http.Server | https.Server;
  readonly #sse: SseHub;
  readonly #secure: boolean;
  readonly #host: string;
  /** The trusted proxy's public URL (its origin), or null. */
  readonly #publicUrl: string | null;
  readonly #listeners = new Map<ViewedCluster, StatusListener>();
  /** Clusters removed with delCluster: a chained clusterStatus call does not bring them back. */
  readonly #deleted = new WeakSet<ViewedCluster>();
  /** The event a clusterStatus call started following a cluster with (see clusterStatus). */
  readonly #expected = new Map<ViewedCluster, Expected>();
  #address: HttpServerAddress | null = null;
  #stopped = false;
  #shutdown: Promise<void> | null = null;

  /**
   * @param cluster the cluster to show (JobCluster or SharedJobCluster), or null to add
   *   clusters later with addCluster.
   */
  constructor(cluster: ViewedCluster | null, options: DispyHTTPServerOptions = {}) {
    validate(options);
    if (cluster !== null && cluster !== undefined && !isCluster(cluster))
      throw invalidOption('cluster', 'a JobCluster, a SharedJobCluster or null', cluster);
    const host = options.host ?? '';
    const port = options.port ?? HTTP_PORT;
    this.#host = host;
    this.#pollSec = options.pollSec ?? 10;
    this.#settings = { pollSec: this.#pollSec, showJobArgs: options.showJobArgs ?? true };
    this.#log = options.logger ?? pino({ level: options.logLevel ?? 'info', base: { component: 'httpd' } }, pino.destination(2));
    const access = new Access(host, options.auth);
    this.#auth = access.policy;
    const proxy = new ProxyPolicy(options.trustedProxy);
    checkAllowedHosts(host, options.allowedHosts ?? [], options.trustedProxy, 'allowedHosts');
    const hosts = new HostPolicy(host, options.allowedHosts ?? []);
    if (proxy.publicHost) hosts.allow(proxy.publicHost);
    this.#publicUrl = proxy.publicOrigin;
    const limits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
    const connections = new ConnectionCaps({ connections: limits.connections, connectionsPerAddress: limits.connectionsPerAddress }, (a) =>
      proxy.isProxy(a),
    );
    const streams = new StreamCaps({
      total: limits.eventStreams,
      perAddress: limits.eventStreamsPerAddress,
      perUser: limits.eventStreamsPerUser,
    });
    this.#events = new EventLog(options.eventLogSize ?? DEFAULT_EVENT_LOG_SIZE);
    this.#history = new JobHistory(options.jobHistorySize ?? DEFAULT_JOB_HISTORY_SIZE);
    const observer: ViewObserver = {
      jobEnded: (view, status, node, job) => this.#history.record(view.name, status, node, job),
      nodeChanged: (view, n, change) =>
        this.#events.add({
          kind: CHANGE_KIND[change.kind],
          cluster: view.name,
          node: n.ip_addr,
          text: nodeChangeText(view.name, n, change),
        }),
    };
    this.#registry = new ViewRegistry(undefined, observer);
    this.#sse = new SseHub(this.#registry, this.#events);
    this.#secure = options.certFile !== undefined;
    const counters = new ServerCounters();

    const ctx: RouteContext = {
      registry: this.#registry,
      settings: this.#settings,
      log: this.#log,
      secure: this.#secure,
      access,
      audit: new Audit(this.#log, this.#events, counters),
      hosts,
      proxy,
      streams,
      sse: this.#sse,
      files: new StaticFiles(options.documentRoot),
      maxBody: options.maxBodyBytes ?? DEFAULT_MAX_BODY,
      metricsPublic: options.metrics === 'public',
      history: this.#history,
      events: this.#events,
      counters,
      sseViewers: () => this.#sse.size,
      usersEnabled: access.users !== null,
      cursorCookie: () => `dispyts_cursor_${this.#address?.port ?? port}`,
      tokenCookie: () => `dispyts_token_${this.#address?.port ?? port}`,
      sessionCookie: () => `dispyts_session_${this.#address?.port ?? port}`,
    };
    const app = createApp(ctx);
    const listener = connections.guard(
      getRequestListener(app.fetch, {
        // Requests node-server cannot even parse (bad Host, bad target): 400 JSON.
        errorHandler: () =>
          new Response(JSON.stringify({ error: { code: 'DISPY_ERR_BAD_REQUEST', message: 'malformed request' } }), {
            status: 400,
            headers: { 'Content-Type': 'application/json; charset=utf-8' },
          }),
      }),
    );
    if (this.#secure) {
      const cert = readPem(options.certFile!, 'certificate');
      const key = options.keyFile ? readPem(options.keyFile, 'key') : cert;
      try {
        this.#server = https.createServer({ key, cert }, listener);
      } catch (err) {
        throw new DispyError('DISPY_ERR_TLS', `cannot use the HTTPS key and certificate: ${(err as Error).message}`);
      }
    } else this.#server = http.createServer(listener);
    connections.attach(this.#server);
    // Bounded header and request times: a client trickling bytes cannot hold a socket forever.
    this.#server.headersTimeout = 20_000;
    this.#server.requestTimeout = 60_000;

    if (cluster) this.addCluster(cluster);
    if (this.#auth.insecure)
      this.#log.warn(
        { host: host || '*' },
        'HTTP server listens beyond loopback with auth: false: anyone who can reach it can manage the cluster',
      );

    // Plain passwords are hashed (scrypt) before the server listens.
    this.listening = access.ready.then(
      () =>
        new Promise<HttpServerAddress>((resolve, reject) => {
          const onError = (err: Error): void => {
            reject(
              new DispyError('DISPY_ERR_LISTEN', `HTTP server cannot listen on ${urlHost(host || '*')}:${port}: ${err.message}`, {
                cause: err,
              }),
            );
          };
          this.#server.once('error', onError);
          this.#server.listen(port, host === '' ? undefined : host, () => {
            this.#server.off('error', onError);
            this.#server.on('error', (err) => this.#log.error({ err: err.message }, 'HTTP server error'));
            const a = this.#server.address() as AddressInfo;
            hosts.bound(a.address);
            const shown = host === '' || a.address === '0.0.0.0' || a.address === '::' ? 'localhost' : a.address;
            this.#address = { host: a.address, port: a.port, url: `${this.#secure ? 'https' : 'http'}://${urlHost(shown)}:${a.port}` };
            this.#logListening(this.#address);
            resolve(this.#address);
          });
        }),
    );
    // Awaiting `listening` is optional: a failure is logged, never an unhandled rejection.
    this.listening.catch((err: DispyError) => this.#log.error({ code: err.code }, err.message));
  }

  #logListening(a: HttpServerAddress): void {
    const scheme = this.#secure ? 'https' : 'http';
    this.#log.info({ url: a.url }, 'HTTP server listening');
    if (this.#auth.generated && this.#auth.token) {
      if (this.#publicUrl) this.#log.info(`HTTP server login URL: ${this.#publicUrl}/?token=${this.#auth.token}`);
      const hosts = this.#host === '' ? [...externalAddresses(), 'localhost'] : [this.#host];
      for (const h of hosts) this.#log.info(`HTTP server login URL: ${scheme}://${urlHost(h)}:${a.port}/?token=${this.#auth.token}`);
    }
  }

  /** The event log (node arrivals, departures, deaths, CPU changes, actions, sign-ins), newest last. */
  get eventLog(): EventLog {
    return this.#events;
  }

  /** The finished-job history the Jobs page shows. */
  get jobHistory(): JobHistory {
    return this.#history;
  }

  /** Where the server listens (null before it does). */
  get address(): HttpServerAddress | null {
    return this.#address;
  }

  /** The token browsers and scripts must present, or null when none is required. */
  get token(): string | null {
    return this.#auth.token;
  }

  /** Names of the clusters shown, in order. */
  get clusterNames(): string[] {
    return [...this.#registry.views].map((v) => v.name);
  }

  /**
   * Shows `cluster` too (under its name, or its name with a suffix if taken); a cluster shown
   * already is left as it is. Returns the name it is shown under.
   */
  addCluster(cluster: ViewedCluster): string {
    if (!isCluster(cluster)) throw invalidOption('cluster', 'a JobCluster or a SharedJobCluster', cluster);
    if (this.#stopped) throw new DispyError('DISPY_ERR_CLUSTER_CLOSED', 'the HTTP server is shut down');
    this.#deleted.delete(cluster);
    return this.#follow(cluster).name;
  }

  /**
   * @internal Sets (or clears, with null) what the pages show beside `cluster`'s name, and logs
   * it in the event log (the scheduler's monitor: "client gone; closes at …").
   */
  _setClusterNote(cluster: ViewedCluster, note: ClusterNote | null, logText: string): void {
    const view = this.#registry.get(cluster);
    if (!view || this.#stopped) return;
    view.setNote(note);
    this.#events.add({ kind: 'cluster', cluster: view.name, text: `Cluster ${view.name}: ${logText}` });
  }

  /** Stops showing `cluster`; viewers see it removed. Returns false if it was not shown. */
  delCluster(cluster: ViewedCluster): boolean {
    if (!isCluster(cluster)) return false;
    this.#deleted.add(cluster);
    this.#expected.delete(cluster);
    const l = this.#listeners.get(cluster);
    if (l) {
      cluster.off('status', l);
      this.#listeners.delete(cluster);
    }
    const removed = this.#registry.remove(cluster);
    if (removed) this.#events.add({ kind: 'cluster', cluster: removed.name, text: `No longer showing cluster ${removed.name}` });
    return removed !== undefined;
  }

  #follow(cluster: ViewedCluster): ClusterView {
    const existing = this.#registry.get(cluster);
    if (existing) return existing;
    const view = this.#registry.add(cluster);
    this.#events.add({ kind: 'cluster', cluster: view.name, text: `Following cluster ${view.name}` });
    const listener: StatusListener = (e) => {
      const expected = this.#expected.get(cluster);
      if (expected) {
        this.#expected.delete(cluster);
        if (expected.status !== e.status || expected.node !== e.node || expected.job !== e.job)
          view.apply(expected.status, expected.node, expected.job);
      }
      view.apply(e.status, e.node, e.job);
    };
    cluster.on('status', listener);
    this.#listeners.set(cluster, listener);
    view.bootstrap();
    if (view.nodeCount)
      this.#events.add({
        kind: 'cluster',
        cluster: view.name,
        text: `Cluster ${view.name} has ${view.nodeCount} node${view.nodeCount === 1 ? '' : 's'} already`,
      });
    return view;
  }

  /**
   * dispy's status callback, for the seed's patterns: a user's `clusterStatus` that chains to
   * it, or another cluster created with `clusterStatus: httpServer.clusterStatus`. Events of a
   * cluster the server follows already are ignored (its subscription delivers them); an event
   * of another cluster makes the server follow that cluster (found through the job's or node's
   * `cluster`), so nothing is counted twice. A bound function: pass it as it is.
   */
  readonly clusterStatus = (status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void => {
    if (this.#stopped) return;
    const cluster = (job?.cluster ?? node?.cluster) as unknown;
    if (!isCluster(cluster) || this.#registry.has(cluster) || this.#deleted.has(cluster)) return;
    this.#follow(cluster);
    // The cluster emits this same event to its listeners right after its callback returns, so
    // the new subscription normally delivers it; if it does not, apply it here.
    this.#expected.set(cluster, { status, node, job });
    queueMicrotask(() => {
      const expected = this.#expected.get(cluster);
      if (!expected) return;
      this.#expected.delete(cluster);
      this.#registry.get(cluster)?.apply(expected.status, expected.node, expected.job);
    });
  };

  /**
   * Shuts the server down: with `wait` (the default) it first waits `pollSec` seconds so
   * browsers get the last update; then every viewer of `/events` gets its last changes and a
   * `shutdown` event, and every connection is closed. Clusters are left as they are.
   */
  shutdown(options: { wait?: boolean } = {}): Promise<void> {
    if (this.#shutdown !== null) return this.#shutdown;
    const wait = options.wait ?? true;
    this.#shutdown = (async () => {
      const listened = await this.listening.then(
        () => true,
        () => false,
      );
      if (wait && listened) await new Promise((r) => setTimeout(r, this.#pollSec * 1000));
      this.#stopped = true;
      for (const [cluster, l] of this.#listeners) cluster.off('status', l);
      this.#listeners.clear();
      this.#expected.clear();
      // No new connections; idle keep-alive ones go now, streams after their last event.
      const closed = new Promise<void>((r) => this.#server.close(() => r()));
      this.#server.closeIdleConnections();
      await this.#sse.closeAll();
      this.#server.closeAllConnections();
      await closed;
      for (const v of [...this.#registry.views]) this.#registry.remove(v.cluster);
      this.#log.info('HTTP server shut down');
    })();
    return this.#shutdown;
  }
}
