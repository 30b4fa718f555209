/**
 * JobCluster: one program owns a set of nodes and farms calls of a computation out to their
 * CPUs. Jobs queue here, go to the node with the lowest load, and come back with their result,
 * output and exception; status events are delivered in order, never re-entrantly.
 */
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { isIP } from 'node:net';
import pino, { type Logger } from 'pino';
import { DispyError, invalidOption } from '../errors.js';
import { DEFAULT_MAX_FRAME } from '../protocol/constants.js';
import type { Computation, Depend, JobFile, NodeMessage, Reply } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import { resolveSecret } from '../protocol/secret.js';
import { loadTls } from '../protocol/tls.js';
import { buildComputation, hookSources, type ModuleComputation, type Shippable } from './computation.js';
import type { ProgramComputation } from './interpreter.js';
import { Deque } from './deque.js';
import { CloseOnce } from './close-once.js';
import { IdleWaiters } from './idle-waiters.js';
import { dispatchPolicy, requestPump, registerCluster, unregisterCluster, type Dispatchable } from './dispatcher.js';
import { DispyJob } from './dispy-job.js';
import { DispyNode } from './dispy-node.js';
import { dependFiles, localFile, normalizeDestPath, transferFile, transferFiles, type LocalFile } from './file-transfer.js';
import { NodeAllocate, parseNodeSpecs, type NodeSpec } from './node-allocate.js';
import { checkOnePortPerHost, discoverSpecs } from './node-ports.js';
import { computationKind, splitJobDepends } from './job-scope.js';
import { type JobFileAnswer, ResultFiles } from './result-files.js';
import { ClusterDiscovery } from './node-discovery.js';
import { NodeResolver, type NodeLookup } from './node-resolver.js';
import { DISCOVERY_MODES, type DiscoveryMode } from '../protocol/discovery.js';
import { writeRecoverFile } from './recover-jobs.js';
import { NodeLink, type Credentials, type JobMessage, type LinkUser } from './node-link.js';
import { JobStatus, NodeStatus, type DispyStatus } from './status.js';
import { StatusEventQueue, type StatusEvent } from './status-events.js';
import { formatBytes, statusTable } from './print-status.js';
import { defaultPulse, reconnectWindow, requestTimeout } from './timeouts.js';

export { formatBytes };

export interface JobClusterOptions {
  /**
   * Nodes to use: host names, IP addresses, wildcards (`'127.0.0.*'`), `{ host, port, cpus }` or
   * NodeAllocate instances.
   * @default [host] (the node on the client's own address)
   * @example nodes: ['127.0.0.2', { host: '127.0.0.3', cpus: 1 }]
   */
  nodes?: NodeSpec | NodeSpec[];
  /**
   * Functions and classes the computation uses, shipped with it; instances of these classes in
   * arguments and results keep their methods. Strings are files sent to every node before
   * setup, into the computation's directory (jobs open them by base name).
   * @default []
   * @example depends: [C, helper, './lookup-table.json']
   */
  depends?: unknown[];
  /**
   * Called with each job on its provisional and final statuses (ProvisionalResult, Finished,
   * Terminated, Cancelled, Abandoned), in order and never re-entrantly.
   * @default undefined
   * @example jobStatus: (job) => { if (job.status === DispyJob.Finished) console.log(job.id, job.result); }
   */
  jobStatus?: (job: DispyJob) => void;
  /**
   * Called with every status change: `(status, node, job)`, in order and never re-entrantly.
   * @default undefined
   * @example clusterStatus: httpServer.clusterStatus   // a second cluster shown by one DispyHTTPServer
   */
  clusterStatus?: (status: DispyStatus, node: DispyNode | null, job: DispyJob | null) => void;
  /**
   * The client's address; nothing leaves loopback unless this or a node says so.
   * @default '127.0.0.1'
   * @example host: '192.0.2.10'
   */
  host?: string;
  /**
   * The client's port for discovery replies (0 = any).
   * @default 0
   * @example port: 9800
   */
  port?: number;
  /**
   * Shared secret of the nodes; the per-user secret file (`~/.config/dispyts/secret`) when
   * absent, which only works for nodes of the same user on the same machine.
   * @default undefined
   * @example secret: process.env.DISPYTS_SECRET
   */
  secret?: string;
  /**
   * Seconds between the heartbeats asked of nodes (0.1 to 1000); a node silent for 5 times
   * this is declared dead, and its jobs re-run elsewhere (`reentrant`) or end Abandoned. It also
   * sets how long a node keeps this program's jobs when the program's connection is gone (5 ×
   * this), and how long a broken connection to a node is waited for.
   * @default undefined (nodes send heartbeats every 10 s and one silent for 50 s is declared
   *   dead; broken connections are waited for 10 s)
   * @example pulseInterval: 2
   */
  pulseInterval?: number;
  /**
   * Seconds between re-discoveries of nodes (1 to 1000).
   * @default undefined (off)
   * @example pingInterval: 60
   */
  pingInterval?: number;
  /**
   * How wildcard `nodes` (`'10.0.0.*'`, `'*'`) are discovered when `host` is a non-loopback IPv4
   * address: a UDP discover request to the broadcast address of `host`'s interface (or the
   * multicast group 239.255.97.5, TTL 1) at each wildcard's node port, sent at start, every
   * `pingInterval` and on `discoverNodes()`; announcements nodes send to UDP port 9700 (shared
   * by every client on the machine) are heard as well. Nodes need the same mode. With `'off'`, or a
   * loopback `host`, nothing is sent and wildcards match only nodes this process is connected to.
   * Nodes' clocks must agree within 30 s (datagrams are time-stamped); the UDP sockets, like
   * connections to nodes, keep the process alive only while jobs are pending.
   * @default 'broadcast'
   * @example discovery: 'multicast'
   */
  discovery?: DiscoveryMode;
  /**
   * Resolves the host names of `nodes` (a `resolve: 'all'` spec is resolved again on
   * `discoverNodes()` and every `pingInterval`). Given `(hostname, { all: true })`, it resolves
   * to the name's addresses as `[{ address, family }]`; `dns.promises.lookup` fits as is.
   * Another resolver (a DNS client of your own, a fixed table in tests) can be given here.
   * @default dns.promises.lookup (the system's resolver)
   * @example lookup: (name) => Promise.resolve([{ address: '127.0.0.5', family: 4 }])
   */
  lookup?: NodeLookup;
  /**
   * Re-run jobs whose node died instead of abandoning them.
   * @default false
   * @example reentrant: true
   */
  reentrant?: boolean;
  /**
   * A file naming this cluster's computation and nodes, so that `recoverJobs({ recoverFile })`
   * can fetch the results of its jobs from the nodes if this program dies (nodes keep results
   * they could not deliver, on disk). It is also what keeps a vanished program's jobs running:
   * without it, a node terminates them and serves the next program once this one has been gone
   * for its reconnect window (10 s, or 5 × `pulseInterval`); with it, jobs that were running go
   * on up to the node's `--zombie-interval`. Jobs carry their `id` (when a string or number) to
   * the nodes for that. Removed by `close()`.
   * @default undefined (no file)
   * @example recoverFile: './render.recover.json'
   */
  recoverFile?: string;
  /**
   * Seconds the cluster may have jobs pending while no node is usable (every node refuses the
   * secret or TLS, has another protocol version, fails setup, is busy or unreachable, or no
   * node matches): then those jobs end Abandoned and `wait()` rejects with `DISPY_ERR_NO_NODE`.
   * Without it the jobs wait (the program stays alive) and the cluster's logger warns on stderr,
   * naming each node and why, with back-off.
   * @default undefined (off: wait for a node)
   * @example nodeTimeout: 600
   */
  nodeTimeout?: number;
  /**
   * The cluster's name, shown by the HTTP server.
   * @default the computation's name
   * @example name: 'render-frames'
   */
  name?: string;
  /**
   * Run once in each job runner on a node before its first job: `setup(...setupArgs)` with the
   * `setupArgs` of the NodeAllocate that matched the node. Throwing (or rejecting) closes the
   * computation on that node: an error event and a Closed event.
   * @default undefined
   * @example setup: (factor: number) => { (globalThis as any).factor = factor; }
   */
  setup?: (...args: never[]) => unknown;
  /**
   * `true`/`false`: whether nodes delete the computation's files when it closes; or a function
   * run in each runner that loaded the computation, when it closes, with setup's arguments
   * (`cleanup(...setupArgs)`, as in dispy; files are then deleted).
   * @default true
   * @example cleanup: () => { delete (globalThis as any).factor; }
   */
  cleanup?: boolean | ((...args: never[]) => unknown);
  /**
   * Named values (msgpack, as job arguments are; instances of classes in `depends` too) defined
   * as `const`s in the computation's scope on the nodes, as `depends` functions are, and seen by
   * `setup` and `cleanup` (dispy shipped any picklable object in `depends`). Function
   * computations only.
   * @default undefined
   * @example globals: { factor: 3, table: new Map([['a', 1]]) }
   */
  globals?: Record<string, unknown>;
  /**
   * Directory where files jobs send home with `dispySendFile(path)` are written, by base name
   * only (a node can never write outside it), each at most `maxFileSize` bytes; their paths are
   * in `job.files` before the job's final status.
   * @default the current working directory
   * @example resultsDir: './results'
   */
  resultsDir?: string;
  /**
   * Sub-directory (relative) on nodes where this cluster's files go; clusters with the same
   * `destPath` share their files.
   * @default undefined (a directory per computation)
   * @example destPath: 'frames'
   */
  destPath?: string;
  /**
   * Seconds after which a job is terminated (Terminated, `DISPY_ERR_MAX_RUNTIME`).
   * @default undefined (no limit)
   * @example maxRuntime: 600
   */
  maxRuntime?: number;
  /**
   * Largest file this cluster sends, in bytes (0 = unlimited).
   * @default 0
   * @example maxFileSize: 100 * 1024 * 1024
   */
  maxFileSize?: number;
  /**
   * `'job'`: every job runs in a fresh runner process on its node, which ends with the job
   * (dispy's model), so nothing one job leaves behind (globals, timers, changed prototypes,
   * `process.env`) is seen by another, at the cost of starting a process per job (the bench's
   * `isolateThroughput`). `setup` then runs before each job, in its process. Without it, the
   * jobs of this program share runners; runners are never shared with another program.
   * @default undefined (jobs of this program share runners)
   * @example isolate: 'job'
   */
  isolate?: 'job';
  /**
   * Largest encoded arguments of a job, in bytes: `submit()` throws DISPY_ERR_MESSAGE_TOO_LARGE,
   * naming both sizes, for a job whose arguments encode to more (the job is not queued). Nodes
   * announce their own limit (`--max-message-size`): a job is never sent to a node that does
   * not take it, and one that no node of the cluster takes ends Cancelled with that error.
   * @default 67108864 (64 MiB, the nodes' default --max-message-size)
   * @example maxArgsSize: 8 * 1024 * 1024
   */
  maxArgsSize?: number;
  /**
   * TLS: this client's certificate (PEM), presented to nodes that require one (mutual TLS); with
   * `keyFile`, or one PEM holding both. Turns TLS on (nodes are verified against the system CAs
   * unless `caFile` is given).
   * @default undefined
   * @example certFile: '/etc/dispyts/client.pem'
   */
  certFile?: string;
  /**
   * TLS: this client's private key (PEM).
   * @default undefined (the key in `certFile`)
   * @example keyFile: '/etc/dispyts/client-key.pem'
   */
  keyFile?: string;
  /**
   * TLS: CA certificate(s) that nodes' certificates must chain to; turns TLS on. Nodes are
   * addressed by IP, so their certificates need an IP subjectAltName.
   * @default undefined (no TLS unless `certFile` is given; then the system CAs)
   * @example caFile: '/etc/dispyts/ca.pem'
   */
  caFile?: string;
  /**
   * pino level of the client's log (stderr): trace, debug, info, warn, error, fatal or silent.
   * @default 'warn'
   * @example logLevel: 'debug'
   */
  logLevel?: string;
  /**
   * A logger to use instead of a new one.
   * @default undefined (a pino logger on stderr at `logLevel`)
   * @example logger: pino({ level: 'info' })
   */
  logger?: Logger;
  /**
   * @internal For `dispyts scheduler`: files jobs send home go to the program behind it instead
   * of resultsDir; resolves with that program's answer.
   */
  _relayJobFile?: (job: DispyJob, msg: JobFile) => Promise<JobFileAnswer>;
}

