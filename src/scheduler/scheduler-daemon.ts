/**
 * `dispyts scheduler`: lets several client programs (SharedJobCluster) share one set of nodes.
 * Toward nodes it is one ordinary client process: each client computation runs as one real
 * JobCluster here, and all of them share this process's node connections and CPU ledgers, with
 * a dispatch policy (fsfs, fair, early) choosing which computation gets each free CPU. Toward
 * clients it serves port 9702, authenticated with the cluster secret.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import pino, { type Logger } from 'pino';
import { setDispatchPolicy, type DispatchPolicy } from '../client/dispatcher.js';
import type { JobCluster, JobClusterOptions } from '../client/job-cluster.js';
import type { ClusterNote } from '../httpd/cluster-view.js';
import type { NodeAllocate } from '../client/node-allocate.js';
import { DispyError, Errors } from '../errors.js';
import { FileStore } from '../host/file-store.js';
import { StateDir } from '../host/state-dir.js';
import { acceptChannel, refuseConnection, type Channel } from '../protocol/channel.js';
import { SCHEDULER_PORT } from '../protocol/constants.js';
import { HandshakeGate } from '../protocol/handshake-gate.js';
import { toSchedulerSchema, type FromScheduler, type ToScheduler } from '../protocol/scheduler-messages.js';
import { isLoopbackHost } from '../protocol/loopback.js';
import { resolveSecret } from '../protocol/secret.js';
import { missedBeatsMs, SilenceWatch } from '../protocol/silence-watch.js';
import {
  CLI_NAMES,
  clientCertRefusal,
  describeTlsError,
  loadTls,
  serverTlsOptions,
  type TlsMaterial,
  type TlsOptionNames,
} from '../protocol/tls.js';
import { Admission, type Admittable } from './admission.js';
import { ClientSession } from './client-session.js';
import type { SharedComputation } from './shared-computation.js';
import { ClusterNames } from './cluster-names.js';
import { parseSchedulerNodes } from './node-scope.js';
import type { SchedulerContext } from './scheduler-context.js';
import { CLIENT_PULSE_INTERVAL, checkSchedulerOptions, type SchedulerDaemonOptions } from './scheduler-options.js';

export { CLIENT_PULSE_INTERVAL, type SchedulerDaemonOptions } from './scheduler-options.js';

/** The scheduler's record in its state directory. */
const PID_FILE = 'scheduler.json';
/** How often (ms) clients are checked for silence. */
const SILENCE_CHECK_MS = 500;

type SchedulerEvents = {
  /** An internal cluster started: show it (`exclusive` as its computation). */
  cluster: [JobCluster, boolean];
  /** What to show beside a cluster changed (its client is gone, back, or it closed for that). */
  'cluster-note': [JobCluster, ClusterNote | null, string];
  /** A closed cluster is no longer kept: stop showing it. */
  'cluster-removed': [JobCluster];
};

const NODE_TLS_NAMES: TlsOptionNames = { certFile: '--node-cert-file', keyFile: '--node-key-file', caFile: '--node-ca-file' };

export class SchedulerDaemon extends EventEmitter<SchedulerEvents> {
  readonly schedulerId = randomBytes(12).toString('hex');
  readonly log: Logger;
  readonly host: string;
  readonly name: string;
  readonly policy: DispatchPolicy;
  readonly cooperative: boolean;
  readonly nodes: readonly NodeAllocate[];
  port: number;
  /** Largest message to or from a client, in bytes (--max-message-size). */
  readonly maxMessageSize: number;
  /** Resolves once the scheduler stopped. */
  readonly stopped: Promise<void>;
  readonly #gate: HandshakeGate;
  /** Handshakes in progress, by the client's `address:port`: what to call once one authenticated. */
  readonly #handshakes = new Map<string, () => void>();

  readonly #opts: SchedulerDaemonOptions;
  readonly #clusterSecret: Buffer;
  readonly #tls: TlsMaterial | null;
  readonly #prefix: string;
  readonly #clientPulse: number;
  readonly #admission = new Admission<Admittable>();
  readonly #names = new ClusterNames();
  readonly #sessions = new Set<ClientSession>();
  /** Closed clusters still shown, oldest first. */
  readonly #closed: { cluster: JobCluster; name: string }[] = [];
  /** Connections gone whose computations run on for the zombie interval. */
  readonly #zombies = new Set<ClientSession>();
  #stateDir: StateDir | null = null;
  #files: FileStore | null = null;
  #server: net.Server | null = null;
  #timers: NodeJS.Timeout[] = [];
  readonly #silence = new SilenceWatch({ roundMs: SILENCE_CHECK_MS });
  #stopping: Promise<void> | null = null;
  #resolveStopped!: () => void;
  readonly #ctx: SchedulerContext;

