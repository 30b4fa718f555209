/**
 * `dispyts node`: accepts authenticated clients, serves one client process at a time, runs its
 * jobs on pre-spawned runners (one process group per running job, one client program per
 * runner) and reports its resources. Its sizes are bounded and announced: messages up to
 * `--max-message-size`, a few KiB per connection before authentication, a capped number of such
 * connections; and every process it starts for jobs carries its tag, so none outlives it
 * (process-tag.ts).
 */
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { DispyError, invalidOption } from '../errors.js';
import { type Channel, acceptChannel, refuseConnection } from '../protocol/channel.js';
import { DEFAULT_MAX_FRAME, MIN_MAX_FRAME, NODE_PORT } from '../protocol/constants.js';
import { HandshakeGate, checkHandshakeCaps } from '../protocol/handshake-gate.js';
import { clientMessageSchema, type ClientMessage, type Computation, type JobDone, type NodeMessage } from '../protocol/messages.js';
import { resolveSecret } from '../protocol/secret.js';
import { CLI_NAMES, clientCertRefusal, describeTlsError, loadTls, serverTlsOptions, type TlsMaterial } from '../protocol/tls.js';
import { UndeliveredStore, type UndeliveredLimits } from './undelivered-store.js';
import { FileStore } from './file-store.js';
import { isDispytsDaemon, isJobRunner, readPidFile, removePidFile, writePidFile } from './pid-file.js';
import { findTagged, killTagged } from './process-tag.js';
import { HostMetrics, platformString } from './host-metrics.js';
import { RunnerPool, type AssignedJob, type Runner, type RunnerOutcome } from './runner-pool.js';
import { NodeAnnouncer } from './node-announcer.js';
import { DISCOVERY_MODES, type DiscoveryMode } from '../protocol/discovery.js';
import { keepJobCode } from './job-code.js';
import { FileRelay } from './send-file-relay.js';

export interface NodeDaemonOptions {
  /**
   * Address to listen on; the node's identity.
   * @default '127.0.0.1'
   * @example host: '192.0.2.21'
   */
  host?: string;
  /**
   * TCP port; 0 picks a free one.
   * @default 9701
   * @example port: 9801
   */
  port?: number;
  /**
   * CPUs to offer: 0 = all, negative = all but that many.
   * @default 0
   * @example cpus: -1   // all CPUs but one
   */
  cpus?: number;
  /**
   * Name reported to clients.
   * @default os.hostname()
   * @example name: 'render-node-1'
   */
  name?: string;
  /**
   * Shared secret; the per-user secret file when absent.
   * @default undefined (the per-user secret file)
   * @example secret: process.env.DISPYTS_SECRET
   */
  secret?: string;
  /**
   * Directory under which computations keep their files.
   * @default `${os.tmpdir()}/dispyts/node`
   * @example destPathPrefix: '/var/lib/dispyts/node'
   */
  destPathPrefix?: string;
  /**
   * Largest file a client may send, in bytes (0 = unlimited).
   * @default 0
   * @example maxFileSize: 100 * 1024 * 1024   // 100 MiB
   */
  maxFileSize?: number;
  /**
   * Largest message (frame) the node accepts from a client or sends to one, in bytes; announced
   * to clients, which send no job whose arguments do not fit. A job whose result does not fit
   * ends Terminated with DISPY_ERR_MESSAGE_TOO_LARGE naming both sizes. At least 64 KiB.
   * @default 67108864 (64 MiB)
   * @example maxMessageSize: 256 * 1024 * 1024
   */
  maxMessageSize?: number;
  /**
   * Connections that may be in their handshake (not yet authenticated) at once; more are closed
   * at once (logged once per address a minute). Before authentication a frame is 4 KiB at most.
   * @default 64
   * @example maxHandshakes: 256
   */
  maxHandshakes?: number;
  /**
   * Of those, how many may come from one address.
   * @default 8
   * @example maxHandshakesPerPeer: 32
   */
  maxHandshakesPerPeer?: number;
  /**
   * Longest time the running jobs of a vanished client that keeps a recover file go on (its
   * results are kept for recoverJobs); any other vanished client's jobs end at the end of its
   * reconnect window (sent in its setup), never later than this.
   * @default 3600
   * @example zombieInterval: 600
   */
  zombieInterval?: number;
  /**
   * Exit when no client has been connected for this many seconds: since the daemon started, or
   * since its last client connection closed (0 = never). Meant for nodes started inside a batch
   * allocation (`slurmNodes`), which must end when their client program is gone; jobs of a client
   * that vanished are terminated then, even before `zombieInterval`.
   * @default 0
   * @example idleExit: 60
   */
  idleExit?: number;
  /**
   * Exit after serving this many clients (-1 = never).
   * @default -1
   * @example serve: 1
   */
  serve?: number;
  /**
   * Kill job processes a previous daemon at this address left behind and wipe its files.
   * @default false
   * @example clean: true
   */
  clean?: boolean;
  /**
   * Allow a non-loopback address without a secret.
   * @default false
   * @example insecure: true
   */
  insecure?: boolean;
  /**
   * TLS: the node's certificate (PEM, with an IP subjectAltName for `host`); serve TLS only. May hold the key too.
   * @default undefined
   * @example certFile: '/etc/dispyts/node-cert.pem'
   */
  certFile?: string;
  /**
   * TLS: the node's private key (PEM).
   * @default undefined (the key in `certFile`)
   * @example keyFile: '/etc/dispyts/node-key.pem'
   */
  keyFile?: string;
  /**
   * TLS: CA certificate(s); clients must present a certificate signed by one (mutual TLS).
   * @default undefined
   * @example caFile: '/etc/dispyts/ca.pem'
   */
  caFile?: string;
  /**
   * Seconds between heartbeats when no client asks for another interval.
   * @default 10
   * @example pulseInterval: 5
   */
  pulseInterval?: number;
  /**
   * UDP discovery on the interface of a non-loopback `host`: hear clients' discover requests
   * (on that interface's broadcast address, or the multicast group 239.255.97.5, at `port`) and
   * announce the node to UDP port 9700 when it starts and whenever it becomes free. A loopback
   * `host` never sends UDP, whatever this says.
   * @default 'broadcast'
   * @example discovery: 'multicast'
   */
  discovery?: DiscoveryMode;
  /**
   * Bounds of the store of results whose client was away when they ended (on disk under the
   * node's state directory; oldest dropped first).
   * @default { maxResults: 10000, maxBytes: 256 MiB }
   * @example undelivered: { maxResults: 1000, maxBytes: 64 * 1024 * 1024 }
   */
  undelivered?: UndeliveredLimits;
  /**
   * pino level.
   * @default 'info'
   * @example logLevel: 'debug'
   */
  logLevel?: string;
  /**
   * A logger to use instead of a new one on stderr.
   * @default undefined (a new pino logger on stderr at `logLevel`)
   * @example logger: pino({ level: 'debug' })
   */
  logger?: Logger;
}

interface Comp {
  id: string;
  cluster: string;
  computation: Computation;
  dir: string;
  /** The client program it belongs to (its runners serve no other program). */
  program: string;
  /** Each job in a fresh runner process. */
  isolate: boolean;
  /** Closing with its jobs terminated: a job of it that starts meanwhile is killed too. */
  terminating: boolean;
  /** Cap on running jobs (the node's cpus when 0). */
  cap: number;
  /** Jobs handed to runners (running or queued in them). */
  running: number;
  queued: number;
  /** Running average of job wall time, ms. */
  avgMs: number;
  pulseInterval: number;
  /** Seconds its client may be away before it is closed (see `#clientAway`). */
  reconnectWindow: number;
  /** Its client keeps a recover file: its running jobs outlive the window (up to the zombie interval). */
  recoverable: boolean;
  closing: boolean;
  closeWaiters: (() => void)[];
}

interface NJob {
  uid: number;
  comp: Comp;
  args: Uint8Array;
  channel: Channel<ClientMessage, NodeMessage>;
  /** queued here, handed to a runner, or running in it. */
  state: 'queued' | 'assigned' | 'running';
  runner: Runner | null;
  startTime: number;
  cancelRequested: boolean;
  /** Being taken back from a busy runner's queue for an idle one. */
  rebalancing: boolean;
  /** Seconds the job may run (0 = no limit), and the timer enforcing it. */
  maxRuntime: number;
  timer: NodeJS.Timeout | null;
  /** The client's id for the job, kept with a result that cannot be delivered. */
  tag: string | number | undefined;
  /** Resolves when the job ended (in whatever way). */
  ended: Promise<void>;
  end: () => void;
}

/** The daemon's record in its state directory. */
const PID_FILE = 'daemon.json';
/** Bytes kept for the rest of a reply that carries results (ids, envelope). */
const REPLY_RESERVE = 64 * 1024;
/** Jobs a runner may hold queued behind its running one, for computations of short jobs. */
const LOOKAHEAD = 64;
/** Jobs per CPU the node accepts (running plus queued): clients keep this many in flight. */
const WINDOW_PER_CPU = 64;
/** A computation whose jobs average less than this (ms) is "short". */
const SHORT_JOB_MS = 2;