/** One status event, as `cluster.on('status')` delivers it (`cluster`: the cluster that emitted it). */
export type ClusterStatusEvent<C = JobCluster> = StatusEvent<C>;

/** Options of `submitWith`. */
export interface SubmitOptions {
  /**
   * File paths: sent to the job's node before it (into the computation's directory, the job's
   * working directory) and deleted there after it. Functions and classes (dispy's
   * `dispy_job_depends`): defined in the computation's scope for this job only, as the
   * cluster's `depends` are for every job (function computations).
   * @default []
   * @example depends: ['./input-7.csv', func1]
   */
  depends?: (string | Shippable)[];
  /**
   * The job's id.
   * @default a counter (1, 2, 3, ... per cluster)
   * @example id: 'frame-0042'
   */
  id?: unknown;
  /**
   * Run the job only on this node (a DispyNode, an IP address or a node name).
   * @default any node
   * @example node: '127.0.0.2'
   */
  node?: DispyNode | string;
  /**
   * Seconds after which this job is terminated.
   * @default the cluster's maxRuntime
   * @example maxRuntime: 30
   */
  maxRuntime?: number;
}

export interface ClusterStatus {
  nodes: DispyNode[];
  jobsPending: number;
}

/**
 * @internal A computation already in its wire form, with what goes with it, for a cluster
 * that runs another program's computation (`dispyts scheduler`, see `JobCluster._fromWire`).
 * Such a cluster leaves results and provisional results as the encoded bytes the node sent.
 */
export interface PrebuiltComputation {
  computation: Computation;
  /** Local files sent to every node before setup, with their names on the nodes. */
  files: LocalFile[];
  /** Source of `setup`, or null. */
  setup: string | null;
  /** `setup`'s arguments, already encoded (payload codec), or null. */
  setupArgs: Uint8Array | null;
  /** Source of `cleanup`, or null. */
  cleanup: string | null;
  /** Whether nodes delete the computation's files when it closes. */
  cleanupFiles: boolean;
  /** The cluster's destPath on nodes, or null. */
  destPath: string | null;
  /** The client program it comes from (nodes give each program runners of its own), or null. */
  program: string | null;
}

/** @internal Options of `JobCluster._submitEncoded`. */
export interface EncodedSubmitOptions {
  /** The job's id (default: a counter). */
  id?: unknown;
  /** The arguments as the HTTP server shows them (default: decoded without classes, or a placeholder). */
  display?: unknown[];
  /** Run only on this node (IP address or node name). */
  node?: string;
  /** Seconds after which the job is terminated (default: the cluster's maxRuntime). */
  maxRuntime?: number;
  /** Per-job files, sent to the job's node right before it (read from `path` each time it is sent). */
  files?: LocalFile[];
  /** The job's own functions and classes, as source. */
  depends?: Depend[];
}

const PREBUILT = Symbol('dispyts.prebuilt');

function prebuiltOf(c: unknown): PrebuiltComputation | null {
  return c !== null && typeof c === 'object' && PREBUILT in c ? (c as { [PREBUILT]: PrebuiltComputation })[PREBUILT] : null;
}

/** Decodes arguments for display only: classes are not known here, so instances come back as plain objects. */
let displayCodec: PayloadCodec | null = null;
function displayArgs(bytes: Uint8Array): unknown[] {
  try {
    displayCodec ??= new PayloadCodec();
    const v = displayCodec.decode(bytes);
    return Array.isArray(v) ? v : [v];
  } catch {
    return ['<encoded arguments>'];
  }
}

type ClusterEvents = {
  status: [ClusterStatusEvent];
  error: [DispyError];
};

interface Queued {
  job: DispyJob;
  args: Uint8Array;
  /** Per-job override of the cluster's maxRuntime (seconds). */
  maxRuntime?: number;
}

interface ClusterNode {
  link: NodeLink;
  node: DispyNode;
  spec: NodeAllocate;
  cap: number;
  inflight: number;
  ready: boolean;
  /** Running average of this cluster's job wall time on the node (ms). */
  avgMs: number;
  /**
   * Set while the connection is lost and the node not (yet) given up: its jobs stay with it
   * until a reconnection to the same daemon (same nodeId) resumes them, or the deadline passes.
   */
  suspended: { nodeId: string; deadline: number; timer: NodeJS.Timeout; wasReady: boolean } | null;
  /** Declared dead (silent for 5 × pulseInterval): its jobs go at once. */
  dead: boolean;
  /** Drained from its page (as last heard): no job is sent to it. */
  draining: boolean;
  /**
   * closeNode / resetupNode without terminatePending: no job goes there while its running jobs
   * finish (their results count); `closed` resolves once the node closed the computation.
   */
  closingNode: { kind: 'close' | 'resetup'; closed: Promise<void> } | null;
}

interface Sent extends Queued {
  cn: ClusterNode;
  started: boolean;
  pinned: boolean;
}

/** A sent job back to its queued form (everything but where it was sent). */
function queuedPart(s: Sent): Queued {
  const { cn, started, pinned, ...item } = s;
  void cn;
  void started;
  void pinned;
  return item;
}

// `any` on purpose: a program or module computation takes any arguments, while a function's
// own parameter types are inferred in its place.
// biome-ignore lint/suspicious/noExplicitAny: a constraint every function satisfies (unknown[] parameters would reject typed ones)
type AnyFn = (...args: any[]) => unknown;

let uidCounter = 0;

/** @internal A new process-wide job uid (jobs of every cluster kind share the sequence). */
export function nextJobUid(): number {
  return ++uidCounter;
}

export { RECONNECT_WINDOW } from './timeouts.js';

/** Seconds with jobs pending and no usable node before the first warning; then doubled each time, up to WARN_MAX. */
const WARN_FIRST = 5;
const WARN_MAX = 300;

/**
 * Times a job may be sent and lost unstarted with its connection before it is given up
 * (Abandoned, DISPY_ERR_UNDELIVERABLE): a job the connection breaks on is never re-sent forever.
 */
export const MAX_SEND_ATTEMPTS = 5;

/** Bytes of a job message besides its arguments and per-job file names (ids, tag, MAC, framing). */
const JOB_ENVELOPE = 4096;

export class JobCluster<F extends AnyFn = AnyFn> extends EventEmitter<ClusterEvents> implements LinkUser, Dispatchable {
  readonly name: string;
  readonly computeId: string;
  readonly log: Logger;
  readonly #opts: JobClusterOptions;
  /** The wire form of the computation (a module is bundled asynchronously). */
  readonly #computation: Promise<Computation>;
  /** Local files to ship to every node before setup (program file, file depends). */
  readonly #computationFiles: string[];
  /** Set for a cluster built from a wire computation (`_fromWire`): results stay encoded. */
  readonly #prebuilt: PrebuiltComputation | null;
  /** The cluster's destPath on nodes (dispy's dest_path), normalized. */
  readonly #destPath: string | null;
  /** What submitWith adds to a job: its per-job files and its maxRuntime. */
  readonly #jobExtras = new WeakMap<DispyJob, { files: LocalFile[]; maxRuntime?: number; depends?: Depend[] }>();
  /** The kind of computation, for what a job's depends may hold (job-scope.ts). */
  readonly #kind: Computation['kind'] | null;
  /** Files jobs send home (result-files.ts). */
  readonly #resultFiles: ResultFiles;
  /** Jobs cancelled while their per-job files were on their way (the job not sent yet). */
  readonly #cancelRequested = new WeakSet<DispyJob>();
  /** Sources of setup and cleanup, shipped with the computation. */
  readonly #hooks: { setup: string | null; cleanup: string | null };
  readonly #codec: PayloadCodec;
  readonly #creds: Credentials;
  readonly #specs: NodeAllocate[];
  readonly #discovery: ClusterDiscovery;
  readonly #resolver: NodeResolver;
  /** Nodes being added because a followed name resolved to them (allocateNode waits for these). */
  readonly #following = new Map<string, Promise<void>>();
  readonly #nodes = new Map<string, ClusterNode>();
  /** Every node this cluster used, closed ones included (for printStatus). */
  readonly #everyNode = new Map<string, DispyNode>();
  readonly #connecting = new Set<string>();
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  readonly #lastError = new Map<string, string>();
  /** Why each node that is not usable is not, as last heard (for the warnings). */
  readonly #problems = new Map<string, string>();
  /** The address each node named by a host name resolved to. */
  readonly #resolved = new Map<string, string>();
  /** While jobs are pending: checks that a node is usable (warnings, nodeTimeout). */
  #watchTimer: NodeJS.Timeout | null = null;
  /** ms since epoch since when jobs are pending and no node is usable (null: one is). */
  #unusableSince: number | null = null;
  #warnDelay = WARN_FIRST;
  #nextWarnAt = 0;
  /** The daemon identity (nodeId) last seen at each address. */
  readonly #nodeIds = new Map<string, string>();
  /** Every node set up, for the recover file. */
  readonly #recoverNodes = new Map<string, number>();
  #lastPulseCheck = Date.now();
  #pulseTimer: NodeJS.Timeout | null = null;
  readonly #queue = new Deque<Queued>();
  /** Jobs larger than a node with room takes: they go, first, to a node that takes them. */
  readonly #large = new Deque<Queued>();
  /** Nodes already reported (error event) for refusing a job by size. */
  readonly #sizeReported = new Set<string>();
  /** Per job: sends lost unstarted with their connection so far. */
  readonly #lostSends = new WeakMap<DispyJob, number>();
  readonly #pinned = new Map<string, Deque<Queued>>();
  readonly #sent = new Map<number, Sent>();
  #pending = 0;
  #jobIds = 0;
  readonly #statusEvents: StatusEventQueue<JobCluster>;
  readonly #idleWaiters = new IdleWaiters();
  #closing = false;
  #closed = false;
  readonly #closeOnce = new CloseOnce();