  constructor(opts: SchedulerDaemonOptions = {}) {
    super();
    this.#opts = opts;
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port ?? SCHEDULER_PORT;
    this.name = opts.name ?? os.hostname();
    this.log = opts.logger ?? pino({ level: opts.logLevel ?? 'info', base: { scheduler: this.host } }, pino.destination(2));
    this.maxMessageSize = checkSchedulerOptions(opts, this.host, this.port);
    this.#gate = new HandshakeGate({ max: opts.maxHandshakes, perPeer: opts.maxHandshakesPerPeer, log: this.log, what: 'scheduler' });
    this.policy = opts.policy ?? 'fsfs';
    this.cooperative = opts.cooperative ?? false;
    this.nodes = parseSchedulerNodes(opts.nodes?.length ? opts.nodes : ['*']);
    this.#clientPulse = opts.pulseInterval ?? CLIENT_PULSE_INTERVAL;
    this.#clusterSecret = resolveSecret(opts.clusterSecret);
    // Unusable TLS files stop the scheduler here, before it listens.
    this.#tls = loadTls({ certFile: opts.certFile, keyFile: opts.keyFile, caFile: opts.caFile }, 'node', CLI_NAMES);
    loadTls({ certFile: opts.nodeCertFile, keyFile: opts.nodeKeyFile, caFile: opts.nodeCaFile }, 'client', NODE_TLS_NAMES);
    resolveSecret(opts.nodeSecret);
    this.#prefix = opts.destPathPrefix ?? join(os.tmpdir(), 'dispyts', 'scheduler');
    this.stopped = new Promise((r) => (this.#resolveStopped = r));
    const self = this;
    this.#ctx = {
      log: this.log,
      nodes: this.nodes,
      admission: this.#admission,
      names: this.#names,
      get files(): FileStore {
        return self.#files!;
      },
      cooperative: this.cooperative,
      maxFileSize: opts.maxFileSize ?? 0,
      maxMessageSize: this.maxMessageSize,
      zombieInterval: opts.zombieInterval ?? 3600,
      get stopping(): boolean {
        return self.#stopping !== null;
      },
      clusterOptions: () => this.#clusterOptions(),
      clusterStarted: (cluster, exclusive) => this.emit('cluster', cluster, exclusive),
      clusterNote: (cluster, note, text) => this.emit('cluster-note', cluster, note, text),
      clusterClosed: (cluster, name) => this.#clusterClosed(cluster, name),
    };
  }

  /** `'mutual'` when clients must present a certificate, `'tls'`, or `'off'` (plain TCP). */
  get tls(): 'off' | 'tls' | 'mutual' {
    return !this.#tls ? 'off' : this.#tls.ca ? 'mutual' : 'tls';
  }

  /** Client connections open now. */
  get clients(): number {
    return this.#sessions.size;
  }

  #clusterOptions(): JobClusterOptions {
    const o = this.#opts;
    return {
      host: this.host,
      // Jobs come from clients within our own limit.
      maxArgsSize: this.maxMessageSize,
      ...(o.nodeSecret ? { secret: o.nodeSecret } : {}),
      ...(o.nodeCertFile ? { certFile: o.nodeCertFile } : {}),
      ...(o.nodeKeyFile ? { keyFile: o.nodeKeyFile } : {}),
      ...(o.nodeCaFile ? { caFile: o.nodeCaFile } : {}),
      ...(o.pulseInterval ? { pulseInterval: o.pulseInterval } : {}),
      ...(o.pingInterval ? { pingInterval: o.pingInterval } : {}),
    };
  }