interface Owner {
  clientId: string;
  channels: Set<Channel<ClientMessage, NodeMessage>>;
  comps: Map<string, Comp>;
  jobs: Map<number, NJob>;
  zombieTimer: NodeJS.Timeout | null;
  /** ms since epoch when its last connection closed (null while it has one). */
  goneSince: number | null;
  /** Fires at the end of the next computation's reconnect window while the client is away. */
  goneTimer: NodeJS.Timeout | null;
  since: number;
}

/** What `NodeDaemon.status()` tells. */
export interface NodeDaemonStatus {
  host: string;
  port: number;
  name: string;
  nodeId: string;
  platform: string;
  tls: 'off' | 'tls' | 'mutual';
  machineCpus: number;
  /** CPUs the daemon was started with (`--cpus`, resolved). */
  cpus: number;
  /** CPUs it runs jobs on now (setCpuLimit). */
  cpuLimit: number;
  /** Jobs running now. */
  busy: number;
  /** Jobs handed to runners (running or about to). */
  running: number;
  /** Jobs accepted and waiting for a runner. */
  queued: number;
  draining: boolean;
  stopping: boolean;
  /** ms since epoch. */
  startTime: number;
  /** Clients served to the end so far. */
  served: number;
  /** The client program the node serves now, if any. */
  client: null | {
    clientId: string;
    /** Its open connections (address:port). */
    peers: string[];
    since: number;
    computations: { id: string; cluster: string; cap: number; running: number; queued: number; closing: boolean }[];
  };
  jobs: { uid: number; computeId: string; cluster: string; state: 'queued' | 'assigned' | 'running'; startTime: number | null }[];
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** Resolves `--cpus` against the machine: 0 = all, negative = all but N. */
export function resolveCpus(cpus: number, machineCpus: number): number {
  if (!Number.isInteger(cpus)) throw invalidOption('cpus', 'an integer', cpus);
  if (cpus > machineCpus)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--cpus ${cpus} is more than this machine's ${machineCpus} CPUs`);
  const n = cpus > 0 ? cpus : machineCpus + cpus;
  if (n < 1) throw new DispyError('DISPY_ERR_INVALID_OPTION', `--cpus ${cpus} leaves no CPU to use on a machine with ${machineCpus}`);
  return n;
}

/** Bytes a job's end takes in a message, roughly (its result, output and exception, plus the rest). */
function doneSize(d: { result: Uint8Array | null; stdout: string; stderr: string; exception: string | null }): number {
  return (
    (d.result?.byteLength ?? 0) + Buffer.byteLength(d.stdout) + Buffer.byteLength(d.stderr) + Buffer.byteLength(d.exception ?? '') + 1024
  );
}

export class NodeDaemon {
  readonly nodeId = randomBytes(12).toString('hex');
  /** When the daemon was created (ms since epoch), for its uptime. */
  readonly startTime = Date.now();
  readonly log: Logger;
  readonly host: string;
  readonly name: string;
  readonly cpus: number;
  readonly machineCpus: number;
  port: number;
  /** Largest message accepted or sent, in bytes (--max-message-size). */
  readonly maxMessageSize: number;
  /**
   * The tag every runner and job process of this daemon carries (`<host>/<daemon id>`, then
   * `/r<runner>/j<job>`): what `--clean` of a later daemon here looks for.
   */
  readonly tag: string;

  readonly #opts: NodeDaemonOptions;
  readonly #gate: HandshakeGate;
  readonly #secret: Buffer;
  readonly #tls: TlsMaterial | null;
  readonly #prefix: string;
  readonly #metrics: HostMetrics;
  #stateDir = '';
  /** Live runners of a previous daemon here, not killed (no --clean). */
  #orphans: number[] = [];
  /** Tags of previous daemons here whose processes were still alive at start (no --clean). */
  #orphanTags: string[] = [];
  #server: net.Server | null = null;
  #pool: RunnerPool | null = null;
  /** Files clients send (created with the state directory). */
  #files: FileStore | null = null;
  /** Results kept for clients that were away when their jobs ended. */
  #undelivered: UndeliveredStore | null = null;
  /** Per connection: ms of the last message, and the client's heartbeat period (s). */
  readonly #heard = new WeakMap<Channel<ClientMessage, NodeMessage>, { at: number; every: number }>();
  #silenceTimer: NodeJS.Timeout | null = null;
  readonly #channels = new Set<Channel<ClientMessage, NodeMessage>>();
  #owner: Owner | null = null;
  /** Accepted jobs waiting for a runner (bounded by cpus: the prefetch window). */
  #queue: NJob[] = [];
  #running = 0;
  #served = 0;
  #pulseTimer: NodeJS.Timeout | null = null;
  #pulseEvery = 0;
  /** Files jobs send home (dispySendFile), on their way to the client. */
  readonly #fileRelay = new FileRelay();
  /** Provisional results waiting for a congested connection to drain: the latest per job. */
  readonly #heldProvisional = new Map<Channel<ClientMessage, NodeMessage>, Map<number, NodeMessage>>();
  /** Runs while no client connection is open (idleExit). */
  #idleTimer: NodeJS.Timeout | null = null;
  #announcer: NodeAnnouncer | null = null;
  #stopping: Promise<void> | null = null;
  /** Set by setDraining(true): no job starts and no new client is served until cleared. */
  #draining = false;
  /** CPUs the node runs jobs on now (setCpuLimit); null = all of `cpus`. */
  #cpuLimit: number | null = null;
  /** Resolves when the daemon has stopped (signal, `--serve` reached, or stop()). */
  readonly stopped: Promise<void>;
  #resolveStopped!: () => void;

  constructor(opts: NodeDaemonOptions = {}) {
    this.#opts = opts;
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port ?? NODE_PORT;
    this.log = opts.logger ?? pino({ level: opts.logLevel ?? 'info', base: { node: this.host } }, pino.destination(2));
    this.#prefix = opts.destPathPrefix ?? join(os.tmpdir(), 'dispyts', 'node');
    mkdirSync(this.#prefix, { recursive: true });
    this.#metrics = new HostMetrics(this.#prefix);
    this.machineCpus = this.#metrics.machineCpus;
    this.cpus = resolveCpus(opts.cpus ?? 0, this.machineCpus);
    this.name = opts.name ?? os.hostname();
    if (!isLoopback(this.host) && !opts.secret && !opts.insecure) {
      throw new DispyError(
        'DISPY_ERR_INSECURE',
        `refusing to serve on ${this.host || 'all interfaces'} without --secret (pass --insecure to use the per-user secret file anyway)`,
      );
    }
    for (const [k, v] of [
      ['zombieInterval', opts.zombieInterval],
      ['pulseInterval', opts.pulseInterval],
    ] as const) {
      if (v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v)))
        throw invalidOption(k, 'a positive number of seconds', v);
    }
    if (opts.idleExit !== undefined && !(typeof opts.idleExit === 'number' && opts.idleExit >= 0 && Number.isFinite(opts.idleExit)))
      throw invalidOption('idleExit', 'a number of seconds >= 0', opts.idleExit);
    if (opts.discovery !== undefined && !DISCOVERY_MODES.includes(opts.discovery))
      throw invalidOption('discovery', "'broadcast', 'multicast' or 'off'", opts.discovery);
    const max = opts.maxMessageSize ?? DEFAULT_MAX_FRAME;
    if (!(Number.isInteger(max) && max >= MIN_MAX_FRAME && max <= 0xffffffff))
      throw invalidOption('maxMessageSize', `a number of bytes from ${MIN_MAX_FRAME} to 4 GiB`, opts.maxMessageSize);
    this.maxMessageSize = max;
    checkHandshakeCaps(opts);
    this.#gate = new HandshakeGate({ max: opts.maxHandshakes, perPeer: opts.maxHandshakesPerPeer, log: this.log, what: 'node' });
    this.tag = `${this.host}/${this.nodeId}`;
    this.#secret = resolveSecret(opts.secret);
    // Unreadable or unusable TLS files stop the daemon here, before it listens.
    this.#tls = loadTls({ certFile: opts.certFile, keyFile: opts.keyFile, caFile: opts.caFile }, 'node', CLI_NAMES);
    this.stopped = new Promise((r) => (this.#resolveStopped = r));
  }

  /** Starts runners and listens; resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    this.#prepareStateDir();
    this.#files = new FileStore(this.#stateDir, this.#opts.maxFileSize ?? 0, this.log);
    this.#undelivered = new UndeliveredStore(join(this.#stateDir, 'undelivered'), this.log, this.#opts.undelivered);
    this.#silenceTimer = setInterval(() => this.#checkSilence(), 500);
    this.#silenceTimer.unref();
    this.#pool = new RunnerPool({
      size: this.cpus,
      log: this.log,
      nodeName: this.name,
      nodeIpAddr: this.host,
      tag: this.tag,
      maxMessageSize: this.maxMessageSize,
    });
    this.#pool.onIdle = () => this.#schedule();
    this.#pool.onPidsChanged = () => this.#writePidFile();
    this.#pool.onLoadFailed = (computeId, error) => {
      const owner = this.#owner;
      const comp = owner?.comps.get(computeId);
      if (!owner || !comp || comp.closing) return;
      this.log.warn({ computeId, error: error.message }, 'a new runner could not set up the computation; closing it');
      void this.#closeComp(owner, comp, true).then(() => {
        for (const ch of owner.channels) ch.send({ t: 'closed', computeId, reason: error.message });
      });
    };
    await this.#pool.start();
    const server = this.#tls
      ? tls.createServer({ ...serverTlsOptions(this.#tls), noDelay: true }, (socket) => this.#acceptTls(socket))
      : net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    // Connections not yet authenticated are counted (and capped) before anything is read.
    server.prependListener('connection', (raw: net.Socket) => this.#admit(raw));
    if (this.#tls) this.#watchTlsHandshakes(server as tls.Server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port: this.port, backlog: 128 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'server error'));
    this.port = (server.address() as net.AddressInfo).port;
    this.#writePidFile();
    this.#announcer = new NodeAnnouncer({
      host: this.host,
      port: this.port,
      secret: this.#secret,
      mode: this.#opts.discovery,
      log: this.log,
      state: () => ({ nodeId: this.nodeId, name: this.name, cpus: this.cpus, busy: this.#owner !== null }),
    });
    await this.#announcer.start();
    this.#armIdleExit();
    this.log.info({ port: this.port, cpus: this.cpus, name: this.name, tls: this.tls }, 'node ready');
    return { host: this.host, port: this.port };
  }

  /** `'mutual'` when clients must present a certificate, `'tls'`, or `'off'` (plain TCP). */
  get tls(): 'off' | 'tls' | 'mutual' {
    return !this.#tls ? 'off' : this.#tls.ca ? 'mutual' : 'tls';
  }

  /**
   * With `--ca-file`, a client whose certificate is missing or not signed by that CA is refused
   * here (node:tls leaves the verdict to us so that the client can be told why).
   */
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
    refuseConnection(socket, new DispyError('DISPY_ERR_TLS', `node ${this.host} refused this client: ${refusal}`));
  }