  /**
   * @param computation a function (shipped as source with `depends`), a program path (shipped
   *   and spawned per job with the stringified arguments; the result is its exit code), or
   *   `{ module, export }` (the module bundled with its imports by esbuild).
   *   A program that is not a file is looked up on PATH; type it as
   *   `new JobCluster<(...args: unknown[]) => number>('prog')` to submit any arguments.
   *   A script runs with its interpreter: `['python3', 'script.py']` or `{ program, interpreter }`
   *   (a `.js`/`.mjs` file with the node's Node.js, a `#!` line as it says).
   *   Strings in `depends` are files sent to every node before setup, into the computation's
   *   directory, where jobs (whose working directory it is) open them by base name.
   */
  constructor(computation: F | string | string[] | ProgramComputation | ModuleComputation, options: JobClusterOptions = {}) {
    super();
    validateOptions(options);
    this.#opts = options;
    const pre = prebuiltOf(computation);
    this.#prebuilt = pre;
    this.#kind = pre ? pre.computation.kind : computationKind(computation);
    const built = pre
      ? { name: pre.computation.name || 'compute', wire: Promise.resolve(pre.computation), classes: [], files: [] }
      : buildComputation(computation, options);
    this.name = options.name ?? built.name;
    this.log = options.logger ?? pino({ level: options.logLevel ?? 'warn', base: { cluster: this.name } }, pino.destination(2));
    this.#resultFiles = new ResultFiles({ dir: options.resultsDir ?? process.cwd(), maxFileSize: options.maxFileSize ?? 0, log: this.log });
    this.#statusEvents = StatusEventQueue.ofCluster<JobCluster>(this as JobCluster, options, this.log);
    this.#computation = built.wire;
    // Failures surface when a node is set up (an error event); nothing is left unhandled.
    this.#computation.catch(() => undefined);
    this.#computationFiles = built.files;
    this.#destPath = normalizeDestPath(pre ? (pre.destPath ?? undefined) : options.destPath, this.log);
    this.#hooks = pre ? { setup: pre.setup, cleanup: pre.cleanup } : hookSources(options);
    this.#codec = new PayloadCodec(built.classes);
    this.computeId = `${Date.now().toString(36)}-${(++uidCounter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    // Unreadable or unusable TLS files fail here (DISPY_ERR_TLS), not at the first connection.
    this.#creds = { secret: resolveSecret(options.secret), tls: loadTls(options, 'client') };
    this.#specs = parseNodeSpecs(options.nodes ?? [options.host ?? '127.0.0.1']);
    this.#discovery = new ClusterDiscovery({
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 0,
      secret: this.#creds.secret,
      mode: options.discovery,
      pingInterval: options.pingInterval,
      log: this.log,
      specs: () => this.#specs,
      onNode: (ip, port, spec) => void this.#addNode(ip, port, spec),
    });
    this.#resolver = new NodeResolver({
      lookup: options.lookup,
      pingInterval: options.pingInterval,
      log: this.log,
      specs: () => this.#specs,
      onResolved: (spec, addresses) => this.#followed(spec, addresses),
      onError: (err) => this.#emitError(err),
    });
    registerCluster(this);
    if (options.recoverFile) this.#writeRecoverFile();
    // Without pulseInterval nodes are asked for heartbeats every 10 s, and one silent for 5 of
    // them is declared dead too: no job waits forever on a stopped or cut-off node.
    const pulse = options.pulseInterval ?? defaultPulse();
    this.#pulseTimer = setInterval(() => this.#checkPulses(pulse), pulse * 1000);
    this.#pulseTimer.unref();
    if (!this.#discovery.enabled) {
      const wild = this.#specs.filter((s) => s.isWildcard).map((s) => s.host);
      if (wild.length)
        this.log.warn(
          { nodes: wild, host: options.host ?? '127.0.0.1', discovery: options.discovery ?? 'broadcast' },
          `nodes ${wild.join(', ')}: nothing will be discovered (${options.discovery === 'off' ? "discovery is 'off'" : `the cluster's host ${options.host ?? '127.0.0.1'} is a loopback address`}); a wildcard only matches nodes this program is already connected to`,
        );
    }
    void this.#initNodes();
  }

  /**
   * @internal For `dispyts scheduler`: a cluster running a computation another program built
   * (its wire form, files, setup and cleanup as that program sent them). Options `setup`,
   * `cleanup`, `destPath` and `depends` are taken from `pre`, not from `options`. Jobs are
   * submitted with `_submitEncoded`; results and provisional results stay encoded (`job.result`
   * is the node's bytes) so they can be forwarded untouched.
   */
  static _fromWire(pre: PrebuiltComputation, options: JobClusterOptions = {}): JobCluster {
    return new JobCluster({ [PREBUILT]: pre } as unknown as string, options);
  }

  // ---- nodes ----

  async #initNodes(): Promise<void> {
    for (const spec of this.#specs) if (spec.resolve !== 'all') void this.#resolveSpec(spec);
    await Promise.all([this.#resolver.refresh(), this.#discovery.discover()]);
  }

  /**
   * A followed name (`resolve: 'all'`) resolved to `addresses`: each is a node (tried again if
   * it failed before), and this spec's nodes at other addresses are retired as lost nodes.
   */
  #followed(spec: NodeAllocate, addresses: ReadonlySet<string>): void {
    if (this.#closing) return;
    for (const cn of [...this.#nodes.values()]) {
      const ip = cn.node.ipAddr;
      if (cn.spec !== spec || addresses.has(ip) || this.#nodes.get(ip) !== cn) continue;
      // Told to the node first (when it still answers): it stops what it runs for us.
      const mine = [...this.#sent].filter(([, s]) => s.cn === cn).map(([uid]) => uid);
      if (!cn.link.closed) cn.link.request({ t: 'close', computeId: this.computeId, terminate: true }).catch(() => undefined);
      for (const uid of mine) cn.link.forget(uid);
      this.#dropNode(cn, new DispyError('DISPY_ERR_CONNECTION', `${ip} is no longer an address of ${spec.host}: node retired`));
    }
    for (const ip of addresses) {
      if (this.#following.has(ip)) continue;
      const p = this.#addNode(ip, spec.port, spec).finally(() => this.#following.delete(ip));
      this.#following.set(ip, p);
    }
  }

  async #resolveSpec(spec: NodeAllocate): Promise<void> {
    if (spec.isWildcard) {
      for (const { host, port } of await NodeLink.known(spec.ipRex)) void this.#addNode(host, port, spec);
      return;
    }
    let ip = spec.host;
    if (!isIP(ip)) {
      try {
        ip = await this.#lookupFirst(spec);
        this.#resolved.set(spec.host, ip);
      } catch (err) {
        this.#problems.set(spec.host, `cannot resolve the name: ${(err as Error).message}`);
        this.#emitError(err as DispyError);
        return;
      }
    }
    await this.#addNode(ip, spec.port, spec);
  }

  /** The first address a host name spec resolves to; the spec then matches it. */
  async #lookupFirst(spec: NodeAllocate): Promise<string> {
    const [ip] = await this.#resolver.lookup(spec.host);
    if (ip === undefined) throw new DispyError('DISPY_ERR_CONNECTION', `cannot resolve node ${spec.host}: it has no address`);
    spec._setAddresses([ip]);
    return ip;
  }

  /** The spec that decides for `ip`: the first one whose pattern matches (or whose name resolved to it). */
  #specFor(ip: string): NodeAllocate | undefined {
    return this.#specs.find((s) => s.matches(ip) || s.host === ip);
  }

  async #addNode(ip: string, port: number, spec: NodeAllocate, failures = 0): Promise<void> {
    const current = this.#nodes.get(ip);
    if (this.#closing || (current && !current.suspended) || this.#connecting.has(ip)) return;
    // A retry for an address its followed name no longer lists.
    if (spec.resolve === 'all' && !this.#resolver.has(spec, ip)) return;
    this.#connecting.add(ip);
    let link: NodeLink | null = null;
    try {
      link = await NodeLink.open(ip, port, this.#creds, this, this.log);
      const info = link.info;
      const cpus = Math.min(spec.allocate(this, ip, info.name, info.cpus, info.availInfo, info.platform), info.cpus);
      // What allocate() chose for this node, read before any await: a NodeAllocate shared by
      // several nodes may set other depends/setupArgs for the next one meanwhile.
      const setupFiles = this.#setupFiles(spec);
      const setupArgs = spec.setupArgs;
      if (!(cpus > 0)) {
        this.log.info({ node: ip }, 'node not allocated (0 cpus)');
        this.#problems.set(ip, 'not allocated (NodeAllocate.allocate gave it 0 cpus)');
        link.release(this);
        return;
      }
      if (this.#closing) {
        link.release(this);
        return;
      }
      const computation = await this.#computation;
      // Files first (program, file depends, the spec's depends), so setup finds them.
      const shipped = await transferFiles(link, this.computeId, setupFiles, this.#fileOpts());
      const { setup, cleanup } = this.#opts;
      const pre = this.#prebuilt;
      await link.request({
        t: 'setup',
        computeId: this.computeId,
        cluster: this.name,
        computation,
        cpus,
        pulseInterval: this.#opts.pulseInterval ?? defaultPulse(),
        // The node keeps our jobs as long as we would wait for it after a broken connection.
        reconnectWindow: this.#opts.pulseInterval ? 5 * this.#opts.pulseInterval : reconnectWindow(),
        recoverable: this.#opts.recoverFile !== undefined,
        setup: this.#hooks.setup,
        // cleanup gets setup's arguments too.
        setupArgs: pre
          ? pre.setup || pre.cleanup
            ? pre.setupArgs
            : null
          : setup || typeof cleanup === 'function'
            ? this.#codec.encode(setupArgs, 'setupArgs')
            : null,
        cleanup: this.#hooks.cleanup,
        cleanupFiles: pre ? pre.cleanupFiles : cleanup !== false,
        destPath: this.#destPath,
        isolate: this.#opts.isolate ?? null,
        program: pre?.program ?? null,
      });
      if (this.#closing) {
        await link.request({ t: 'close', computeId: this.computeId, terminate: true }).catch(() => undefined);
        link.release(this);
        return;
      }
      const prev = this.#nodes.get(ip);
      if (prev?.suspended) {
        if (prev.suspended.nodeId === info.nodeId) {
          await this.#resume(prev, link);
          return;
        }
        // Another daemon answers at that address: what ran on the old one is gone.
        this.#dropNode(prev, new DispyError('DISPY_ERR_CONNECTION', `node ${ip} restarted (a new daemon answers there)`));
      }
      if (this.#nodeIds.get(ip) === info.nodeId) {
        // The same daemon as before (its link returned after we gave it up): it stops what it
        // still runs for us and forgets results kept for us. Sent before any new job.
        link.request({ t: 'resume', computeId: this.computeId, uids: [] }).catch((err: unknown) => {
          this.log.debug({ node: ip, err: (err as Error).message }, 'resume after reconnection failed');
        });
      }
      this.#nodeIds.set(ip, info.nodeId);
      const node = new DispyNode(ip, port, info.name, this);
      node.availCpus = link.cpus;
      node.cpus = Math.min(cpus, link.cpus);
      node.machineCpus = info.machineCpus;
      node.availInfo = info.availInfo;
      node.platform = info.platform;
      this.#nodes.set(ip, {
        link,
        node,
        spec,
        cap: cpus,
        inflight: 0,
        ready: true,
        avgMs: Infinity,
        suspended: null,
        dead: false,
        draining: link.draining,
        closingNode: null,
      });
      this.#lastError.delete(ip);
      this.#problems.delete(ip);
      link.updateRef();
      // A node that comes back keeps its counters in the table under the same address.
      const before = this.#everyNode.get(ip);
      if (before) {
        node.jobsDone = before.jobsDone;
        node.jobTime = before.jobTime;
        node.cpuUsed = before.cpuUsed;
        node.tx = before.tx;
        node.rx = before.rx;
      }
      this.#everyNode.set(ip, node);
      node.tx += shipped;
      this.log.info({ node: ip, cpus }, 'node initialized');
      if (this.#opts.recoverFile && !this.#recoverNodes.has(ip)) {
        this.#recoverNodes.set(ip, port);
        this.#writeRecoverFile();
      }
      this.#emit(NodeStatus.Initialized, node, null);
      requestPump();
    } catch (err) {
      const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_CONNECTION', (err as Error).message);
      this.#problems.set(ip, `${e.code}: ${e.message}`);
      if (e.code === 'DISPY_ERR_SETUP' && link) {
        // The computation was closed on that node: say so, with a Closed event for it.
        const node = new DispyNode(ip, port, link.info.name, this);
        node.availCpus = link.cpus;
        node.machineCpus = link.info.machineCpus;
        node.status = NodeStatus.Closed;
        this.#emitError(new DispyError(e.code, `node ${ip}:${port}: ${e.message}`, { cause: e }));
        this.#emit(NodeStatus.Closed, node, null);
        link.release(this);
        return;
      }
      link?.release(this);
      const waiting = this.#nodes.get(ip);
      if (waiting?.suspended && (e.code !== 'DISPY_ERR_CONNECTION' || /ECONNREFUSED/.test(e.message))) {
        // Nothing listens there any more (or someone else owns it): the daemon we had is gone.
        this.#dropNode(waiting, new DispyError(e.code, `node ${ip} cannot be reached again: ${e.message}`));
      }
      // Report each kind of failure once per node, not at every retry.
      if (this.#lastError.get(ip) !== e.code) {
        this.#lastError.set(ip, e.code);
        this.#emitError(new DispyError(e.code, `node ${ip}:${port}: ${e.message}`, { cause: e }));
      }
      // What is wrong with the program itself does not fix itself; the rest (a node's secret,
      // TLS or version fixed by its admin included) is retried with back-off.
      if (
        ![
          'DISPY_ERR_COMPUTATION',
          'DISPY_ERR_FREE_VARIABLE',
          'DISPY_ERR_FILE_TOO_LARGE',
          'DISPY_ERR_FORBIDDEN',
          'DISPY_ERR_MESSAGE_TOO_LARGE',
        ].includes(e.code)
      ) {
        this.#retry(ip, port, spec, failures + 1);
      }
    } finally {
      this.#connecting.delete(ip);
    }
  }

  #retry(ip: string, port: number, spec: NodeAllocate, failures: number): void {
    if (this.#closing) return;
    // A suspended node is tried again quickly (its jobs are waiting); a busy one every 2 s at most.
    const suspended = this.#nodes.get(ip)?.suspended;
    const busy = this.#lastError.get(ip) === 'DISPY_ERR_NODE_BUSY';
    const delay = suspended ? Math.min(1, 0.1 * 2 ** Math.min(failures, 6)) : Math.min(busy ? 2 : 30, 0.5 * 2 ** Math.min(failures, 6));
    const t = setTimeout(() => {
      this.#retryTimers.delete(t);
      void this.#addNode(ip, port, spec, failures);
    }, delay * 1000);
    if (this.#pending === 0) t.unref();
    this.#retryTimers.add(t);
  }

  /**
   * Nodes send a heartbeat every `pulseInterval` (every 10 s without it); one silent for 5
   * intervals, busy or idle, is declared dead: its connection is closed, which re-runs or
   * abandons its jobs and emits Closed (and the node is retried, so one that comes back is used
   * again).
   */
  #checkPulses(pulseInterval: number): void {
    const limitMs = 5 * pulseInterval * 1000;
    const now = Date.now();
    const sinceLast = now - this.#lastPulseCheck;
    const late = sinceLast > 2 * pulseInterval * 1000 + 1000;
    this.#lastPulseCheck = now;
    if (late) {
      // This timer itself ran late: this process was stopped or blocked, so the silence was
      // ours, not the nodes'. They get a fresh 5 intervals.
      this.log.warn({ lateMs: sinceLast }, 'heartbeat check ran late (process paused?): nodes not judged this round');
      for (const cn of this.#nodes.values()) cn.link.lastHeard = Math.max(cn.link.lastHeard, now);
      return;
    }
    for (const cn of [...this.#nodes.values()]) {
      const silent = now - cn.link.lastHeard;
      if (cn.link.closed || silent <= limitMs) continue;
      cn.dead = true;
      this.log.warn({ node: cn.node.ipAddr, silentMs: silent }, 'node missed its heartbeats: declared dead');
      cn.link.channel.close(
        new DispyError(
          'DISPY_ERR_CONNECTION',
          `node ${cn.node.ipAddr} sent nothing for ${(silent / 1000).toFixed(1)} s (5 heartbeats of ${pulseInterval} s): declared dead`,
        ),
      );
    }
  }

  #nodeOf(node: DispyNode | string): ClusterNode | undefined {
    if (node instanceof DispyNode) return this.#nodes.get(node.ipAddr);
    return this.#nodes.get(node) ?? [...this.#nodes.values()].find((cn) => cn.node.name === node);
  }

  // ---- submitting ----

  /** Queues a job calling the computation with `args`. */
  submit(...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(undefined, null, args);
  }

  /** Like submit, with the job's `id` set. */
  submitJobId(id: unknown, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    return this.#submit(id, null, args);
  }

  /** Queues a job that runs only on `node` (a DispyNode, an IP address or a node name). */
  submitNode(node: DispyNode | string, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    const ip = node instanceof DispyNode ? node.ipAddr : (this.#nodeOf(node)?.node.ipAddr ?? (isIP(node) ? node : null));
    if (!ip || (!this.#nodes.has(ip) && !this.#specFor(ip))) {
      throw new DispyError(
        'DISPY_ERR_NODE_UNKNOWN',
        `node ${String(node instanceof DispyNode ? node.ipAddr : node)} is not a node of cluster ${this.name}`,
      );
    }
    return this.#submit(undefined, ip, args);
  }

  /**
   * Queues a job with options (dispy's `submit(..., dispy_job_depends=...)` and friends):
   * `depends` are files sent to the job's node right before the job, into the computation's
   * directory (the job's working directory: open them by base name), and deleted there after
   * it; `id` sets the job's id; `node` runs it only there (as submitNode); `maxRuntime` limits
   * this job (seconds). Missing or too large files throw here.
   * @example cluster.submitWith({ depends: ['./input-7.csv'], id: 7 }, 'input-7.csv')
   */
  submitWith(options: SubmitOptions, ...args: Parameters<F>): DispyJob<Awaited<ReturnType<F>>> {
    if (options === null || typeof options !== 'object') throw invalidOption('options', 'an object', options);
    const { depends = [], node, maxRuntime } = options;
    if (!Array.isArray(depends)) throw invalidOption('depends', 'an array of file paths, functions and classes', depends);
    // Functions and classes are this job's own code (job-scope.ts); strings are its files.
    const { code } = splitJobDepends(depends, this.#kind);
    if (maxRuntime !== undefined && !(typeof maxRuntime === 'number' && maxRuntime > 0 && Number.isFinite(maxRuntime)))
      throw invalidOption('maxRuntime', 'a positive number of seconds', maxRuntime);
    const files = dependFiles(depends, 'depends', this.#opts.maxFileSize ?? 0);
    let pinTo: string | null = null;
    if (node !== undefined && node !== null) {
      pinTo = node instanceof DispyNode ? node.ipAddr : (this.#nodeOf(node)?.node.ipAddr ?? (isIP(node) ? node : null));
      if (!pinTo || (!this.#nodes.has(pinTo) && !this.#specFor(pinTo))) {
        throw new DispyError(
          'DISPY_ERR_NODE_UNKNOWN',
          `node ${String(node instanceof DispyNode ? node.ipAddr : node)} is not a node of cluster ${this.name}`,
        );
      }
    }
    const job = this.#submit(options.id, pinTo, args);
    // Read when the job is sent (never before the next tick).
    if (files.length || maxRuntime !== undefined || code.length)
      this.#jobExtras.set(job as DispyJob, {
        files,
        ...(maxRuntime === undefined ? {} : { maxRuntime }),
        ...(code.length ? { depends: code } : {}),
      });
    return job;
  }

  #submit(id: unknown, pinTo: string | null, args: unknown[]): DispyJob<Awaited<ReturnType<F>>> {
    if (this.#closing) throw new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${this.name} is closed`);
    return this.#enqueue(id, pinTo, args, this.#checkArgs(this.#codec.encode(args, 'args')), undefined);
  }

  /** Refuses arguments larger than `maxArgsSize` (DISPY_ERR_MESSAGE_TOO_LARGE, naming both sizes). */
  #checkArgs(bytes: Uint8Array): Uint8Array {
    const max = this.#opts.maxArgsSize ?? DEFAULT_MAX_FRAME;
    if (bytes.length > max) {
      throw new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `the job's arguments encode to ${bytes.length} bytes, more than cluster ${this.name}'s maxArgsSize of ${max} bytes`,
      );
    }
    return bytes;
  }

  /**
   * @internal For `dispyts scheduler`: queues a job whose arguments are already encoded (by the
   * submitting program's payload codec); `display` is what the HTTP server shows as its
   * arguments. Throws DISPY_ERR_CLUSTER_CLOSED, or DISPY_ERR_NODE_UNKNOWN for a `node` that is
   * not this cluster's.
   */
  _submitEncoded(args: Uint8Array, options: EncodedSubmitOptions = {}): DispyJob {
    if (this.#closing) throw new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${this.name} is closed`);
    let pinTo: string | null = null;
    if (options.node !== undefined) {
      pinTo = this.#nodeOf(options.node)?.node.ipAddr ?? (isIP(options.node) ? options.node : null);
      if (!pinTo || (!this.#nodes.has(pinTo) && !this.#specFor(pinTo)))
        throw new DispyError('DISPY_ERR_NODE_UNKNOWN', `node ${options.node} is not a node of cluster ${this.name}`);
    }
    const job = this.#enqueue(options.id, pinTo, options.display ?? [], this.#checkArgs(args), options.maxRuntime) as DispyJob;
    if (options.files?.length || options.depends?.length)
      this.#jobExtras.set(job, { files: options.files ?? [], ...(options.depends?.length ? { depends: options.depends } : {}) });
    if (!options.display) {
      // Decoded only if something looks (the HTTP server with showJobArgs): most jobs never are.
      let shown: unknown[] | null = null;
      Object.defineProperty(job, 'args', {
        enumerable: true,
        configurable: true,
        get: () => (shown ??= displayArgs(args)),
        set: (v: unknown[]) => {
          shown = v;
        },
      });
    }
    return job;
  }

  #enqueue(
    id: unknown,
    pinTo: string | null,
    args: unknown[],
    bytes: Uint8Array,
    maxRuntime: number | undefined,
  ): DispyJob<Awaited<ReturnType<F>>> {
    const job = new DispyJob<Awaited<ReturnType<F>>>(
      ++uidCounter,
      id === undefined || id === null || id === '' ? ++this.#jobIds : id,
      args,
      this,
    );
    this.#pending++;
    const item: Queued =
      maxRuntime === undefined ? { job: job as DispyJob, args: bytes } : { job: job as DispyJob, args: bytes, maxRuntime };
    if (pinTo) {
      let q = this.#pinned.get(pinTo);
      if (!q) {
        q = new Deque();
        this.#pinned.set(pinTo, q);
      }
      q.push(item);
    } else this.#queue.push(item);
    this.#emit(JobStatus.Created, null, job as DispyJob);
    if (this.#pending === 1) this.#setActive(true);
    requestPump();
    return job;
  }

  /** @internal Submission order of the earliest queued job (the scheduler's `fsfs` policy), or null. */
  headOrder(): number | null {
    if (this.#closing) return null;
    while (this.#queue.length && this.#queue.peek()!.job.settled) this.#queue.shift();
    let best = this.#queue.length ? this.#queue.peek()!.job._uid : null;
    const large = this.#large.peek();
    if (large && !large.job.settled && (best === null || large.job._uid < best)) best = large.job._uid;
    for (const q of this.#pinned.values()) {
      const head = q.peek();
      if (head && !head.job.settled && (best === null || head.job._uid < best)) best = head.job._uid;
    }
    return best;
  }

  /** @internal Sends one queued job to a node if any has room; true if it did. */
  dispatchOne(): boolean {
    if (this.#closing) return false;
    for (const [ip, q] of this.#pinned) {
      if (q.length === 0) continue;
      const cn = this.#nodes.get(ip);
      if (!cn || !canSend(cn)) continue;
      const item = q.shift()!;
      if (item.job.settled) return true;
      // It may run only there: a node that does not take it never will.
      if (!this.#fits(cn, item)) this.#tooLarge(item);
      else this.#send(cn, item, true);
      return true;
    }
    if (this.#large.length && this.#dispatchLarge()) return true;
    while (this.#queue.length && this.#queue.peek()!.job.settled) this.#queue.shift();
    if (this.#queue.length === 0) return false;
    const head = this.#queue.peek()!;
    const { best, room } = this.#bestNode(head);
    if (!best) {
      // A node has room but does not take a job that large: it waits apart for one that does.
      if (!room) return false;
      this.#queue.shift();
      this.#setAside(head);
      return true;
    }
    this.#send(best, this.#queue.shift()!, false);
    return true;
  }

  /** The least loaded node that may take `item` now; `room`: whether any node has room at all. */
  #bestNode(item: Queued): { best: ClusterNode | null; room: boolean } {
    let best: ClusterNode | null = null;
    let bestLoad = Infinity;
    let room = false;
    for (const cn of this.#nodes.values()) {
      if (!canSend(cn)) continue;
      room = true;
      if (!this.#fits(cn, item)) continue;
      const load = cn.link.inflight / cn.link.cpus + cn.inflight / (cn.cap * 1e3);
      if (load < bestLoad) {
        best = cn;
        bestLoad = load;
      }
    }
    return { best, room };
  }

  // ---- sizes: a job goes only to a node whose announced limit holds it ----

  /** Whether the job message of `item` fits in what `cn` takes. */
  #fits(cn: ClusterNode, item: Queued): boolean {
    let names = 0;
    for (const f of this.#jobExtras.get(item.job)?.files ?? []) names += Buffer.byteLength(f.name) + 8;
    for (const d of this.#jobExtras.get(item.job)?.depends ?? []) names += Buffer.byteLength(d.source) + Buffer.byteLength(d.name) + 32;
    return item.args.length + names + JOB_ENVELOPE <= cn.link.maxMessageSize;
  }

  /** Sends the oldest job set aside for its size to a node that takes it; true if it did something. */
  #dispatchLarge(): boolean {
    while (this.#large.length && this.#large.peek()!.job.settled) this.#large.shift();
    const item = this.#large.peek();
    if (!item) return false;
    const { best } = this.#bestNode(item);
    if (best) {
      this.#send(best, this.#large.shift()!, false);
      return true;
    }
    if (this.#someNodeTakes(item)) return false;
    this.#large.shift();
    this.#tooLarge(item);
    return true;
  }

  /** Whether a node of the cluster (ready, reconnecting, or still connecting) may take `item`. */
  #someNodeTakes(item: Queued): boolean {
    if (this.#connecting.size > 0) return true;
    for (const cn of this.#nodes.values()) if ((cn.ready || cn.suspended) && this.#fits(cn, item)) return true;
    return false;
  }

  /** A job too large for a node with room: kept apart for a node that takes it, or ended if none does. */
  #setAside(item: Queued): void {
    if (!this.#someNodeTakes(item)) {
      this.#tooLarge(item);
      return;
    }
    this.#large.push(item);
    for (const cn of this.#nodes.values()) {
      const ip = cn.node.ipAddr;
      if (!cn.ready || this.#fits(cn, item) || this.#sizeReported.has(ip)) continue;
      this.#sizeReported.add(ip);
      this.#emitError(
        new DispyError(
          'DISPY_ERR_MESSAGE_TOO_LARGE',
          `node ${ip} takes messages of at most ${cn.link.maxMessageSize} bytes (its --max-message-size): job ${String(item.job.id)} (arguments of ${item.args.length} bytes) and others as large go to other nodes`,
        ),
      );
    }
  }

  /** No node of the cluster takes the job: it ends Cancelled, DISPY_ERR_MESSAGE_TOO_LARGE naming the sizes. */
  #tooLarge(item: Queued): void {
    const limits = [...this.#nodes.values()].filter((cn) => cn.ready || cn.suspended).map((cn) => cn.link.maxMessageSize);
    const largest = limits.length ? Math.max(...limits) : 0;
    const job = item.job;
    const e = new DispyError(
      'DISPY_ERR_MESSAGE_TOO_LARGE',
      `job ${String(job.id)}'s arguments encode to ${item.args.length} bytes: no node of cluster ${this.name} takes a message that large (the largest a node takes is ${largest} bytes: --max-message-size)`,
    );
    job.exception = `DispyError: ${e.message}`;
    job.endTime = Date.now();
    job._errorCode = e.code;
    this.#settle(job, JobStatus.Cancelled, null);
    this.#emitError(e);
  }

  #send(cn: ClusterNode, item: Queued, pinned: boolean): void {
    // Each attempt has its own wire id, so a late reply from a node declared dead can never
    // complete a re-run of the job elsewhere.
    const uid = ++uidCounter;
    item.job._attempt = uid;
    this.#sent.set(uid, { ...item, cn, started: false, pinned });
    cn.inflight++;
    const extra = this.#jobExtras.get(item.job);
    const maxRuntime = item.maxRuntime ?? extra?.maxRuntime ?? this.#opts.maxRuntime ?? 0;
    if (extra?.files.length) void this.#sendWithFiles(cn, uid, maxRuntime, extra.files);
    else
      this.#sendOrRefuse(cn, uid, () =>
        cn.link.sendJob(this, uid, this.computeId, item.args, maxRuntime, [], this.#tagOf(item.job), extra?.depends),
      );
  }

  /**
   * Sends a job message; one the node would refuse by size (beyond the estimate of #fits) is
   * not sent, and the job ends as no node could take it. False if so.
   */
  #sendOrRefuse(cn: ClusterNode, uid: number, send: () => number): boolean {
    try {
      cn.node.tx += send();
      return true;
    } catch (err) {
      const s = this.#sent.get(uid);
      if (!(err instanceof DispyError) || err.code !== 'DISPY_ERR_MESSAGE_TOO_LARGE' || !s) throw err;
      this.#sent.delete(uid);
      cn.inflight--;
      this.#tooLarge(queuedPart(s));
      return false;
    }
  }

  /** A job with per-job files: the files go to its node first, then the job naming them. */
  async #sendWithFiles(cn: ClusterNode, uid: number, maxRuntime: number, files: LocalFile[]): Promise<void> {
    const s = this.#sent.get(uid)!;
    try {
      for (const f of files) cn.node.tx += (await transferFile(cn.link, this.computeId, f, { ...this.#fileOpts(), job: uid })).sent;
    } catch (err) {
      // A lost node or a closed cluster took care of the job already.
      if (this.#sent.get(uid) !== s) return;
      this.#sent.delete(uid);
      cn.inflight--;
      const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', (err as Error).message);
      if (['DISPY_ERR_CONNECTION', 'DISPY_ERR_TIMEOUT', 'DISPY_ERR_NODE_BUSY'].includes(e.code) && !this.#closing) {
        if (!this.#givenUp(s, e)) this.#requeue(s);
      } else this.#cancelLocal(s.job, `sending its file failed: ${e.code}: ${e.message}`);
      requestPump();
      return;
    }
    if (this.#sent.get(uid) !== s) return;
    const sent = this.#sendOrRefuse(cn, uid, () =>
      cn.link.sendJob(
        this,
        uid,
        this.computeId,
        s.args,
        maxRuntime,
        files.map((f) => f.name),
        this.#tagOf(s.job),
        this.#jobExtras.get(s.job)?.depends,
      ),
    );
    if (sent && this.#cancelRequested.has(s.job)) cn.link.cancel(uid);
  }

  /** With a recover file, the job's id travels with it (kept with results nodes cannot deliver). */
  #tagOf(job: DispyJob): string | number | undefined {
    if (!this.#opts.recoverFile) return undefined;
    const id = job.id;
    return (typeof id === 'string' && id.length <= 1024) || (typeof id === 'number' && Number.isFinite(id)) ? id : undefined;
  }

  #fileOpts(): { destPath: string | null; maxFileSize: number } {
    return { destPath: this.#destPath, maxFileSize: this.#opts.maxFileSize ?? 0 };
  }

  /** Files every node gets before setup, plus those of the NodeAllocate that matched it. */
  #setupFiles(spec: NodeAllocate): LocalFile[] {
    const max = this.#opts.maxFileSize ?? 0;
    const files = this.#prebuilt ? [...this.#prebuilt.files] : this.#computationFiles.map((p) => localFile(p, 'depends', max));
    return [...files, ...dependFiles(spec.depends, 'NodeAllocate.depends', max, files)];
  }

  // ---- replies from nodes ----

  /** @internal A part of a file a job sends home (dispySendFile), written under resultsDir. */
  onJobFile(link: NodeLink, msg: JobFile): Promise<JobFileAnswer> {
    const s = this.#sent.get(msg.uid);
    const job = s && s.cn.link === link ? s.job : null;
    if (job && this.#opts._relayJobFile) return this.#opts._relayJobFile(job, msg);
    return this.#resultFiles.receive(link.host, job, msg);
  }

  /** @internal */
  onJobMessage(link: NodeLink, msg: JobMessage, bytes: number): void {
    const s = this.#sent.get(msg.uid);
    if (!s || s.cn.link !== link) return;
    const { job, cn } = s;
    const node = cn.node;
    node.rx += bytes;
    node.updateTime = Date.now();
    switch (msg.t) {
      case 'started':
        s.started = true;
        node.busy++;
        job.status = JobStatus.Running;
        job.startTime = msg.startTime;
        job.ipAddr = node.ipAddr;
        this.#emit(JobStatus.Running, node, job);
        return;
      case 'provisional':
        try {
          job.result = (this.#prebuilt ? msg.result : this.#codec.decode(msg.result)) as never;
        } catch (err) {
          this.log.warn({ uid: msg.uid, err: (err as Error).message }, 'undecodable provisional result ignored');
          return;
        }
        job.status = JobStatus.ProvisionalResult;
        this.#emit(JobStatus.ProvisionalResult, node, job._snapshot());
        return;
      case 'nak':
        this.#sent.delete(msg.uid);
        cn.inflight--;
        if (msg.reason !== 'full' && msg.reason !== 'draining') {
          cn.ready = false;
          this.log.info({ node: node.ipAddr, reason: msg.reason }, 'node refused a job');
        }
        // Handed back unstarted: it runs elsewhere (a cancelled one never runs), unless the
        // cluster is closing or the job was pinned to a node that closeNode closed.
        if (this.#closing) this.#cancelLocal(job, 'cluster closed');
        else if (s.pinned && cn.closingNode?.kind === 'close') this.#cancelLocal(job, `its node ${node.ipAddr} was closed`);
        else this.#requeue(s);
        requestPump();
        return;
      case 'done':
        this.#sent.delete(msg.uid);
        cn.inflight--;
        if (s.started) node.busy--;
        this.#finishFromNode(s, msg);
        requestPump();
        return;
    }
  }

  #requeue(s: Sent): void {
    // A job whose cancel was asked for runs nowhere again, whatever brought it back.
    if (this.#cancelRequested.has(s.job)) {
      this.#cancelLocal(s.job, 'cancelled by the program');
      return;
    }
    const item = queuedPart(s);
    if (s.pinned) {
      let q = this.#pinned.get(s.cn.node.ipAddr);
      if (!q) {
        q = new Deque();
        this.#pinned.set(s.cn.node.ipAddr, q);
      }
      q.unshift(item);
    } else this.#queue.unshift(item);
  }

  #finishFromNode(s: Sent, msg: Extract<NodeMessage, { t: 'done' }>): void {
    const { job, cn } = s;
    const node = cn.node;
    job.stdout = msg.stdout;
    job.stderr = msg.stderr;
    job.exception = msg.exception;
    job.endTime = msg.endTime;
    if (msg.startTime !== null) {
      job.startTime = msg.startTime;
      job.ipAddr = node.ipAddr;
      node.jobsDone++;
      const ms = Math.max(0, msg.endTime - msg.startTime);
      node.jobTime += ms / 1000;
      cn.avgMs = cn.avgMs === Infinity ? ms : cn.avgMs * 0.8 + ms * 0.2;
      node.cpuUsed += msg.cpuTime;
    }
    let status: DispyStatus =
      msg.status === 'Finished' ? JobStatus.Finished : msg.status === 'Cancelled' ? JobStatus.Cancelled : JobStatus.Terminated;
    if (msg.result) {
      try {
        // A prebuilt cluster forwards results as they came (see _fromWire).
        job.result = (this.#prebuilt ? msg.result : this.#codec.decode(msg.result)) as never;
      } catch (err) {
        status = JobStatus.Terminated;
        job.exception = `DispyError: cannot decode the job's result: ${(err as Error).message}`;
      }
    }
    job._errorCode = msg.code;
    this.#settle(job, status, node);
  }

  #settle(job: DispyJob, status: DispyStatus, node: DispyNode | null): void {
    if (job.settled) return;
    job._settle(status);
    this.#emit(status, node, job);
    this.#pending--;
    if (this.#pending === 0) {
      this.#setActive(false);
      this.#idleWaiters.wake();
    }
  }

  /**
   * Pending jobs keep the program alive; an idle cluster does not (a script that forgets
   * close() still exits, and its nodes serve the next program once it is gone). Refs or unrefs
   * the connections to nodes, discovery's sockets and the retry and reconnection timers, and
   * runs the watch that says why no node is usable.
   */
  #setActive(on: boolean): void {
    for (const t of this.#retryTimers) on ? t.ref() : t.unref();
    for (const cn of this.#nodes.values()) {
      if (cn.suspended) on ? cn.suspended.timer.ref() : cn.suspended.timer.unref();
      cn.link.updateRef();
    }
    this.#discovery.setRef(on && !this.#closing);
    if (this.#closing) return;
    // Made once and ref'd only while jobs are pending (no timer churn for one job at a time).
    this.#watchTimer ??= setInterval(() => this.#watch(), 1000);
    if (on) {
      this.#unusableSince = null;
      this.#warnDelay = WARN_FIRST;
      this.#watchTimer.ref();
    } else this.#watchTimer.unref();
  }

  /** @internal Whether this cluster keeps its connections to nodes ref'd: while jobs are pending (LinkUser). */
  get keepsAlive(): boolean {
    return this.#pending > 0 && !this.#closed;
  }

  /** Whether jobs can be sent to `cn` once it has room. */
  #usable(cn: ClusterNode): boolean {
    return cn.ready && !cn.link.closed && !cn.link.closing && !cn.draining && Math.min(cn.cap, cn.link.cpus) > 0;
  }

  /**
   * Every second while jobs are pending: when no node is usable, warns on stderr (whether or
   * not anyone listens for `error` events) naming each node and why, first after WARN_FIRST s,
   * then with back-off; with `nodeTimeout`, gives up once none has been usable that long.
   */
  #watch(): void {
    if (this.#pending === 0 || this.#closing) return;
    const now = Date.now();
    if ([...this.#nodes.values()].some((cn) => this.#usable(cn))) {
      if (this.#unusableSince !== null) this.#warnDelay = WARN_FIRST;
      this.#unusableSince = null;
      return;
    }
    if (this.#unusableSince === null) {
      this.#unusableSince = now;
      this.#nextWarnAt = now + this.#warnDelay * 1000;
    }
    const timeout = this.#opts.nodeTimeout;
    if (timeout !== undefined && now - this.#unusableSince >= timeout * 1000) {
      this.#giveUp(timeout);
      return;
    }
    if (now < this.#nextWarnAt) return;
    this.log.warn(
      { cluster: this.name, jobsPending: this.#pending, nodes: this.#whyUnusable() },
      `no usable node for ${Math.round((now - this.#unusableSince) / 1000)} s; ${this.#pending} jobs wait: ${this.#whyUnusable().join('; ')}`,
    );
    this.#warnDelay = Math.min(WARN_MAX, this.#warnDelay * 2);
    this.#nextWarnAt = now + this.#warnDelay * 1000;
  }

  /** Each node (or node spec) that cannot take jobs now, and why. */
  #whyUnusable(): string[] {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const [ip, cn] of this.#nodes) {
      seen.add(ip);
      const why = cn.suspended
        ? 'connection lost, reconnecting'
        : cn.closingNode
          ? `being closed (${cn.closingNode.kind}Node)`
          : cn.link.closing
            ? 'shutting down'
            : cn.draining
              ? 'draining (from its page)'
              : !cn.ready
                ? 'deallocated'
                : '0 cpus';
      out.push(`${ip}:${cn.node.port} ${why}`);
    }
    for (const [ip, why] of this.#problems) {
      if (seen.has(ip)) continue;
      seen.add(ip);
      out.push(`${ip} ${why}`);
    }
    for (const spec of this.#specs) {
      if (spec.isWildcard ? [...seen].some((ip) => spec.ipRex.test(ip)) : seen.has(this.#resolved.get(spec.host) ?? spec.host)) continue;
      out.push(spec.isWildcard ? `no node matches ${spec.host}` : `${spec.host}:${spec.port} not answering yet`);
    }
    return out;
  }

  /** nodeTimeout passed with no usable node: queued jobs end Abandoned and `wait()` rejects. */
  #giveUp(timeout: number): void {
    const why = this.#whyUnusable().join('; ');
    const err = new DispyError(
      'DISPY_ERR_NO_NODE',
      `cluster ${this.name}: no usable node for nodeTimeout (${timeout} s): ${why || 'no node'}`,
    );
    this.log.warn({ cluster: this.name, nodes: this.#whyUnusable() }, err.message);
    this.#unusableSince = null;
    this.#idleWaiters.fail(err);
    const items = [...this.#queue.clear()];
    for (const q of this.#pinned.values()) items.push(...q.clear());
    for (const item of items) {
      if (item.job.settled) continue;
      item.job.exception = `DispyError: DISPY_ERR_NO_NODE: ${err.message}`;
      item.job.endTime = Date.now();
      this.#settle(item.job, JobStatus.Abandoned, null);
    }
    this.#emitError(err);
  }

  /** @internal */
  onPulse(link: NodeLink, msg: Extract<NodeMessage, { t: 'pulse' }>): void {
    const cn = this.#nodes.get(link.host);
    if (!cn || cn.link !== link) return;
    cn.node.availInfo = msg.availInfo;
    cn.node.updateTime = Date.now();
    // The node's own page may have changed the CPUs it runs jobs on, or drained it.
    if (cn.node.availCpus !== link.cpus) {
      cn.node.availCpus = link.cpus;
      cn.node.cpus = Math.min(cn.cap, link.cpus);
      this.log.info({ node: cn.node.ipAddr, cpus: link.cpus }, "node's CPUs changed");
      requestPump();
    }
    if (cn.draining !== link.draining) {
      cn.draining = link.draining;
      this.log.info(
        { node: cn.node.ipAddr, draining: link.draining },
        link.draining ? 'node draining: no job is sent to it' : 'node resumed',
      );
      requestPump();
    }
    this.#emit(NodeStatus.AvailInfo, cn.node, null);
  }

  /** @internal */
  onComputationClosed(link: NodeLink, computeId: string, reason: string): void {
    if (computeId !== this.computeId) return;
    const cn = this.#nodes.get(link.host);
    if (cn && cn.link === link) this.#dropNode(cn, new DispyError('DISPY_ERR_UNKNOWN_COMPUTATION', reason));
  }

  /** @internal */
  onLinkClosed(link: NodeLink, reason: DispyError | null): void {
    const cn = this.#nodes.get(link.host);
    if (!cn || cn.link !== link) return;
    if (!this.#closing && !cn.dead && !link.closing && !cn.suspended && !cn.closingNode && this.#suspend(cn, reason)) return;
    this.#dropNode(cn, reason);
    if (!this.#closing && !cn.closingNode) this.#retry(cn.node.ipAddr, cn.node.port, cn.spec, 1);
  }

  /**
   * The connection broke but the node was not declared dead: its jobs stay with it while we
   * reconnect, until 5 × pulseInterval after it was last heard (or RECONNECT_WINDOW without
   * pulseInterval). The same daemon answering resumes them (results it kept are delivered);
   * a refused connection or a new daemon there gives them up at once. False if the window has
   * already passed.
   */
  #suspend(cn: ClusterNode, reason: DispyError | null): boolean {
    const pulse = this.#opts.pulseInterval;
    const deadline = pulse ? cn.link.lastHeard + 5 * pulse * 1000 : Date.now() + reconnectWindow() * 1000;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    const ip = cn.node.ipAddr;
    const timer = setTimeout(() => {
      if (this.#nodes.get(ip) !== cn || !cn.suspended) return;
      this.#dropNode(
        cn,
        new DispyError('DISPY_ERR_CONNECTION', `node ${ip} did not come back in time${reason ? ` (${reason.message})` : ''}`),
      );
    }, left);
    // Only pending jobs keep the program alive.
    if (this.#pending === 0) timer.unref();
    cn.suspended = { nodeId: cn.link.info.nodeId, deadline, timer, wasReady: cn.ready };
    cn.ready = false;
    this.log.warn({ node: ip, reason: reason?.message, waitMs: left }, 'connection to node lost: reconnecting; its jobs wait for it');
    this.#retry(ip, cn.node.port, cn.spec, 0);
    return true;
  }

  /** Reconnected to the same daemon: its jobs go on, and results it kept arrive. */
  async #resume(cn: ClusterNode, link: NodeLink): Promise<void> {
    const sus = cn.suspended!;
    const ip = cn.node.ipAddr;
    const mine = [...this.#sent].filter(([, s]) => s.cn === cn).map(([uid]) => uid);
    for (const uid of mine) link.adopt(this, uid);
    const old = cn.link;
    cn.link = link;
    let reply: Reply;
    try {
      reply = await link.request({ t: 'resume', computeId: this.computeId, uids: mine });
    } catch (err) {
      for (const uid of mine) link.forget(uid);
      cn.link = old;
      if (this.#nodes.get(ip) === cn)
        this.#dropNode(cn, err instanceof DispyError ? err : new DispyError('DISPY_ERR_CONNECTION', String(err)));
      link.release(this);
      return;
    }
    clearTimeout(sus.timer);
    cn.suspended = null;
    cn.ready = sus.wasReady;
    const running = new Set(reply.uids ?? []);
    const results = reply.results ?? [];
    link.updateRef();
    for (const r of results) link.deliver(r);
    // Cancels asked for while the connection was down reach their jobs now.
    for (const uid of running) {
      const s = this.#sent.get(uid);
      if (s && s.cn === cn && this.#cancelRequested.has(s.job)) link.cancel(uid);
    }
    let lost = 0;
    for (const uid of mine) {
      const s = this.#sent.get(uid);
      if (!s || s.cn !== cn || running.has(uid)) continue;
      // Neither running there nor kept: it was lost with the connection.
      link.forget(uid);
      this.#sent.delete(uid);
      cn.inflight--;
      if (s.started) cn.node.busy--;
      this.#loseJob(s, new DispyError('DISPY_ERR_CONNECTION', `node ${ip} no longer had the job after a reconnection`));
      lost++;
    }
    cn.node.updateTime = Date.now();
    this.log.info({ node: ip, running: running.size, delivered: results.length, lost }, 'node reconnected: jobs resumed');
    requestPump();
  }

  /** The node is gone: its jobs re-run elsewhere (reentrant, or never started) or are Abandoned. */
  #dropNode(cn: ClusterNode, reason: DispyError | null, lost = true): void {
    const ip = cn.node.ipAddr;
    this.#nodes.delete(ip);
    cn.ready = false;
    if (cn.suspended) clearTimeout(cn.suspended.timer);
    cn.suspended = null;
    if (lost) this.log.warn({ node: ip, reason: reason?.message }, 'node lost');
    if (reason && !this.#closing) this.#problems.set(ip, `${reason.code}: ${reason.message}`);
    for (const [uid, s] of [...this.#sent]) {
      if (s.cn !== cn) continue;
      this.#sent.delete(uid);
      this.#loseJob(s, reason, lost);
    }
    cn.node.busy = 0;
    // closeNode said Closed already.
    const said = cn.closingNode !== null && cn.node.status === NodeStatus.Closed;
    cn.node.status = NodeStatus.Closed;
    cn.node.updateTime = Date.now();
    if (!said) this.#emit(NodeStatus.Closed, cn.node, null);
    cn.link.release(this);
    requestPump();
  }

  #writeRecoverFile(): void {
    const path = this.#opts.recoverFile!;
    try {
      writeRecoverFile(path, {
        computeId: this.computeId,
        cluster: this.name,
        created: Date.now(),
        nodes: [...this.#recoverNodes].map(([host, port]) => ({ host, port })),
      });
    } catch (err) {
      this.#emitError(new DispyError('DISPY_ERR_INVALID_OPTION', `cannot write the recover file ${path}: ${(err as Error).message}`));
    }
  }

  /** heartbeatInterval for the node links: pulseInterval (LinkUser). @internal */
  get heartbeatInterval(): number | undefined {
    return this.#opts.pulseInterval;
  }

  /**
   * A job whose node lost it: re-run (never started, or reentrant) or Abandoned. `lost`: lost
   * with a broken connection (counted: after MAX_SEND_ATTEMPTS such losses it is given up),
   * not taken back by closeNode.
   */
  #loseJob(s: Sent, reason: DispyError | null, lost = true): void {
    const node = s.cn.node;
    if (!s.started) {
      if (!lost || !this.#givenUp(s, reason)) this.#requeue(s);
    } else if (this.#opts.reentrant && !s.pinned && !this.#closing && !this.#cancelRequested.has(s.job)) {
      s.job.status = JobStatus.Created;
      s.job.startTime = null;
      this.#queue.unshift(queuedPart(s));
      this.#emit(JobStatus.Created, node, s.job);
    } else {
      s.job.exception = `DispyError: node ${node.ipAddr} was lost while running the job${reason ? ` (${reason.message})` : ''}`;
      s.job.endTime = Date.now();
      this.#settle(s.job, JobStatus.Abandoned, node);
    }
  }

  /**
   * Counts one more send of the job lost unstarted with its connection; at MAX_SEND_ATTEMPTS
   * the job ends Abandoned (DISPY_ERR_UNDELIVERABLE) with an error event, and true is returned.
   */
  #givenUp(s: Sent, reason: DispyError | null): boolean {
    const job = s.job;
    const n = (this.#lostSends.get(job) ?? 0) + 1;
    this.#lostSends.set(job, n);
    if (n < MAX_SEND_ATTEMPTS) return false;
    const ip = s.cn.node.ipAddr;
    const e = new DispyError(
      'DISPY_ERR_UNDELIVERABLE',
      `job ${String(job.id)} given up after ${n} attempts to hand it to a node: each time the connection broke before the node started it (last: node ${ip}${reason ? `: ${reason.message}` : ''})`,
    );
    job.exception = `DispyError: ${e.message}`;
    job.endTime = Date.now();
    job._errorCode = e.code;
    this.log.warn({ node: ip, job: String(job.id), attempts: n }, 'job given up: its sends kept being lost');
    this.#settle(job, JobStatus.Abandoned, s.cn.node);
    this.#emitError(e);
    return true;
  }

  // ---- control ----

  /**
   * Cancels a job: a queued one ends Cancelled at once; one sent to a node is dropped there
   * (Cancelled) or, running, killed with every process it started (Terminated). The cancel
   * holds whatever happens meanwhile: a job handed back by its node, or whose node was lost, is
   * not run again (it ends Cancelled, or Abandoned if it was running), and a connection that
   * broke passes the cancel on once it is back. Resolves once the job ended: 0 if it did not
   * complete, -1 if it is not this cluster's, had already ended, or completed (Finished) before
   * the cancel reached it.
   */
  async cancel(job: DispyJob): Promise<number> {
    if (!(job instanceof DispyJob) || job.cluster !== this || job.settled) return -1;
    const s = this.#sent.get(job._attempt);
    if (s && s.job === job) {
      this.#cancelRequested.add(job);
      // A suspended node's link is closed: #resume passes the cancel on.
      if (!s.cn.suspended) s.cn.link.cancel(job._attempt);
      await job.wait().then(
        () => undefined,
        () => undefined,
      );
      return job.status === JobStatus.Finished ? -1 : 0;
    }
    job.endTime = Date.now();
    this.#settle(job, JobStatus.Cancelled, null);
    return 0;
  }

  // ---- managing nodes at run time ----

  /**
   * Looks for nodes now (dispy's `discover_nodes`): a discover request for the wildcard specs
   * (see the `discovery` option; nodes that answer are set up as they do), wildcards matched
   * against the nodes this process is connected to, and listed nodes not in use tried again.
   * Resolves to 0 once the requests went out, -1 if the cluster is closed.
   *
   * With `specs` (dispy's `discover_nodes(nodes)`: addresses, host names, wildcards, `{ host,
   * port }`, NodeAllocates), only those are looked for: a wildcard as above, an address or name
   * contacted at its port. As in dispy, a node found is used if the cluster's `nodes` match it.
   * @example await cluster.discoverNodes(['127.0.0.*'])
   */
  async discoverNodes(specs?: NodeSpec | NodeSpec[]): Promise<number> {
    if (this.#closing) return -1;
    if (specs !== undefined) {
      await discoverSpecs(parseNodeSpecs(specs), {
        discover: () => this.#discovery.discover(),
        lookup: (host) => this.#resolver.lookup(host),
        specFor: (ip) => this.#specFor(ip),
        addNode: (ip, port, spec) => this.#addNode(ip, port, spec),
      });
      return 0;
    }
    await this.#initNodes();
    return 0;
  }

  /**
   * Adds nodes at run time: a host name, IP address, wildcard (matching nodes this process
   * knows, and discovered as the `discovery` option says), `{ host, port, cpus }`, a NodeAllocate
   * or a DispyNode. A node this cluster had deallocated is used again. Resolves to 0 once a
   * matching node is set up (for a wildcard: or once a discover request went out; nodes that
   * answer are set up as they do), -1 otherwise.
   */
  async allocateNode(spec: NodeSpec | DispyNode): Promise<number> {
    if (this.#closing) return -1;
    const alloc = spec instanceof DispyNode ? new NodeAllocate(spec.ipAddr, spec.port) : parseNodeSpecs(spec)[0]!;
    // A bare address names a node the cluster may already know (at its port): no conflict.
    if (typeof spec !== 'string') checkOnePortPerHost([...this.#specs, alloc], 'allocateNode');
    // Literal addresses keep precedence over wildcards, as in the constructor.
    const at = alloc.isWildcard ? this.#specs.length : this.#specs.findIndex((s) => s.isWildcard);
    this.#specs.splice(at < 0 ? this.#specs.length : at, 0, alloc);
    let targets: { host: string; port: number }[];
    // A wildcard is also discovered: nodes that answer are set up as they do.
    const discovered = alloc.isWildcard && (await this.#discovery.discover());
    if (alloc.resolve === 'all') {
      // Followed from now on; resolved at once, and the nodes it lists set up.
      await this.#resolver.refresh();
      const ips = this.#resolver.addresses(alloc);
      await Promise.all(ips.map((ip) => this.#following.get(ip)));
      return ips.some((ip) => this.#nodes.has(ip)) ? 0 : -1;
    }
    if (alloc.isWildcard) targets = await NodeLink.known(alloc.ipRex);
    else if (isIP(alloc.host)) targets = [{ host: alloc.host, port: alloc.port }];
    else {
      try {
        targets = [{ host: await this.#lookupFirst(alloc), port: alloc.port }];
      } catch (err) {
        this.#emitError(err as DispyError);
        return -1;
      }
    }
    let ok = false;
    for (const { host, port } of targets) {
      let cn = this.#nodes.get(host);
      if (cn?.closingNode) {
        // Being closed: once it is, it is set up again.
        await cn.closingNode.closed;
        if (this.#closing) return -1;
        cn = this.#nodes.get(host);
      }
      if (cn) {
        if (!cn.ready && !cn.link.closed) {
          cn.ready = true;
          cn.node.status = NodeStatus.Initialized;
          cn.node.updateTime = Date.now();
          this.#emit(NodeStatus.Initialized, cn.node, null);
          requestPump();
        }
        ok = true;
        continue;
      }
      await this.#addNode(host, port, alloc);
      if (this.#nodes.has(host)) ok = true;
    }
    return ok || discovered ? 0 : -1;
  }

  /**
   * Stops giving this cluster's jobs to `node` (a DispyNode, IP or name); its running jobs
   * finish, and the computation stays on the node so allocateNode can use it again. Emits
   * Closed. Resolves to 0, or -1 for an unknown node.
   */
  async deallocateNode(node: DispyNode | string): Promise<number> {
    const cn = this.#nodeOf(node);
    if (!cn?.ready) return -1;
    cn.ready = false;
    cn.node.status = NodeStatus.Closed;
    cn.node.updateTime = Date.now();
    this.#emit(NodeStatus.Closed, cn.node, null);
    return 0;
  }

  /**
   * Closes the computation on `node` (dispy's `close_node`) and resolves at once: no new job
   * goes there; jobs it holds that have not started come back and run elsewhere; running ones
   * finish there and their results count, or with `terminatePending` are terminated. Jobs
   * pinned to it are cancelled. Emits Closed. Resolves to 0, or -1 for an unknown node.
   */
  async closeNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    const cn = this.#nodeOf(node);
    if (!cn) return -1;
    const ip = cn.node.ipAddr;
    const pinned = this.#pinned.get(ip);
    if (pinned) for (const item of pinned.clear()) this.#cancelLocal(item.job, `its node ${ip} was closed`);
    if (cn.closingNode) cn.closingNode.kind = 'close';
    else void this.#closeOnNode(cn, 'close', options.terminatePending ?? false);
    return 0;
  }

  /**
   * Closes the computation on `node` and sets it up again (dispy's `resetup_node`): no new job
   * goes there meanwhile (jobs pinned to it wait), its running jobs finish (or are terminated
   * with `terminatePending`), then its files are sent again to a new directory, setup runs
   * anew and NodeAllocate.allocate is asked again. Resolves to 0 once the new setup has run on
   * the node (which may be after its running jobs ended, however long they take), -1 if it
   * cannot be set up again.
   */
  async resetupNode(node: DispyNode | string, options: { terminatePending?: boolean } = {}): Promise<number> {
    const cn = this.#nodeOf(node);
    if (!cn) return -1;
    const { ipAddr, port } = cn.node;
    const spec = cn.spec;
    if (cn.closingNode) await cn.closingNode.closed;
    else await this.#closeOnNode(cn, 'resetup', options.terminatePending ?? false);
    // Closed for good meanwhile (closeNode), or the cluster is closing.
    if (this.#closing || cn.closingNode?.kind === 'close') return -1;
    this.#problems.delete(ipAddr);
    await this.#addNode(ipAddr, port, spec);
    return this.#nodes.get(ipAddr)?.ready ? 0 : -1;
  }

  /**
   * Closes the computation on a node, waiting as long as its running jobs take (the node
   * answers once they ended; nothing times out into dropping them): the node gets no new job
   * meanwhile and its jobs report as usual. Then it is forgotten (Closed).
   */
  #closeOnNode(cn: ClusterNode, kind: 'close' | 'resetup', terminate: boolean): Promise<void> {
    const ip = cn.node.ipAddr;
    cn.ready = false;
    const closed = (async () => {
      if (kind === 'close') {
        cn.node.status = NodeStatus.Closed;
        cn.node.updateTime = Date.now();
        this.#emit(NodeStatus.Closed, cn.node, null);
      }
      try {
        await cn.link.request({ t: 'close', computeId: this.computeId, terminate }, Number.POSITIVE_INFINITY);
      } catch (err) {
        // The connection is gone: its jobs were dealt with as the node's loss.
        this.log.warn({ node: ip, err: (err as Error).message }, 'closing the computation on a node failed');
      }
      if (this.#nodes.get(ip) === cn) this.#dropNode(cn, null, false);
      if (cn.closingNode?.kind === 'close') this.#problems.set(ip, 'closed (closeNode)');
    })();
    cn.closingNode = { kind, closed };
    return closed;
  }

  /**
   * Sets the CPUs this cluster uses on `node` at once: `cpus >= 0` caps it (at most what the
   * node offers), negative leaves that many of the node's CPUs unused. Lowering it below
   * `busy` lets running jobs finish and starts no more; raising it starts queued jobs. Emits
   * AvailInfo. Resolves to the new CPU count, or -1.
   */
  async setNodeCpus(node: DispyNode | string, cpus: number): Promise<number> {
    const cn = this.#nodeOf(node);
    if (!cn || !Number.isInteger(cpus)) return -1;
    // Relative to the node's --cpus: a lower limit set on its page caps what runs, not the cap.
    const avail = cn.link.info.cpus;
    const target = cpus >= 0 ? Math.min(avail, cpus) : avail + cpus;
    if (target < 0) return -1;
    try {
      const reply = await cn.link.request({ t: 'set-cpus', computeId: this.computeId, cpus: target });
      cn.cap = reply.cpus ?? target;
    } catch (err) {
      this.log.warn({ node: cn.node.ipAddr, err: (err as Error).message }, 'setting cpus failed');
      return -1;
    }
    cn.node.cpus = Math.min(cn.cap, cn.link.cpus);
    cn.node.updateTime = Date.now();
    this.#emit(NodeStatus.AvailInfo, cn.node, null);
    requestPump();
    return cn.node.cpus;
  }

  /**
   * This cluster's jobs running on `node`, from local bookkeeping or, with `fromNode`, as the
   * node reports them. Resolves to [] for an unknown node.
   */
  async nodeJobs(node: DispyNode | string, options: { fromNode?: boolean } = {}): Promise<DispyJob[]> {
    const cn = this.#nodeOf(node);
    if (!cn) return [];
    if (options.fromNode) {
      const reply = await cn.link.request({ t: 'jobs', computeId: this.computeId });
      return (reply.uids ?? []).map((uid) => this.#sent.get(uid)?.job).filter((j): j is DispyJob => j !== undefined);
    }
    return [...this.#sent.values()].filter((s) => s.cn === cn && s.started).map((s) => s.job);
  }

  /**
   * Sends a file to `node` (a DispyNode, an IP address or a node name) into the computation's
   * directory there (or its destPath), where jobs open it by its base name; it is deleted when
   * the computation closes (unless `cleanup: false`). Resolves to 0, or -1 if the node is not
   * this cluster's, the file is missing or too large, or the node refused it (the reason is
   * logged).
   */
  async sendFile(path: string, node: DispyNode | string): Promise<number> {
    const cn = this.#nodeOf(node);
    if (!cn || this.#closing) {
      this.log.warn({ path, node: node instanceof DispyNode ? node.ipAddr : node }, 'sendFile: not a node of this cluster');
      return -1;
    }
    try {
      const file = localFile(path, 'sendFile', this.#opts.maxFileSize ?? 0);
      cn.node.tx += (await transferFile(cn.link, this.computeId, file, this.#fileOpts())).sent;
      return 0;
    } catch (err) {
      this.log.warn({ path, node: cn.node.ipAddr, code: (err as DispyError).code, err: (err as Error).message }, 'sendFile failed');
      return -1;
    }
  }

  /**
   * Resolves true once no job is pending and the status callbacks of every ended job have run,
   * or false if `timeout` seconds pass first. Rejects with `DISPY_ERR_NO_NODE` when the
   * cluster's `nodeTimeout` passes with no usable node.
   */
  wait(timeout?: number): Promise<boolean> {
    return this.#idleWaiters.wait(this.#pending === 0, () => this.#drained(), timeout);
  }

  /**
   * Waits for pending jobs (up to `timeout` seconds; forever by default), then closes the
   * computation on every node. With `terminate`, it waits only `timeout` seconds (default 0),
   * then jobs still queued end Cancelled and running ones Terminated; without it a timed-out
   * close resolves false and leaves the cluster open. Every job settles.
   */
  close(options: { timeout?: number; terminate?: boolean } = {}): Promise<boolean> {
    return this.#closeOnce.run(() => this.#close(options));
  }

  async #close({ timeout, terminate = false }: { timeout?: number; terminate?: boolean }): Promise<boolean> {
    const started = Date.now();
    const idle = await this.#idleWaiters.wait(this.#pending === 0, () => this.#drained(), terminate ? (timeout ?? 0) : timeout, false);
    if (!idle && !terminate) return false;
    this.#closing = true;
    if (this.#pulseTimer) clearInterval(this.#pulseTimer);
    this.#pulseTimer = null;
    if (this.#watchTimer) clearInterval(this.#watchTimer);
    this.#watchTimer = null;
    this.#discovery.close();
    this.#resolver.close();
    for (const item of this.#queue.clear()) this.#cancelLocal(item.job, 'cluster closed');
    for (const item of this.#large.clear()) this.#cancelLocal(item.job, 'cluster closed');
    for (const q of this.#pinned.values()) for (const item of q.clear()) this.#cancelLocal(item.job, 'cluster closed');
    for (const t of this.#retryTimers) clearTimeout(t);
    this.#retryTimers.clear();
    for (const cn of this.#nodes.values()) if (cn.suspended) clearTimeout(cn.suspended.timer);
    // A node that does not answer holds close() no longer than its timeout (at least 1 s, so
    // live nodes can terminate the jobs), or the request timeout when none was given.
    const replyWithin =
      timeout === undefined ? requestTimeout() : Math.min(requestTimeout(), Math.max(1, timeout - (Date.now() - started) / 1000));
    await Promise.all(
      [...this.#nodes.values()]
        .filter((cn) => !cn.suspended && !cn.link.closed)
        .map((cn) =>
          cn.link.request({ t: 'close', computeId: this.computeId, terminate: true }, replyWithin).catch((err: unknown) => {
            this.log.warn({ node: cn.node.ipAddr, err: (err as Error).message }, 'closing the computation on a node failed');
          }),
        ),
    );
    for (const s of this.#sent.values()) {
      s.job.exception = 'DispyError: job terminated as its cluster was closed';
      s.job.endTime = Date.now();
      this.#settle(s.job, JobStatus.Terminated, s.cn.node);
    }
    this.#sent.clear();
    for (const cn of [...this.#nodes.values()]) {
      this.#nodes.delete(cn.node.ipAddr);
      cn.node.busy = 0;
      cn.node.status = NodeStatus.Closed;
      cn.node.updateTime = Date.now();
      this.#emit(NodeStatus.Closed, cn.node, null);
      cn.link.release(this);
    }
    this.#closed = true;
    unregisterCluster(this);
    if (this.#opts.recoverFile) rmSync(this.#opts.recoverFile, { force: true });
    await this.#drained();
    return true;
  }

  #cancelLocal(job: DispyJob, why: string): void {
    if (job.settled) return;
    job.exception = `DispyError: job cancelled: ${why}`;
    job.endTime = Date.now();
    this.#settle(job, JobStatus.Cancelled, null);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close({ terminate: true });
  }

  /** The cluster's nodes and the number of jobs not yet ended. */
  status(): ClusterStatus {
    return { nodes: [...this.#nodes.values()].filter((cn) => cn.ready).map((cn) => cn.node), jobsPending: this.#pending };
  }

  /** Prints (and returns) dispy's table of nodes, jobs, times and data; closed nodes included. */
  printStatus(wallTime?: number): string {
    const text = statusTable([...this.#everyNode.values()], this.#pending, wallTime);
    process.stdout.write(text);
    return text;
  }

  // ---- events ----

  #emit(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    this.#statusEvents.push(status, node, job);
  }

  #emitError(err: DispyError): void {
    this.#statusEvents.pushError(err);
  }

  #drained(): Promise<void> {
    return this.#statusEvents.drained();
  }
}

/** Most jobs a node may hold per CPU it gives us (running plus queued there). */
export const MAX_WINDOW_PER_CPU = 64;

/**
 * Jobs per CPU we keep on a node. Until a job has ended there (its time unknown), one: the
 * first jobs spread over the nodes as they come up, instead of queueing on the first one. Then
 * one queued behind each running job, and for short jobs enough to cover a round trip (about
 * 10 ms of work), up to the maximum.
 */
function windowPerCpu(avgMs: number): number {
  if (!Number.isFinite(avgMs)) return 1;
  return Math.max(2, Math.min(MAX_WINDOW_PER_CPU, 1 + Math.ceil(10 / Math.max(avgMs, 0.01))));
}

/**
 * @internal With a dispatch policy (`dispyts scheduler`), jobs averaging at least this many ms
 * (or of unknown length) are sent only to a free CPU of their node, never queued there.
 */
export const SCHEDULER_SHORT_JOB_MS = 50;

/**
 * Jobs per CPU a node's connection may hold when a dispatch policy is set: one while the jobs'
 * run time is unknown or long, so that the policy decides which cluster gets each freed CPU;
 * the usual pipelining window for short jobs, whose round trips would otherwise idle the CPU.
 */
function policyWindowPerCpu(avgMs: number): number {
  return Number.isFinite(avgMs) && avgMs < SCHEDULER_SHORT_JOB_MS ? windowPerCpu(avgMs) : 1;
}

function canSend(cn: ClusterNode): boolean {
  const link = cn.link;
  return (
    cn.ready &&
    !link.closed &&
    !link.closing &&
    !link.full &&
    !link.draining &&
    cn.inflight < windowPerCpu(cn.avgMs) * Math.min(cn.cap, link.cpus) &&
    link.inflight < MAX_WINDOW_PER_CPU * link.cpus &&
    (dispatchPolicy() === null || link.inflight < policyWindowPerCpu(cn.avgMs) * link.cpus)
  );
}

function validateOptions(o: JobClusterOptions): void {
  if (o === null || typeof o !== 'object') throw invalidOption('options', 'an object', o);
  if (o.depends !== undefined && !Array.isArray(o.depends)) throw invalidOption('depends', 'an array', o.depends);
  if (o.resultsDir !== undefined && (typeof o.resultsDir !== 'string' || o.resultsDir.length === 0))
    throw invalidOption('resultsDir', 'a directory path', o.resultsDir);
  if (o.globals !== undefined && (o.globals === null || typeof o.globals !== 'object' || Array.isArray(o.globals)))
    throw invalidOption('globals', 'an object of names and values', o.globals);
  if (o.jobStatus !== undefined && typeof o.jobStatus !== 'function') throw invalidOption('jobStatus', 'a function', o.jobStatus);
  if (o.clusterStatus !== undefined && typeof o.clusterStatus !== 'function')
    throw invalidOption('clusterStatus', 'a function', o.clusterStatus);
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host.length === 0)) throw invalidOption('host', 'an address', o.host);
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535))
    throw invalidOption('port', 'an integer from 0 to 65535', o.port);
  if (o.secret !== undefined && typeof o.secret !== 'string') throw invalidOption('secret', 'a string', o.secret);
  if (o.reentrant !== undefined && typeof o.reentrant !== 'boolean') throw invalidOption('reentrant', 'true or false', o.reentrant);
  if (o.recoverFile !== undefined && (typeof o.recoverFile !== 'string' || o.recoverFile.length === 0))
    throw invalidOption('recoverFile', 'a file path', o.recoverFile);
  if (o.pulseInterval !== undefined && !(typeof o.pulseInterval === 'number' && o.pulseInterval >= 0.1 && o.pulseInterval <= 1000)) {
    throw invalidOption('pulseInterval', 'seconds from 0.1 to 1000', o.pulseInterval);
  }
  if (o.pingInterval !== undefined && !(typeof o.pingInterval === 'number' && o.pingInterval >= 1 && o.pingInterval <= 1000)) {
    throw invalidOption('pingInterval', 'seconds from 1 to 1000', o.pingInterval);
  }
  if (o.nodeTimeout !== undefined && !(typeof o.nodeTimeout === 'number' && o.nodeTimeout > 0 && Number.isFinite(o.nodeTimeout)))
    throw invalidOption('nodeTimeout', 'a positive number of seconds', o.nodeTimeout);
  if (o.discovery !== undefined && !DISCOVERY_MODES.includes(o.discovery))
    throw invalidOption('discovery', "'broadcast', 'multicast' or 'off'", o.discovery);
  if (o.setup !== undefined && typeof o.setup !== 'function') throw invalidOption('setup', 'a function', o.setup);
  if (o.cleanup !== undefined && typeof o.cleanup !== 'function' && typeof o.cleanup !== 'boolean')
    throw invalidOption('cleanup', 'true, false or a function', o.cleanup);
  if (o.destPath !== undefined && (typeof o.destPath !== 'string' || o.destPath.length === 0))
    throw invalidOption('destPath', 'a relative directory name', o.destPath);
  if (o.maxRuntime !== undefined && !(typeof o.maxRuntime === 'number' && o.maxRuntime > 0 && Number.isFinite(o.maxRuntime)))
    throw invalidOption('maxRuntime', 'a positive number of seconds', o.maxRuntime);
  if (o.maxFileSize !== undefined && !(Number.isInteger(o.maxFileSize) && o.maxFileSize >= 0))
    throw invalidOption('maxFileSize', 'a number of bytes >= 0', o.maxFileSize);
  checkMaxArgsSize(o.maxArgsSize);
  for (const k of ['certFile', 'keyFile', 'caFile'] as const) {
    if (o[k] !== undefined && (typeof o[k] !== 'string' || o[k].length === 0)) throw invalidOption(k, 'a file path', o[k]);
  }
  if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length === 0 || o.name.length > 256))
    throw invalidOption('name', 'a non-empty string', o.name);
  if (o.isolate !== undefined && o.isolate !== 'job') throw invalidOption('isolate', "'job'", o.isolate);
}

/** @internal Validates the `maxArgsSize` option (shared with SharedJobCluster). */
export function checkMaxArgsSize(v: unknown): void {
  if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 1)) throw invalidOption('maxArgsSize', 'a number of bytes >= 1', v);
}