  #clusterClosed(cluster: JobCluster | null, name: string): void {
    if (!cluster) {
      // A computation that never ran has nothing to show: its name is free at once.
      this.#names.release(name);
      return;
    }
    this.#closed.push({ cluster, name });
    const keep = this.#opts.keepClosed ?? 16;
    while (this.#closed.length > keep) {
      const gone = this.#closed.shift()!;
      this.#names.release(gone.name);
      this.emit('cluster-removed', gone.cluster);
    }
  }

  /** Prepares the state directory and listens; resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    this.#prepareStateDir();
    this.#files = new FileStore(join(this.#stateDir!.path, 'computations'), this.#opts.maxFileSize ?? 0, this.log);
    setDispatchPolicy(this.policy);
    const server = this.#tls
      ? tls.createServer({ ...serverTlsOptions(this.#tls), noDelay: true }, (socket) => this.#acceptTls(socket))
      : net.createServer({ noDelay: true }, (socket) => void this.#accept(socket));
    this.#server = server;
    // Connections not yet authenticated are counted (and capped) before anything is read.
    const refused = new WeakSet<net.Socket>();
    server.prependListener('connection', (raw: net.Socket) => {
      const key = `${raw.remoteAddress}:${raw.remotePort}`;
      const release = this.#gate.admit(raw);
      if (!release) {
        refused.add(raw);
        return;
      }
      this.#handshakes.set(key, release);
      raw.once('close', () => {
        if (this.#handshakes.get(key) === release) this.#handshakes.delete(key);
      });
    });
    if (this.#tls) {
      server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
        // Refused by the handshake caps: logged there, once per address a while.
        const raw = (socket as unknown as { _parent?: net.Socket })._parent;
        if (raw && refused.has(raw)) return;
        this.log.warn(
          { peer: `${socket.remoteAddress}:${socket.remotePort}`, code: 'DISPY_ERR_TLS', reason: describeTlsError(err) },
          'TLS handshake with a client failed; connection refused',
        );
      });
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new DispyError('DISPY_ERR_LISTEN', `the scheduler cannot listen on ${this.host}:${this.port}: ${err.message}`, { cause: err }),
        ),
      );
      server.listen({ host: this.host, port: this.port, backlog: 128 }, () => {
        server.removeAllListeners('error');
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'server error'));
    this.port = (server.address() as net.AddressInfo).port;
    this.#writePidFile();
    this.#timers.push(setInterval(() => this.#pulse(), this.#clientPulse * 1000));
    this.#silence.reset();
    this.#timers.push(setInterval(() => this.#checkSilence(), SILENCE_CHECK_MS));
    if (isLoopbackHost(this.host) && this.nodes.every((n) => n.isWildcard)) {
      this.log.warn(
        { nodes: this.nodes.map((n) => n.host) },
        'a scheduler on a loopback address discovers no nodes (no UDP there): give --node with their addresses',
      );
    }
    this.log.info(
      {
        port: this.port,
        policy: this.policy,
        nodes: this.nodes.map((n) => `${n.host}:${n.port}`),
        cooperative: this.cooperative,
        tls: this.tls,
      },
      'scheduler ready',
    );
    return { host: this.host, port: this.port };
  }

  // ---- state directory ----

  /** `<prefix>/<host>`: a live scheduler there stops us; `--clean` wipes what a dead one left. */
  #prepareStateDir(): void {
    this.#stateDir = new StateDir({
      prefix: this.#prefix,
      host: this.host,
      command: 'scheduler',
      file: PID_FILE,
      clean: this.#opts.clean ?? false,
      mode: 0o700,
      log: this.log,
      held: (pid, dir) =>
        new DispyError(
          'DISPY_ERR_INVALID_OPTION',
          `another dispyts scheduler (pid ${pid}) uses ${dir}; stop it first or give another --dest-path-prefix`,
        ),
    });
    if (this.#opts.clean) return;
    let left = 0;
    try {
      left = readdirSync(join(this.#stateDir.path, 'computations')).length;
    } catch {
      left = 0;
    }
    if (left)
      this.log.warn(
        { dir: this.#stateDir.path, computations: left },
        'files of computations a previous scheduler left are kept; start with --clean to delete them',
      );
  }

  #writePidFile(): void {
    this.#stateDir?.record({ host: this.host, port: this.port });
  }

  // ---- clients ----

  #acceptTls(socket: tls.TLSSocket): void {
    const refusal = clientCertRefusal(this.#tls!, socket);
    if (refusal === null) {
      void this.#accept(socket);
      return;
    }
    this.log.warn(
      { peer: `${socket.remoteAddress}:${socket.remotePort}`, code: 'DISPY_ERR_TLS', reason: refusal },
      'client certificate refused; connection refused',
    );
    refuseConnection(socket, new DispyError('DISPY_ERR_TLS', `scheduler ${this.host} refused this client: ${refusal}`));
  }

  /** The connection from `key` authenticated (or failed): it no longer counts as a handshake. */
  #handshakeOver(key: string): void {
    this.#handshakes.get(key)?.();
    this.#handshakes.delete(key);
  }

  async #accept(socket: net.Socket): Promise<void> {
    // Refused by the handshake caps (and logged there).
    if (socket.destroyed) return;
    if (this.#stopping !== null) {
      socket.destroy();
      return;
    }
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    let ch: Channel<ToScheduler, FromScheduler>;
    try {
      ch = await acceptChannel<ToScheduler, FromScheduler>(socket, {
        secret: this.#clusterSecret,
        schema: toSchedulerSchema,
        role: 'scheduler',
        maxFrame: this.maxMessageSize,
      });
      this.#handshakeOver(key);
    } catch (err) {
      this.#handshakeOver(key);
      this.log.warn(
        { peer: `${socket.remoteAddress}:${socket.remotePort}`, code: (err as DispyError).code, reason: (err as Error).message },
        'client connection refused',
      );
      return;
    }
    if (this.#stopping !== null) {
      ch.close(Errors.schedulerShuttingDown());
      return;
    }
    const session = new ClientSession(this.#ctx, ch, (computeId) => this.#findComputation(computeId));
    this.#sessions.add(session);
    this.log.info({ peer: ch.peer, clientId: ch.peerHello?.clientId }, 'client connected');
    ch.on('message', (msg) => session.onMessage(msg));
    ch.on('close', (reason) => {
      this.#sessions.delete(session);
      // A malformed or unauthentic frame lands here: the reason names it.
      if (reason) this.log.warn({ peer: ch.peer, code: reason.code, reason: reason.message }, 'client connection closed');
      else this.log.info({ peer: ch.peer }, 'client disconnected');
      if (!this.#stopping && session.comps.size) {
        this.#zombies.add(session);
        session.onClosed();
      }
    });
    ch.send({
      t: 'sched-info',
      schedulerId: this.schedulerId,
      name: this.name.slice(0, 256),
      policy: this.policy,
      cooperative: this.cooperative,
      pulseInterval: this.#clientPulse,
      zombieInterval: this.#ctx.zombieInterval,
      maxMessageSize: this.maxMessageSize,
    });
  }

  #pulse(): void {
    for (const s of this.#sessions) s.send({ t: 'pulse' });
  }

  /** A computation of any client connection, live or gone. */
  #findComputation(computeId: string): SharedComputation | undefined {
    for (const s of [...this.#zombies, ...this.#sessions]) {
      const c = s.comps.get(computeId);
      if (c) return c;
    }
    return undefined;
  }

  /** A client silent for 5 of its heartbeat intervals is treated as gone. */
  #checkSilence(): void {
    for (const z of this.#zombies) if ([...z.comps.values()].every((c) => c.state === 'closed')) this.#zombies.delete(z);
    this.#silence.round(this.#sessions, {
      heard: (s) => s,
      limitMs: (s) => (s.beatEvery <= 0 ? Number.POSITIVE_INFINITY : Math.max(1000, missedBeatsMs(s.beatEvery))),
      gone: (s, silent) =>
        s.channel.close(
          new DispyError(
            'DISPY_ERR_TIMEOUT',
            `client ${s.peer} sent nothing for ${(silent / 1000).toFixed(1)} s (5 × its heartbeat interval)`,
          ),
        ),
    });
  }

  // ---- shutdown ----

  /**
   * Closes every computation (queued jobs end Cancelled, running ones Terminated, each with
   * `DISPY_ERR_CLUSTER_CLOSED` and the reason), tells each client (`closed`), closes the
   * connections cleanly and stops.
   */
  stop(reason = 'stopped'): Promise<void> {
    this.#stopping ??= this.#doStop(reason);
    return this.#stopping;
  }

  async #doStop(reason: string): Promise<void> {
    this.log.info({ reason }, 'scheduler stopping');
    this.#server?.close();
    for (const t of this.#timers) clearInterval(t);
    const why = `the scheduler is shutting down (${reason})`;
    this.#admission.rejectAll(new DispyError('DISPY_ERR_CONNECTION', why));
    const comps = [...this.#sessions, ...this.#zombies].flatMap((s) => [...s.comps.values()]);
    await Promise.all(
      comps.map((c) =>
        c
          .close(true, { code: 'DISPY_ERR_CLUSTER_CLOSED', reason: why })
          .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'closing a computation failed')),
      ),
    );
    for (const s of this.#sessions) s.channel.end();
    setDispatchPolicy(null);
    this.#stateDir?.remove();
    this.log.info('scheduler stopped');
    this.#resolveStopped();
  }
}