  /**
   * A failed TLS handshake (a plain-TCP client, a client that does not trust our certificate)
   * is logged as DISPY_ERR_TLS; node:tls then destroys that socket and the server goes on
   * serving.
   */
  #watchTlsHandshakes(server: tls.Server): void {
    // The peer's address, read while the raw socket is open (a reset TLS socket has lost it).
    const peers = new WeakMap<net.Socket, string>();
    server.on('connection', (raw: net.Socket) => {
      if (!raw.destroyed) peers.set(raw, `${raw.remoteAddress}:${raw.remotePort}`);
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      const raw = (socket as unknown as { _parent?: net.Socket })._parent;
      // Refused by the handshake caps: logged there, once per address a while.
      if (raw?.destroyed && !peers.has(raw)) return;
      const peer = (raw && peers.get(raw)) ?? (socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : '?');
      const reason =
        err.code === 'ECONNRESET' || err.code === 'EPIPE'
          ? `the client closed the connection during the TLS handshake (does it trust this node's certificate?): ${err.message}`
          : describeTlsError(err);
      this.log.warn({ peer, code: 'DISPY_ERR_TLS', reason }, 'TLS handshake failed; connection refused');
    });
  }

  // ---- state directory and --clean ----

  /**
   * The node's directory under the prefix is named for its address (its identity). A live
   * daemon already recorded there stops us. Processes a dead one's jobs left behind (found by
   * the tags it recorded: a runner SIGKILLed with its daemon cannot take its jobs' processes
   * down) are reported, and killed with `--clean`, with their process groups.
   */
  #prepareStateDir(): void {
    this.#stateDir = join(this.#prefix, this.host || 'all');
    const previous = readPidFile<{ runners?: number[]; tag?: unknown; orphanTags?: unknown }>(join(this.#stateDir, PID_FILE));
    if (previous && previous.pid !== process.pid) {
      if (isDispytsDaemon(previous.pid, 'node')) {
        throw new DispyError(
          'DISPY_ERR_INVALID_OPTION',
          `another dispyts node (pid ${previous.pid}) serves ${this.host} with prefix ${this.#prefix}; stop it first`,
        );
      }
      // Only tags naming this address count: a record is data, not an order to kill anything.
      const tags = [previous.tag, ...(Array.isArray(previous.orphanTags) ? previous.orphanTags : [])].filter(
        (t): t is string => typeof t === 'string' && t.startsWith(`${this.host}/`) && t.length > this.host.length + 1,
      );
      // A record without tags comes from an older daemon: its runners by pid, if they still are.
      const leftovers = (Array.isArray(previous.runners) && tags.length === 0 ? previous.runners : []).filter(
        (pid) => Number.isInteger(pid) && isJobRunner(pid),
      );
      const alive = tags.filter((t) => findTagged(t).length > 0);
      if (this.#opts.clean) {
        const killed = tags.flatMap((t) => killTagged(t, 'SIGKILL'));
        for (const pid of leftovers) {
          try {
            process.kill(-pid, 'SIGKILL');
          } catch {
            // gone
          }
        }
        rmSync(this.#stateDir, { recursive: true, force: true });
        this.log.info({ killed: [...killed, ...leftovers] }, 'cleaned up after a previous daemon');
      } else if (leftovers.length || alive.length) {
        // Remembered in our own pid file, so a later --clean still finds them.
        this.#orphans = leftovers;
        this.#orphanTags = alive;
        const pids = [...alive.flatMap((t) => findTagged(t).map((p) => p.pid)), ...leftovers];
        this.log.warn({ pids, tags: alive }, 'job processes of a previous daemon are still alive; start with --clean to kill them');
      }
    }
    mkdirSync(this.#stateDir, { recursive: true });
  }

  #writePidFile(): void {
    if (!this.#stateDir) return;
    writePidFile(
      join(this.#stateDir, PID_FILE),
      {
        port: this.port,
        tag: this.tag,
        runners: [...(this.#pool?.pids() ?? []), ...this.#orphans],
        ...(this.#orphanTags.length ? { orphanTags: this.#orphanTags } : {}),
      },
      this.log,
    );
  }

  // ---- connections ----

  /** Handshakes in progress, by the peer's `address:port`: what to call once one authenticated. */
  readonly #handshakes = new Map<string, () => void>();

  /** Counts a new connection against the handshake caps; one over them is closed at once. */
  #admit(raw: net.Socket): void {
    const key = `${raw.remoteAddress}:${raw.remotePort}`;
    const release = this.#gate.admit(raw);
    if (!release) return;
    this.#handshakes.set(key, release);
    raw.once('close', () => {
      if (this.#handshakes.get(key) === release) this.#handshakes.delete(key);
    });
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
    let ch: Channel<ClientMessage, NodeMessage>;
    try {
      ch = await acceptChannel<ClientMessage, NodeMessage>(socket, {
        secret: this.#secret,
        schema: clientMessageSchema,
        role: 'node',
        maxFrame: this.maxMessageSize,
      });
      this.#handshakeOver(key);
    } catch (err) {
      this.#handshakeOver(key);
      this.log.warn(
        { peer: `${socket.remoteAddress}:${socket.remotePort}`, code: (err as DispyError).code, reason: (err as Error).message },
        'connection refused',
      );
      return;
    }
    this.#channels.add(ch);
    this.#disarmIdleExit();
    const clientId = ch.peerHello?.clientId ?? ch.peer;
    this.log.debug({ peer: ch.peer, clientId }, 'client authenticated');
    const heard = { at: Date.now(), every: 0 };
    this.#heard.set(ch, heard);
    ch.on('message', (msg) => {
      heard.at = Date.now();
      try {
        this.#onMessage(ch, clientId, msg);
      } catch (err) {
        this.log.error({ err, peer: ch.peer }, 'error handling a message');
        ch.close(new DispyError('DISPY_ERR_INTERNAL', (err as Error).message));
      }
    });
    ch.on('close', (reason) => this.#onClose(ch, clientId, reason));
    if (this.#owner?.clientId === clientId) this.#reattach(ch);
    ch.send(this.#info());
  }

  #info(): NodeMessage {
    return {
      t: 'info',
      nodeId: this.nodeId,
      name: this.name,
      ipAddr: this.host,
      port: this.port,
      machineCpus: this.machineCpus,
      cpus: this.cpus,
      cpuLimit: this.cpuLimit,
      draining: this.#draining,
      platform: platformString(),
      availInfo: this.#metrics.sample(),
      busy: this.#owner !== null,
      maxMessageSize: this.maxMessageSize,
    };
  }

  #onClose(ch: Channel<ClientMessage, NodeMessage>, clientId: string, reason: DispyError | null): void {
    this.#channels.delete(ch);
    this.#armIdleExit();
    // Files sent for computations that were never set up go with the client's last connection.
    if (![...this.#channels].some((c) => (c.peerHello?.clientId ?? c.peer) === clientId)) this.#files?.dropStaged(clientId);
    if (reason) this.log.warn({ peer: ch.peer, code: reason.code, reason: reason.message }, 'connection closed');
    else this.log.debug({ peer: ch.peer }, 'connection closed');
    const owner = this.#owner;
    if (!owner || owner.clientId !== clientId) return;
    owner.channels.delete(ch);
    if (owner.channels.size === 0 && !this.#stopping) {
      const zombie = this.#opts.zombieInterval ?? 3600;
      this.log.info(
        { clientId, zombieInterval: zombie, reconnectWindow: [...owner.comps.values()].map((c) => c.reconnectWindow) },
        'client gone; its jobs are terminated if it does not return within its reconnect window',
      );
      owner.zombieTimer = setTimeout(() => this.#reapZombie(owner), zombie * 1000);
      owner.zombieTimer.unref();
      owner.goneSince = Date.now();
      // A computation whose client is away starts no new job: those queued in runners come back.
      this.#reclaimWaiting();
      this.#armGone(owner);
    }
  }

  #reattach(ch: Channel<ClientMessage, NodeMessage>): void {
    const owner = this.#owner!;
    const wasAway = owner.channels.size === 0;
    owner.channels.add(ch);
    if (owner.zombieTimer) {
      clearTimeout(owner.zombieTimer);
      owner.zombieTimer = null;
    }
    if (owner.goneTimer) clearTimeout(owner.goneTimer);
    owner.goneTimer = null;
    owner.goneSince = null;
    if (wasAway) this.#schedule();
  }

  /**
   * The client-gone rule: each computation of a client that has no open connection is closed at
   * the end of its reconnect window (never beyond the zombie interval), so the node serves the
   * next client. A plain one drops its queued jobs, terminates its running ones and forgets the
   * results kept for it; a recoverable one (its program keeps a recover file) lets its running
   * jobs finish, keeping their results for recoverJobs, until the zombie interval ends them.
   */
  #armGone(owner: Owner): void {
    if (owner.goneTimer) clearTimeout(owner.goneTimer);
    owner.goneTimer = null;
    if (this.#owner !== owner || owner.goneSince === null || owner.channels.size > 0 || this.#stopping !== null) return;
    const zombie = this.#opts.zombieInterval ?? 3600;
    const now = Date.now();
    let next = Infinity;
    for (const comp of [...owner.comps.values()]) {
      if (comp.closing) continue;
      const at = owner.goneSince + Math.min(comp.reconnectWindow, zombie) * 1000;
      if (at <= now) this.#clientAway(owner, comp);
      else next = Math.min(next, at);
    }
    if (next === Infinity) return;
    owner.goneTimer = setTimeout(() => this.#armGone(owner), next - now);
    owner.goneTimer.unref();
  }

  #clientAway(owner: Owner, comp: Comp): void {
    const jobs = [...owner.jobs.values()].filter((j) => j.comp === comp).length;
    this.log.warn(
      { clientId: owner.clientId, computeId: comp.id, cluster: comp.cluster, jobs, recoverable: comp.recoverable },
      comp.recoverable
        ? 'client did not return within its reconnect window: its running jobs go on for recoverJobs, queued ones are dropped'
        : 'client did not return: terminating its jobs',
    );
    if (comp.recoverable) {
      void this.#closeComp(owner, comp, false);
      return;
    }
    void this.#closeComp(owner, comp, true).then(() => {
      // Nobody will ask for them: the client gave them up at the end of the same window.
      this.#undelivered?.forget(comp.id);
    });
  }

  #reapZombie(owner: Owner): void {
    if (this.#owner !== owner || owner.channels.size > 0) return;
    this.log.warn({ clientId: owner.clientId, jobs: owner.jobs.size }, 'client did not return: terminating its jobs');
    for (const comp of [...owner.comps.values()]) void this.#closeComp(owner, comp, true);
  }

  /** idleExit: starts the countdown when no client connection is open (and none runs yet). */
  #armIdleExit(): void {
    const idleExit = this.#opts.idleExit ?? 0;
    if (idleExit <= 0 || this.#idleTimer || this.#channels.size > 0 || this.#stopping) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      if (this.#channels.size > 0) return;
      this.log.info({ idleExit }, 'no client connected for the idle-exit interval; exiting');
      void this.stop(`no client for ${idleExit} s`);
    }, idleExit * 1000);
  }

  #disarmIdleExit(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
  }

  // ---- messages ----

  #onMessage(ch: Channel<ClientMessage, NodeMessage>, clientId: string, msg: ClientMessage): void {
    switch (msg.t) {
      case 'jobs': {
        const owner = this.#ownerOf(clientId);
        const uids = owner
          ? [...owner.jobs.values()].filter((j) => j.comp.id === msg.computeId && j.state === 'running').map((j) => j.uid)
          : [];
        ch.send({ t: 'reply', rid: msg.rid, ok: true, uids });
        return;
      }
      case 'ping':
        ch.send({ t: 'reply', rid: msg.rid, ok: true });
        return;
      case 'beat': {
        const heard = this.#heard.get(ch)!;
        if (heard.every !== msg.every) this.log.debug({ peer: ch.peer, every: msg.every }, 'client heartbeat interval');
        heard.every = msg.every;
        return;
      }
      case 'resume':
        this.#resume(ch, clientId, msg);
        return;
      case 'recover':
        this.#recover(ch, clientId, msg);
        return;
      case 'setup':
        void this.#setup(ch, clientId, msg);
        return;
      case 'job':
        this.#job(ch, clientId, msg);
        if (msg.files.length) this.#jobFiles(clientId, msg);
        return;
      case 'file-begin':
      case 'file-chunk':
        this.#onFile(ch, clientId, msg);
        return;
      case 'cancel':
        this.#cancel(clientId, msg.uid);
        return;
      case 'job-file-ack':
        this.#fileRelay.ack(msg);
        return;
      case 'close': {
        const owner = this.#ownerOf(clientId);
        const comp = owner?.comps.get(msg.computeId);
        if (!owner || !comp) {
          ch.send({ t: 'reply', rid: msg.rid, ok: true });
          return;
        }
        void this.#closeComp(owner, comp, msg.terminate).then(() => {
          ch.send({ t: 'reply', rid: msg.rid, ok: true });
        });
        return;
      }
      case 'set-cpus': {
        const comp = this.#ownerOf(clientId)?.comps.get(msg.computeId);
        if (!comp) {
          ch.send({
            t: 'reply',
            rid: msg.rid,
            ok: false,
            error: { code: 'DISPY_ERR_UNKNOWN_COMPUTATION', message: `computation ${msg.computeId} is not set up on ${this.host}` },
          });
          return;
        }
        comp.cap = Math.min(msg.cpus, this.cpus);
        ch.send({ t: 'reply', rid: msg.rid, ok: true, cpus: comp.cap });
        this.#reclaimAboveCap(comp);
        this.#schedule();
        return;
      }
    }
  }

  /**
   * file-begin / file-chunk: answered with the bytes of the file the node has. Files may come
   * before the computation's setup (they are staged for it) but not while another client owns
   * the node.
   */
  #onFile(
    ch: Channel<ClientMessage, NodeMessage>,
    clientId: string,
    msg: Extract<ClientMessage, { t: 'file-begin' | 'file-chunk' }>,
  ): void {
    const fail = (code: string, message: string): void => {
      ch.send({ t: 'reply', rid: msg.rid, ok: false, error: { code, message } });
    };
    if (this.#stopping || !this.#files) {
      fail('DISPY_ERR_CONNECTION', `node ${this.host} is shutting down`);
      return;
    }
    if (this.#owner && this.#owner.clientId !== clientId) {
      fail(
        'DISPY_ERR_NODE_BUSY',
        `node ${this.host} (${this.name}) is serving another client since ${new Date(this.#owner.since).toISOString()}`,
      );
      return;
    }
    if (this.#owner?.comps.get(msg.computeId)?.closing) {
      fail('DISPY_ERR_BAD_REQUEST', `computation ${msg.computeId} is closing`);
      return;
    }
    const done =
      msg.t === 'file-begin' ? this.#files.begin(clientId, FileStore.clientAddr(ch.peer), msg) : this.#files.chunk(clientId, msg);
    done.then(
      (offset) => ch.send({ t: 'reply', rid: msg.rid, ok: true, offset }),
      (err: unknown) => {
        const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', `file \`${msg.name}\`: ${(err as Error).message}`);
        if (e.code !== 'DISPY_ERR_FILE_TOO_LARGE')
          this.log.warn({ peer: ch.peer, name: msg.name, code: e.code, reason: e.message }, 'file transfer refused');
        else this.log.info({ peer: ch.peer, name: msg.name, reason: e.message }, 'file transfer refused');
        fail(e.code, e.message);
      },
    );
  }

  /** A job's per-job files are deleted once it ended (at once if it was refused). */
  #jobFiles(clientId: string, msg: Extract<ClientMessage, { t: 'job' }>): void {
    const release = (): void => this.#files?.jobEnded(clientId, msg.computeId, msg.uid, msg.files);
    const job = this.#ownerOf(clientId)?.jobs.get(msg.uid);
    if (job && job.comp.id === msg.computeId && job.args === msg.args) void job.ended.then(release);
    else release();
  }

  #ownerOf(clientId: string): Owner | null {
    return this.#owner && this.#owner.clientId === clientId ? this.#owner : null;
  }

  async #setup(ch: Channel<ClientMessage, NodeMessage>, clientId: string, msg: Extract<ClientMessage, { t: 'setup' }>): Promise<void> {
    const fail = (code: string, message: string): void => {
      ch.send({ t: 'reply', rid: msg.rid, ok: false, error: { code, message } });
    };
    if (this.#stopping !== null) return fail('DISPY_ERR_CONNECTION', `node ${this.host} is shutting down`);
    if (this.#draining && this.#owner?.clientId !== clientId)
      return fail('DISPY_ERR_NODE_BUSY', `node ${this.host} (${this.name}) is draining: it takes no new client`);
    if (this.#owner && this.#owner.clientId !== clientId) {
      return fail(
        'DISPY_ERR_NODE_BUSY',
        `node ${this.host} (${this.name}) is serving another client since ${new Date(this.#owner.since).toISOString()}`,
      );
    }
    if (!this.#owner) {
      this.#owner = {
        clientId,
        channels: new Set(),
        comps: new Map(),
        jobs: new Map(),
        zombieTimer: null,
        goneSince: null,
        goneTimer: null,
        since: Date.now(),
      };
      this.log.info({ clientId, peer: ch.peer }, 'serving a new client');
    }
    const owner = this.#owner;
    this.#reattach(ch);
    const existing = owner.comps.get(msg.computeId);
    if (existing && !existing.closing) {
      // The client reconnected: its computation is still here.
      existing.cap = Math.min(msg.cpus || this.cpus, this.cpus);
      existing.reconnectWindow = msg.reconnectWindow;
      existing.recoverable = msg.recoverable;
      ch.send({ t: 'reply', rid: msg.rid, ok: true, cpus: existing.cap });
      this.#schedule();
      return;
    }
    if (existing) return fail('DISPY_ERR_BAD_REQUEST', `computation ${msg.computeId} is closing`);
    let dir: string;
    try {
      dir = this.#files!.adopt(clientId, msg.computeId, FileStore.clientAddr(ch.peer), msg.destPath, msg.cleanupFiles);
    } catch (err) {
      if (owner.comps.size === 0 && owner.jobs.size === 0 && this.#owner === owner) this.#owner = null;
      return fail(err instanceof DispyError ? err.code : 'DISPY_ERR_INTERNAL', (err as Error).message);
    }
    const comp: Comp = {
      id: msg.computeId,
      cluster: msg.cluster,
      computation: msg.computation,
      dir,
      // A scheduler serves several programs: each gets runners of its own.
      program: msg.program === null ? clientId : `${clientId}/${msg.program}`,
      isolate: msg.isolate === 'job',
      terminating: false,
      cap: Math.min(msg.cpus || this.cpus, this.cpus),
      running: 0,
      queued: 0,
      avgMs: Infinity,
      pulseInterval: msg.pulseInterval,
      reconnectWindow: msg.reconnectWindow,
      recoverable: msg.recoverable,
      closing: false,
      closeWaiters: [],
    };
    owner.comps.set(comp.id, comp);
    const error = await this.#pool!.load(
      comp.id,
      {
        computation: comp.computation,
        dir,
        setup: msg.setup,
        cleanup: msg.cleanup,
        setupArgs: msg.setupArgs
          ? Buffer.from(msg.setupArgs.buffer, msg.setupArgs.byteOffset, msg.setupArgs.byteLength).toString('base64')
          : null,
      },
      { program: comp.program, isolate: comp.isolate },
    );
    if (error) {
      this.log.warn({ cluster: comp.cluster, computeId: comp.id, error: error.message }, 'computation failed to load');
      await this.#closeComp(owner, comp, true);
      return fail(error.code, error.message);
    }
    this.log.info({ cluster: comp.cluster, computeId: comp.id, cap: comp.cap }, 'computation set up');
    this.#armPulse();
    ch.send({ t: 'reply', rid: msg.rid, ok: true, cpus: comp.cap });
  }

  #job(ch: Channel<ClientMessage, NodeMessage>, clientId: string, msg: Extract<ClientMessage, { t: 'job' }>): void {
    const owner = this.#ownerOf(clientId);
    const comp = owner?.comps.get(msg.computeId);
    if (!owner || !comp || comp.closing) {
      ch.send({
        t: 'nak',
        uid: msg.uid,
        reason: 'unknown-computation',
        message: `computation ${msg.computeId} is not set up on ${this.host}`,
      });
      return;
    }
    if (this.#stopping !== null) {
      ch.send({ t: 'nak', uid: msg.uid, reason: 'shutdown', message: `node ${this.host} is shutting down` });
      return;
    }
    if (this.#draining) {
      ch.send({ t: 'nak', uid: msg.uid, reason: 'draining', message: `node ${this.host} is draining: it starts no job until it resumes` });
      return;
    }
    if (this.#running + this.#queue.length >= WINDOW_PER_CPU * this.cpus || owner.jobs.has(msg.uid)) {
      ch.send({ t: 'nak', uid: msg.uid, reason: 'full', message: `all CPUs of ${this.host} are busy` });
      return;
    }
    let end!: () => void;
    const ended = new Promise<void>((r) => (end = r));
    const job: NJob = {
      uid: msg.uid,
      comp,
      args: msg.args,
      channel: ch,
      state: 'queued',
      runner: null,
      startTime: 0,
      cancelRequested: false,
      rebalancing: false,
      maxRuntime: msg.maxRuntime,
      timer: null,
      tag: msg.tag,
      ended,
      end,
    };
    owner.jobs.set(job.uid, job);
    keepJobCode(msg.args, msg.depends);
    comp.queued++;
    this.#queue.push(job);
    this.#schedule();
  }

  /**
   * Hands queued jobs to runners: an empty runner takes any job whose computation is under its
   * cap; a runner already holding a computation of short jobs takes more of them (up to
   * LOOKAHEAD) so they run back to back without a round trip each.
   */
  #schedule(): void {
    const pool = this.#pool;
    // A client that is away gets no new job started until it returns.
    if (!pool || this.#stopping || this.#draining || this.#owner?.channels.size === 0) return;
    let i = 0;
    let isolatedWaiting = 0;
    while (i < this.#queue.length) {
      const job = this.#queue[i]!;
      const runner = this.#runnerFor(job.comp);
      if (!runner) {
        if (job.comp.isolate) isolatedWaiting++;
        i++;
        continue;
      }
      this.#queue.splice(i, 1);
      this.#assign(job, runner);
    }
    // Jobs that each need a fresh process get them spawned, as many as CPUs are free.
    if (isolatedWaiting) pool.ensureFresh(Math.min(isolatedWaiting, this.cpuLimit - this.#busyRunners()));
    if (this.#queue.length === 0) this.#rebalance();
  }

  /**
   * An empty runner if the computation's cap allows one more; otherwise a runner busy with the
   * same computation that may queue it: up to LOOKAHEAD jobs for short jobs, one behind the
   * running job for long ones (so the runner starts it without waiting for the daemon).
   */
  #runnerFor(comp: Comp): Runner | undefined {
    const pool = this.#pool!;
    const limit = comp.avgMs < SHORT_JOB_MS ? LOOKAHEAD : 2;
    let behind: Runner | undefined;
    let empty: Runner | undefined;
    for (const r of pool.runners) {
      if (!r.usable || !pool.fits(r, comp.id)) continue;
      if (r.jobs.size === 0) {
        // One that already set the computation up before a fresh one.
        if (!empty || (empty.fresh && !r.fresh)) empty = r;
        continue;
      }
      // An isolated job never waits behind another one: its runner runs it alone.
      if (comp.isolate || r.jobs.size >= limit || (behind && behind.jobs.size <= r.jobs.size)) continue;
      let same = true;
      for (const j of r.jobs.values()) if (j.computeId !== comp.id) same = false;
      if (same) behind = r;
    }
    const holding = this.#runnersHolding(comp);
    if (empty && holding < comp.cap && this.#belowCpuLimit()) return empty;
    // Queueing behind a running job is no new concurrency, but not above a lowered cap.
    return holding <= comp.cap ? behind : undefined;
  }

  /**
   * When a runner sits empty with nothing queued here, a long job waiting behind another
   * runner's running job is taken back (if it has not started) and runs on the empty one.
   */
  #rebalance(): void {
    const pool = this.#pool!;
    const runners = [...pool.runners].filter((r) => r.usable);
    const emptyOnes = runners.filter((r) => r.jobs.size === 0);
    let empty = emptyOnes.length;
    for (const r of runners) {
      if (empty === 0) return;
      if (r.jobs.size < 2) continue;
      const waiting = [...r.jobs.values()].reverse().find((j) => !j.started);
      const job = waiting && this.#owner?.jobs.get(waiting.uid);
      if (!job || job.cancelRequested || job.rebalancing || job.comp.avgMs < SHORT_JOB_MS) continue;
      // Only to an empty runner that may run it (the same program's, or a fresh one).
      if (!emptyOnes.some((e) => pool.fits(e, job.comp.id))) continue;
      // Only if an empty runner may take it (the computation's cap counts runners).
      if (this.#runnersHolding(job.comp) >= job.comp.cap || !this.#belowCpuLimit()) continue;
      job.rebalancing = true;
      this.#pool!.drop(r, job.uid);
      empty--;
    }
  }

  /**
   * After a computation's cap was lowered: jobs queued inside runners that have not started
   * come back here, so running jobs finish and no more start beyond the cap.
   */
  #reclaimAboveCap(comp: Comp): void {
    const waiting: [Runner, number][] = [];
    for (const r of this.#pool!.runners) for (const a of r.jobs.values()) if (!a.started) waiting.push([r, a.uid]);
    for (const [r, uid] of waiting) {
      const job = this.#owner?.jobs.get(uid);
      if (job && job.comp === comp && !job.rebalancing && !job.cancelRequested) {
        job.rebalancing = true;
        this.#pool!.drop(r, uid);
      }
    }
  }

  #runnersHolding(comp: Comp): number {
    let n = 0;
    for (const r of this.#pool!.runners) {
      for (const j of r.jobs.values()) {
        if (j.computeId === comp.id) {
          n++;
          break;
        }
      }
    }
    return n;
  }

  #assign(job: NJob, runner: Runner): void {
    job.comp.queued--;
    job.comp.running++;
    this.#running++;
    job.state = 'assigned';
    job.runner = runner;
    const assigned: AssignedJob = {
      uid: job.uid,
      computeId: job.comp.id,
      started: false,
      onStarted: (startTime) => {
        job.state = 'running';
        job.startTime = startTime;
        if (job.maxRuntime > 0) {
          job.timer = setTimeout(() => {
            this.log.info({ uid: job.uid, maxRuntime: job.maxRuntime }, 'job exceeded its maxRuntime');
            this.#pool!.kill(
              runner,
              job.uid,
              `DispyError: DISPY_ERR_MAX_RUNTIME: job terminated after running for its maxRuntime of ${job.maxRuntime} s`,
              'DISPY_ERR_MAX_RUNTIME',
            );
          }, job.maxRuntime * 1000);
          job.timer.unref();
        }
        this.#send(job, { t: 'started', uid: job.uid, startTime });
        // Cancelled (or its computation closed with terminate) while it was on its way to start.
        if (job.cancelRequested) this.#pool!.kill(runner, job.uid, 'DispyError: job terminated on request of the client');
        else if (job.comp.terminating) this.#pool!.kill(runner, job.uid, 'DispyError: job terminated as its computation was closed');
      },
      onProvisional: (result) => {
        // The runner refuses larger ones; this one would not leave in a message.
        if (result.byteLength + 1024 > this.maxMessageSize) {
          this.log.warn({ uid: job.uid, bytes: result.byteLength, max: this.maxMessageSize }, 'provisional result too large: not sent');
          return;
        }
        this.#send(job, { t: 'provisional', uid: job.uid, result });
      },
      onEnd: (outcome) => this.#ended(job, outcome),
      onSendFile: (item, reply) => this.#fileRelay.forward((m) => this.#send(job, m), item, reply),
    };
    this.#pool!.assign(runner, assigned, job.args);
  }

  #ended(job: NJob, outcome: RunnerOutcome): void {
    const comp = job.comp;
    if (job.timer) clearTimeout(job.timer);
    job.timer = null;
    comp.running--;
    this.#running--;
    job.runner = null;
    if (outcome.kind === 'dropped') {
      if (job.cancelRequested) {
        this.#cancelUnstarted(job);
      } else if (comp.closing) {
        this.#handBack(job);
      } else if (this.#draining && !this.#stopping) {
        this.#drainBack(job);
      } else {
        // Taken back, or its runner died before starting it: back to the front of the queue
        // (a stopping daemon hands it back to the client instead).
        job.rebalancing = false;
        job.state = 'queued';
        comp.queued++;
        this.#queue.unshift(job);
      }
      this.#schedule();
      return;
    }
    const d = outcome.done;
    this.#owner?.jobs.delete(job.uid);
    job.args = new Uint8Array(0);
    job.end();
    if (job.startTime)
      comp.avgMs = comp.avgMs === Infinity ? d.endTime - job.startTime : comp.avgMs * 0.8 + (d.endTime - job.startTime) * 0.2;
    this.#send(
      job,
      this.#fitDone({
        t: 'done',
        uid: job.uid,
        status: d.ok ? 'Finished' : 'Terminated',
        result: d.result === null ? null : Buffer.from(d.result, 'base64'),
        exception: d.exception,
        code: d.code,
        stdout: d.stdout,
        stderr: d.stderr,
        startTime: job.startTime || null,
        endTime: d.endTime,
        cpuTime: d.cpuTime,
      }),
    );
    this.#compSettled(comp);
    this.#schedule();
  }

  /**
   * A job's end that would not fit in one message: a result that does not fit is refused (the
   * job ends Terminated with DISPY_ERR_MESSAGE_TOO_LARGE naming both sizes; the runner refuses
   * most of them before they reach the daemon), and output is shortened to what room is left.
   */
  #fitDone(msg: Extract<NodeMessage, { t: 'done' }>): Extract<NodeMessage, { t: 'done' }> {
    const max = this.maxMessageSize;
    if (doneSize(msg) <= max) return msg;
    let out = msg;
    if (out.result && doneSize({ ...out, stdout: '', stderr: '' }) > max) {
      const bytes = out.result.byteLength;
      out = {
        ...out,
        status: 'Terminated',
        result: null,
        code: 'DISPY_ERR_MESSAGE_TOO_LARGE',
        exception: `DispyError: the job's result encodes to ${bytes} bytes, more than node ${this.host}'s maximum message size of ${max} bytes (--max-message-size)`,
      };
      this.log.warn({ uid: msg.uid, bytes, max }, 'job result too large for a message: refused');
    }
    if (doneSize(out) > max) {
      const room = Math.max(0, Math.floor((max - doneSize({ ...out, stdout: '', stderr: '' })) / 2) - 64);
      const cut = (text: string): string =>
        Buffer.byteLength(text) <= room
          ? text
          : `${Buffer.from(text).subarray(0, room).toString('utf8')}\n[dispyts: output truncated to fit node ${this.host}'s maximum message size]\n`;
      out = { ...out, stdout: cut(out.stdout), stderr: cut(out.stderr) };
    }
    return out;
  }

  /**
   * Splits results to hand out so that a reply holding `fit` stays within the message size
   * (`reserve` bytes kept for the rest of it); `rest` must go another way.
   */
  #budget(results: JobDone[], reserve: number): { fit: JobDone[]; rest: JobDone[] } {
    let room = this.maxMessageSize - REPLY_RESERVE - reserve;
    const fit: JobDone[] = [];
    const rest: JobDone[] = [];
    for (const r of results) {
      const size = doneSize(r);
      if (size <= room) {
        fit.push(r);
        room -= size;
      } else rest.push(r);
    }
    return { fit, rest };
  }

  #send(job: NJob, msg: NodeMessage): void {
    let ch: Channel<ClientMessage, NodeMessage> | undefined = job.channel;
    // The submitting connection is gone; another connection of the same client may take it.
    if (ch.closed) ch = [...(this.#owner?.channels ?? [])].find((c) => !c.closed);
    if (ch) {
      if (msg.t === 'provisional' && ch.congested) {
        this.#holdProvisional(ch, msg);
        return;
      }
      // The final result replaces a provisional one still held.
      if (msg.t === 'done') this.#heldProvisional.get(ch)?.delete(msg.uid);
      try {
        ch.send(msg);
      } catch (err) {
        // #fitDone keeps a job's end within the limit; should anything still not fit, the job
        // ends saying so rather than the daemon failing.
        this.log.error({ uid: job.uid, t: msg.t, err: (err as Error).message }, 'message too large for the client: not sent');
        if (msg.t !== 'done') return;
        msg = {
          ...msg,
          status: 'Terminated',
          result: null,
          stdout: '',
          stderr: '',
          code: 'DISPY_ERR_MESSAGE_TOO_LARGE',
          exception: `DispyError: ${(err as Error).message}`,
        };
        ch.send(msg);
      }
      if (msg.t === 'done') this.#undelivered?.sent(job.comp.id, job.tag === undefined ? msg : { ...msg, tag: job.tag });
    } else if (msg.t === 'done') {
      // Nobody to tell: kept on disk until the client returns or recoverJobs asks.
      this.#undelivered?.keep(job.comp.id, job.tag === undefined ? msg : { ...msg, tag: job.tag });
    } else if (msg.t === 'nak') {
      // A job handed back that nobody can take back: it ends Cancelled, kept like a result.
      const now = Date.now();
      this.#undelivered?.keep(job.comp.id, {
        t: 'done',
        uid: job.uid,
        status: 'Cancelled',
        result: null,
        exception: `DispyError: ${msg.message}`,
        code: null,
        stdout: '',
        stderr: '',
        startTime: null,
        endTime: now,
        cpuTime: 0,
        ...(job.tag === undefined ? {} : { tag: job.tag }),
      });
    }
  }

  /**
   * A client that reads slower than its jobs send provisional results gets the latest one of
   * each job once its connection drains, not every one of them (they would pile up here).
   */
  #holdProvisional(ch: Channel<ClientMessage, NodeMessage>, msg: Extract<NodeMessage, { t: 'provisional' }>): void {
    let held = this.#heldProvisional.get(ch);
    if (!held) {
      const mine = new Map<number, NodeMessage>();
      held = mine;
      this.#heldProvisional.set(ch, mine);
      const release = (): void => {
        ch.off('drain', release);
        ch.off('close', release);
        this.#heldProvisional.delete(ch);
        if (!ch.closed) for (const m of mine.values()) ch.send(m);
      };
      ch.on('drain', release);
      ch.on('close', release);
    }
    held.set(msg.uid, msg);
  }

  /** Returns a job that never started to its client (a `nak`): it is not this node's anymore. */
  #handBack(job: NJob): void {
    this.#endUnstarted(job, {
      t: 'nak',
      uid: job.uid,
      reason: 'unknown-computation',
      message: `computation ${job.comp.id} is closing on ${this.host}`,
    });
  }

  /** Returns a job that never started to its client because the node is draining. */
  #drainBack(job: NJob): void {
    this.#endUnstarted(job, {
      t: 'nak',
      uid: job.uid,
      reason: 'draining',
      message: `node ${this.host} is draining: it starts no job until it resumes`,
    });
  }

  /** Every job waiting in the node's queue goes back to its client (a `nak` saying why). */
  #returnQueued(reason: 'draining' | 'shutdown', message: string): void {
    for (const job of this.#queue.splice(0)) {
      job.comp.queued--;
      this.#endUnstarted(job, { t: 'nak', uid: job.uid, reason, message });
    }
  }

  /** A job that never started ends Cancelled (cancelled by its client). */
  #cancelUnstarted(job: NJob): void {
    this.#endUnstarted(job, {
      t: 'done',
      uid: job.uid,
      status: 'Cancelled',
      result: null,
      exception: null,
      code: null,
      stdout: '',
      stderr: '',
      startTime: null,
      endTime: Date.now(),
      cpuTime: 0,
    });
  }

  /** Forgets a job that never started and tells its client with `msg`. */
  #endUnstarted(job: NJob, msg: NodeMessage): void {
    this.#owner?.jobs.delete(job.uid);
    job.end();
    this.#send(job, msg);
    this.#compSettled(job.comp);
  }

  #compSettled(comp: Comp): void {
    if (comp.running === 0 && comp.queued === 0 && comp.closeWaiters.length) {
      const waiters = comp.closeWaiters;
      comp.closeWaiters = [];
      for (const w of waiters) w();
    }
  }

  #cancel(clientId: string, uid: number): void {
    const job = this.#ownerOf(clientId)?.jobs.get(uid);
    if (!job || job.cancelRequested) return;
    job.cancelRequested = true;
    if (job.state === 'queued') {
      const i = this.#queue.indexOf(job);
      if (i >= 0) this.#queue.splice(i, 1);
      job.comp.queued--;
      this.#cancelUnstarted(job);
    } else if (job.state === 'assigned' && job.runner) this.#pool!.drop(job.runner, job.uid);
    else if (job.runner) this.#pool!.kill(job.runner, job.uid, 'DispyError: job terminated on request of the client');
  }

  /**
   * Closes a computation. Jobs that have not started go back to the client (it runs them
   * elsewhere, or cancels them if its cluster is closing); running ones are terminated, or
   * waited for.
   */
  async #closeComp(owner: Owner, comp: Comp, terminate: boolean): Promise<void> {
    comp.closing = true;
    if (terminate) comp.terminating = true;
    for (const job of [...this.#queue]) {
      if (job.comp !== comp) continue;
      this.#queue.splice(this.#queue.indexOf(job), 1);
      comp.queued--;
      this.#handBack(job);
    }
    for (const job of [...owner.jobs.values()]) {
      if (job.comp !== comp || !job.runner) continue;
      if (job.state === 'running') {
        if (terminate) this.#pool!.kill(job.runner, job.uid, 'DispyError: job terminated as its computation was closed');
      } else this.#pool!.drop(job.runner, job.uid);
    }
    if (comp.running > 0 || comp.queued > 0) await new Promise<void>((r) => comp.closeWaiters.push(r));
    if (owner.comps.get(comp.id) !== comp) return;
    owner.comps.delete(comp.id);
    await this.#pool?.unload(comp.id);
    this.#files?.close(owner.clientId, comp.id);
    this.log.info({ cluster: comp.cluster, computeId: comp.id }, 'computation closed');
    // Its program's last computation here: that program's runners are retired.
    if (![...owner.comps.values()].some((c) => c.program === comp.program)) this.#pool?.retireProgram(comp.program);
    if (owner.comps.size === 0 && owner.jobs.size === 0 && this.#owner === owner) this.#release(owner);
  }

  #release(owner: Owner): void {
    // Whatever led here, no runner of this client serves the next one.
    this.#pool?.retireProgram(owner.clientId, true);
    if (owner.zombieTimer) clearTimeout(owner.zombieTimer);
    if (owner.goneTimer) clearTimeout(owner.goneTimer);
    this.#owner = null;
    this.#served++;
    this.log.info({ clientId: owner.clientId, served: this.#served }, 'client done');
    const serve = this.#opts.serve ?? -1;
    if (serve >= 0 && this.#served >= serve) {
      this.log.info({ served: this.#served }, 'served the requested number of clients; exiting');
      setTimeout(() => void this.stop('served'), 50);
    } else if (!this.#stopping) this.#announcer?.announce('free');
  }

  // ---- the node's own page (node-httpd.ts): status, CPUs, drain ----

  /** Whether one more runner may take a job under the CPU limit (runners may outnumber CPUs). */
  #belowCpuLimit(): boolean {
    return this.#busyRunners() < this.cpuLimit;
  }

  #busyRunners(): number {
    let busy = 0;
    for (const r of this.#pool!.runners) if (r.jobs.size > 0) busy++;
    return busy;
  }

  /** Jobs queued inside runners that have not started come back to the node's queue. */
  #reclaimWaiting(): void {
    for (const comp of this.#owner?.comps.values() ?? []) this.#reclaimAboveCap(comp);
  }

  /** CPUs the node runs jobs on now (at most `cpus`). */
  get cpuLimit(): number {
    return this.#cpuLimit ?? this.cpus;
  }

  /** Whether the node is draining (see setDraining). */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Runs jobs on at most `cpus` of the node's CPUs (1 to `cpus`), at once: lowering it lets
   * running jobs finish and starts no more beyond it; raising it starts waiting jobs. Returns
   * the new limit.
   */
  setCpuLimit(cpus: number): number {
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > this.cpus)
      throw invalidOption('cpus', `an integer from 1 to ${this.cpus} (this node's --cpus)`, cpus);
    const lower = cpus < this.cpuLimit;
    this.#cpuLimit = cpus === this.cpus ? null : cpus;
    this.log.info({ cpus }, 'CPU limit changed');
    if (this.#pool) {
      if (lower) this.#reclaimWaiting();
      this.#schedule();
    }
    // The client shows the node's CPUs and sizes its window by them: it hears at once.
    this.#pulse();
    return this.cpuLimit;
  }

  /**
   * Drains the node (`true`): running jobs finish, no job starts and no new client is served;
   * jobs waiting here go back to their client (which runs them elsewhere, or here once the
   * node resumes) and it sends no more until the node resumes (`false`). Returns the new state.
   */
  setDraining(on: boolean): boolean {
    if (on === this.#draining) return on;
    this.#draining = on;
    this.log.info({ draining: on }, on ? 'node draining: no job starts until it resumes' : 'node resumes serving jobs');
    if (this.#pool) {
      if (on) {
        // Jobs queued inside runners come back through #ended as dropped, and go back too.
        this.#reclaimWaiting();
        this.#returnQueued('draining', `node ${this.host} is draining: it starts no job until it resumes`);
      } else this.#schedule();
    }
    // Clients stop (or resume) sending jobs here at once.
    this.#pulse();
    return on;
  }

  /** A read-only picture of the node for its page: CPUs, its client, running jobs, uptime. */
  status(): NodeDaemonStatus {
    const owner = this.#owner;
    const jobs: NodeDaemonStatus['jobs'] = [];
    for (const j of owner?.jobs.values() ?? [])
      jobs.push({ uid: j.uid, computeId: j.comp.id, cluster: j.comp.cluster, state: j.state, startTime: j.startTime || null });
    let busy = 0;
    for (const r of this.#pool?.runners ?? []) for (const a of r.jobs.values()) if (a.started) busy++;
    return {
      host: this.host,
      port: this.port,
      name: this.name,
      nodeId: this.nodeId,
      platform: platformString(),
      tls: this.tls,
      machineCpus: this.machineCpus,
      cpus: this.cpus,
      cpuLimit: this.cpuLimit,
      busy,
      running: this.#running,
      queued: this.#queue.length,
      draining: this.#draining,
      stopping: this.#stopping !== null,
      startTime: this.startTime,
      served: this.#served,
      client: owner
        ? {
            clientId: owner.clientId,
            peers: [...owner.channels].filter((c) => !c.closed).map((c) => c.peer),
            since: owner.since,
            computations: [...owner.comps.values()].map((c) => ({
              id: c.id,
              cluster: c.cluster,
              cap: c.cap,
              running: c.running,
              queued: c.queued,
              closing: c.closing,
            })),
          }
        : null,
      jobs,
    };
  }

  // ---- heartbeats ----

  /**
   * A client sends a heartbeat every `every` seconds; a connection of it that stayed silent for
   * 5 × that is closed, so its jobs wait for the client to return (up to the zombie interval)
   * rather than writing results into a dead connection. A live client is never cut off: its
   * heartbeats keep coming while it is idle.
   */
  #checkSilence(): void {
    const now = Date.now();
    for (const ch of this.#channels) {
      const heard = this.#heard.get(ch);
      if (!heard || heard.every <= 0 || ch.closed) continue;
      const silent = now - heard.at;
      if (silent > 5 * heard.every * 1000) {
        this.log.warn({ peer: ch.peer, silentMs: silent }, 'client sent no heartbeat for 5 intervals: connection closed');
        ch.close(new DispyError('DISPY_ERR_TIMEOUT', `client ${ch.peer} sent nothing for ${(silent / 1000).toFixed(1)} s`));
      }
    }
  }

  /** A client that reconnected names the jobs it still waits for; see `resumeSchema`. */
  #resume(ch: Channel<ClientMessage, NodeMessage>, clientId: string, msg: Extract<ClientMessage, { t: 'resume' }>): void {
    const wanted = new Set(msg.uids);
    const owner = this.#ownerOf(clientId);
    const uids: number[] = [];
    for (const job of [...(owner?.jobs.values() ?? [])]) {
      if (job.comp.id !== msg.computeId) continue;
      if (wanted.has(job.uid)) {
        job.channel = ch;
        uids.push(job.uid);
      } else {
        // An attempt the client gave up on (it declared this node dead meanwhile).
        this.#cancel(clientId, job.uid);
      }
    }
    const results = this.#undelivered?.take(msg.computeId, wanted) ?? [];
    const forgotten = this.#undelivered?.forget(msg.computeId) ?? 0;
    this.log.info(
      { clientId, computeId: msg.computeId, running: uids.length, delivered: results.length, forgotten },
      'client resumed its jobs',
    );
    // What does not fit in the reply follows as ordinary results (the client waits for them).
    const { fit, rest } = this.#budget(results, uids.length * 9);
    ch.send({ t: 'reply', rid: msg.rid, ok: true, uids, results: fit });
    for (const r of rest) {
      ch.send(r);
      this.#undelivered?.sent(msg.computeId, r);
    }
  }

  /**
   * `recoverJobs`: the results of a computation whose client program is gone. Refused while
   * that client is connected (its results reach it directly).
   */
  #recover(ch: Channel<ClientMessage, NodeMessage>, clientId: string, msg: Extract<ClientMessage, { t: 'recover' }>): void {
    const owner = this.#owner;
    const comp = owner?.comps.get(msg.computeId);
    if (owner && comp && owner.clientId !== clientId && [...owner.channels].some((c) => !c.closed)) {
      ch.send({
        t: 'reply',
        rid: msg.rid,
        ok: false,
        error: { code: 'DISPY_ERR_FORBIDDEN', message: `computation ${msg.computeId} on ${this.host} still has its client connected` },
      });
      return;
    }
    const pending: number[] = [];
    if (owner && comp) {
      for (const job of [...owner.jobs.values()]) {
        if (job.comp !== comp) continue;
        pending.push(job.uid);
        if (msg.terminate) this.#cancel(owner.clientId, job.uid);
      }
      // Nobody will use the computation again (its program is gone): the node is free once its
      // jobs ended.
      if ((msg.terminate || pending.length === 0) && !comp.closing) void this.#closeComp(owner, comp, true);
    }
    const results = this.#undelivered?.take(msg.computeId, null) ?? [];
    // What does not fit in the reply is kept and counted as pending: recoverJobs asks again.
    const { fit, rest } = this.#budget(results, pending.length * 9);
    for (const r of rest) {
      this.#undelivered?.keep(msg.computeId, r);
      pending.push(r.uid);
    }
    this.log.info(
      { peer: ch.peer, computeId: msg.computeId, results: fit.length, pending: pending.length, terminate: msg.terminate },
      'results recovered',
    );
    ch.send({ t: 'reply', rid: msg.rid, ok: true, uids: pending, results: fit });
  }

  #armPulse(): void {
    let every = this.#opts.pulseInterval ?? 10;
    for (const c of this.#owner?.comps.values() ?? []) if (c.pulseInterval > 0) every = Math.min(every, c.pulseInterval);
    if (every === this.#pulseEvery && this.#pulseTimer) return;
    if (this.#pulseTimer) clearInterval(this.#pulseTimer);
    this.#pulseEvery = every;
    this.#pulseTimer = setInterval(() => this.#pulse(), every * 1000);
    this.#pulseTimer.unref();
  }

  #pulse(): void {
    const owner = this.#owner;
    if (!owner) return;
    const msg: NodeMessage = {
      t: 'pulse',
      availInfo: this.#metrics.sample(),
      busy: this.#running,
      cpus: this.cpus,
      cpuLimit: this.cpuLimit,
      draining: this.#draining,
    };
    for (const ch of owner.channels) ch.send(msg);
  }

  // ---- shutdown ----

  /** Terminates running jobs (reported Terminated to their client), closes connections, stops. */
  stop(reason = 'stopped'): Promise<void> {
    this.#stopping ??= this.#doStop(reason);
    return this.#stopping;
  }

  async #doStop(reason: string): Promise<void> {
    this.log.info({ reason }, 'node stopping');
    this.#announcer?.close();
    this.#server?.close();
    if (this.#pulseTimer) clearInterval(this.#pulseTimer);
    if (this.#silenceTimer) clearInterval(this.#silenceTimer);
    this.#disarmIdleExit();
    // Jobs that never started go back to the client, which runs them elsewhere.
    const shutdown = `node ${this.host} is shutting down`;
    this.#returnQueued('shutdown', shutdown);
    // Running jobs are terminated (their client sees Terminated); jobs queued inside runners
    // come back through #ended as never started and are refused below.
    for (const r of this.#pool?.runners ?? [])
      if (r.jobs.size) this.#pool!.terminate(r, `DispyError: node ${this.host} is shutting down (${reason})`);
    await this.#pool?.close();
    this.#returnQueued('shutdown', shutdown);
    for (const ch of this.#channels) {
      ch.send({ t: 'closing', reason: `node ${this.host} is shutting down (${reason})` });
      ch.end();
    }
    if (this.#stateDir) {
      this.#orphans = this.#orphans.filter(isJobRunner);
      this.#orphanTags = this.#orphanTags.filter((t) => findTagged(t).length > 0);
      if (this.#orphans.length || this.#orphanTags.length) this.#writePidFile();
      else removePidFile(join(this.#stateDir, PID_FILE));
    }
    this.log.info('node stopped');
    this.#resolveStopped();
  }
}
