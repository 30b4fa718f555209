/**
 * JobCluster: one program owns a set of nodes and farms calls of a computation out to their
 * CPUs. Jobs queue here, go to the node with the lowest load, and come back with their result,
 * output and exception; status events are delivered in order, never re-entrantly.
 */
import { EventEmitter } from 'node:events';
import { rmSync } from 'node:fs';
import { isIP } from 'node:net';
import pino, { type Logger } from 'pino';
import { DispyError } from '../errors.js';
import type { Computation, Depend, JobFile, NodeMessage, Reply } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import { resolveSecret } from '../protocol/secret.js';
import { loadTls } from '../protocol/tls.js';
import { buildComputation, hookSources, type ModuleComputation } from './computation.js';
import type { ProgramComputation } from './interpreter.js';
import { ClusterCore, nextJobUid } from './cluster-core.js';
import { JobLedger, queuedPart, type Queued, type Sent as LedgerSent } from './job-ledger.js';
import { dispatchPolicy, requestPump, registerCluster, unregisterCluster, type Dispatchable } from './dispatcher.js';
import type { JobClusterOptions } from './cluster-options.js';
import { checkJobClusterOptions, checkSubmitOptions, wireTag } from './option-rules.js';
import type { AnyFn, ClusterStatus, DispyCluster, SubmitOptions } from './dispy-cluster.js';
import { DispyJob } from './dispy-job.js';
import { DispyNode } from './dispy-node.js';
import { dependFiles, localFile, normalizeDestPath, transferFile, transferFiles, type LocalFile } from './file-transfer.js';
import { NodeAllocate, parseNodeSpecs, type NodeSpec } from './node-allocate.js';
import { checkOnePortPerHost, discoverSpecs } from './node-ports.js';
import { computationKind } from './job-scope.js';
import { type JobFileAnswer, ResultFiles } from './result-files.js';
import { ClusterDiscovery } from './node-discovery.js';
import { NodeResolver } from './node-resolver.js';
import { writeRecoverFile } from './recover-jobs.js';
import { NodeLink, type Credentials, type JobMessage, type LinkUser } from './node-link.js';
import { JobStatus, NodeStatus, type DispyStatus } from './status.js';
import type { StatusEvent } from './status-events.js';
import { formatBytes } from './print-status.js';
import { hasRoom, nextAvgMs, nodeLoad } from './dispatch-window.js';
import { defaultPulse, reconnectWindow, requestTimeout } from './timeouts.js';
import { cancelGrace, graceOf, nodeSetupSource, type CancelOptions } from './per-node-options.js';
import { warmUpClient } from '../protocol/warm-up.js';

export { formatBytes };

export type { JobClusterOptions } from './cluster-options.js';

/** One status event, as `cluster.on('status')` delivers it (`cluster`: the cluster that emitted it). */
export type ClusterStatusEvent<C = JobCluster> = StatusEvent<C>;

export type { ClusterStatus, DispyCluster, SubmitOptions } from './dispy-cluster.js';

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
  /** Source of `nodeSetup`, or null. */
  nodeSetup?: string | null;
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

type Sent = LedgerSent<ClusterNode>;

export { RECONNECT_WINDOW } from './timeouts.js';

/** Seconds with jobs pending and no usable node before the first warning; then doubled each time, up to WARN_MAX. */
const WARN_FIRST = 5;
const WARN_MAX = 300;

export { MAX_SEND_ATTEMPTS } from './job-ledger.js';

/** Bytes of a job message besides its arguments and per-job file names (ids, tag, MAC, framing). */
const JOB_ENVELOPE = 4096;

export class JobCluster<F extends AnyFn = AnyFn> extends EventEmitter<ClusterEvents> implements DispyCluster<F>, LinkUser, Dispatchable {
  readonly name: string;
  /** False: a JobCluster's nodes are its own (see SharedJobCluster). */
  readonly shared = false;
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
  /** Where each pending job is, and the rules that move it (job-ledger.ts). */
  readonly #ledger = new JobLedger<ClusterNode>();
  /** Nodes already reported (error event) for refusing a job by size. */
  readonly #sizeReported = new Set<string>();
  /** Ids, pending count, events, settling, waiters (cluster-core.ts). */
  readonly #core: ClusterCore<JobCluster>;
  #closing = false;
  #closed = false;

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
    checkJobClusterOptions(options);
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
    this.#computation = built.wire;
    // Failures surface when a node is set up (an error event); nothing is left unhandled.
    this.#computation.catch(() => undefined);
    this.#computationFiles = built.files;
    this.#destPath = normalizeDestPath(pre ? (pre.destPath ?? undefined) : options.destPath, this.log);
    this.#hooks = pre ? { setup: pre.setup, cleanup: pre.cleanup } : hookSources(options);
    this.#codec = new PayloadCodec(built.classes);
    // A prebuilt cluster forwards results as they came (see _fromWire): no codec for them.
    this.#core = new ClusterCore<JobCluster>(this as JobCluster, {
      callbacks: options,
      log: this.log,
      codec: pre ? null : this.#codec,
      onActive: (on) => this.#setActive(on),
    });
    this.computeId = `${Date.now().toString(36)}-${nextJobUid().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
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
      const mine = [...this.#ledger.sent].filter(([, s]) => s.cn === cn).map(([uid]) => uid);
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
      // While the node loads the computation: the replies and job reports to come (warm-up.ts).
      warmUpClient();
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
        // cleanup gets setup's arguments too, and nodeSetup gets them.
        setupArgs: pre
          ? pre.setup || pre.nodeSetup || pre.cleanup
            ? pre.setupArgs
            : null
          : setup || this.#opts.nodeSetup || typeof cleanup === 'function'
            ? this.#codec.encode(setupArgs, 'setupArgs')
            : null,
        cleanup: this.#hooks.cleanup,
        // Per-node setup (per-node-options.ts).
        nodeSetup: pre ? (pre.nodeSetup ?? null) : nodeSetupSource(this.#opts),
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
      const before = this.#core.everyNode.get(ip);
      if (before) {
        node.jobsDone = before.jobsDone;
        node.jobTime = before.jobTime;
        node.cpuUsed = before.cpuUsed;
        node.tx = before.tx;
        node.rx = before.rx;
      }
      this.#core.everyNode.set(ip, node);
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
    if (this.#core.pending === 0) t.unref();
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
    const { files, maxRuntime, code } = checkSubmitOptions(options, this.#opts.maxFileSize ?? 0, this.#kind);
    const { node } = options;
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

  #checkArgs(bytes: Uint8Array): Uint8Array {
    return this.#core.checkArgs(bytes, this.#opts.maxArgsSize);
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
    const job = this.#core.newJob<Awaited<ReturnType<F>>>(id, args);
    const item: Queued =
      maxRuntime === undefined ? { job: job as DispyJob, args: bytes } : { job: job as DispyJob, args: bytes, maxRuntime };
    this.#ledger.add(item, pinTo);
    requestPump();
    return job;
  }

  /** @internal Submission order of the earliest queued job (the scheduler's `fsfs` policy), or null. */
  headOrder(): number | null {
    return this.#closing ? null : this.#ledger.headOrder();
  }

  /** @internal Sends one queued job to a node if any has room; true if it did. */
  dispatchOne(): boolean {
    if (this.#closing) return false;
    for (const [ip, q] of this.#ledger.pinned) {
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
    if (this.#ledger.large.length && this.#dispatchLarge()) return true;
    while (this.#ledger.queue.length && this.#ledger.queue.peek()!.job.settled) this.#ledger.queue.shift();
    if (this.#ledger.queue.length === 0) return false;
    const head = this.#ledger.queue.peek()!;
    const { best, room } = this.#bestNode(head);
    if (!best) {
      // A node has room but does not take a job that large: it waits apart for one that does.
      if (!room) return false;
      this.#ledger.queue.shift();
      this.#setAside(head);
      return true;
    }
    this.#send(best, this.#ledger.queue.shift()!, false);
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
      const load = nodeLoad(cn, cn.link);
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
    while (this.#ledger.large.length && this.#ledger.large.peek()!.job.settled) this.#ledger.large.shift();
    const item = this.#ledger.large.peek();
    if (!item) return false;
    const { best } = this.#bestNode(item);
    if (best) {
      this.#send(best, this.#ledger.large.shift()!, false);
      return true;
    }
    if (this.#someNodeTakes(item)) return false;
    this.#ledger.large.shift();
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
    this.#ledger.large.push(item);
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
    const uid = nextJobUid();
    item.job._attempt = uid;
    this.#ledger.send(uid, item, cn, pinned);
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
      const s = this.#ledger.sent.get(uid);
      if (!(err instanceof DispyError) || err.code !== 'DISPY_ERR_MESSAGE_TOO_LARGE' || !s) throw err;
      this.#ledger.sent.delete(uid);
      cn.inflight--;
      this.#tooLarge(queuedPart(s));
      return false;
    }
  }

  /** A job with per-job files: the files go to its node first, then the job naming them. */
  async #sendWithFiles(cn: ClusterNode, uid: number, maxRuntime: number, files: LocalFile[]): Promise<void> {
    const s = this.#ledger.sent.get(uid)!;
    try {
      for (const f of files) cn.node.tx += (await transferFile(cn.link, this.computeId, f, { ...this.#fileOpts(), job: uid })).sent;
    } catch (err) {
      // A lost node or a closed cluster took care of the job already.
      if (this.#ledger.sent.get(uid) !== s) return;
      this.#ledger.sent.delete(uid);
      cn.inflight--;
      const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', (err as Error).message);
      if (['DISPY_ERR_CONNECTION', 'DISPY_ERR_TIMEOUT', 'DISPY_ERR_NODE_BUSY'].includes(e.code) && !this.#closing) {
        if (this.#ledger.countLostSend(s.job)) this.#giveUpJob(s, e);
        else this.#requeue(s);
      } else this.#cancelLocal(s.job, `sending its file failed: ${e.code}: ${e.message}`);
      requestPump();
      return;
    }
    if (this.#ledger.sent.get(uid) !== s) return;
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
    if (sent && this.#ledger.isCancelRequested(s.job)) cn.link.cancel(uid, graceOf(s.job));
  }

  /** With a recover file, the job's id travels with it (kept with results nodes cannot deliver). */
  #tagOf(job: DispyJob): string | number | undefined {
    return this.#opts.recoverFile ? wireTag(job.id) : undefined;
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
    const s = this.#ledger.sent.get(msg.uid);
    const job = s && s.cn.link === link ? s.job : null;
    if (job && this.#opts._relayJobFile) return this.#opts._relayJobFile(job, msg);
    return this.#resultFiles.receive(link.host, job, msg);
  }

  /** @internal */
  onJobMessage(link: NodeLink, msg: JobMessage, bytes: number): void {
    const s = this.#ledger.sent.get(msg.uid);
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
        if (this.#core.provisional(job, msg.result, msg.uid)) this.#emit(JobStatus.ProvisionalResult, node, job._snapshot());
        return;
      case 'nak':
        this.#ledger.sent.delete(msg.uid);
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
        this.#ledger.sent.delete(msg.uid);
        cn.inflight--;
        if (s.started) node.busy--;
        this.#finishFromNode(s, msg);
        requestPump();
        return;
    }
  }

  #requeue(s: Sent): void {
    // A job whose cancel was asked for runs nowhere again, whatever brought it back.
    if (this.#ledger.requeue(s, s.cn.node.ipAddr) === 'cancel') this.#cancelLocal(s.job, 'cancelled by the program');
  }

  #finishFromNode(s: Sent, msg: Extract<NodeMessage, { t: 'done' }>): void {
    const { job, cn } = s;
    const node = cn.node;
    job.endTime = msg.endTime;
    if (msg.startTime !== null) {
      job.startTime = msg.startTime;
      job.ipAddr = node.ipAddr;
      node.jobsDone++;
      const ms = Math.max(0, msg.endTime - msg.startTime);
      node.jobTime += ms / 1000;
      cn.avgMs = nextAvgMs(cn.avgMs, ms);
      node.cpuUsed += msg.cpuTime;
    }
    const status = msg.status === 'Finished' ? JobStatus.Finished : msg.status === 'Cancelled' ? JobStatus.Cancelled : JobStatus.Terminated;
    this.#settle(job, this.#core.ended(job, msg, status), node);
  }

  #settle(job: DispyJob, status: DispyStatus, node: DispyNode | null): void {
    this.#core.settle(job, status, node);
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
    return this.#core.pending > 0 && !this.#closed;
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
    if (this.#core.pending === 0 || this.#closing) return;
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
      { cluster: this.name, jobsPending: this.#core.pending, nodes: this.#whyUnusable() },
      `no usable node for ${Math.round((now - this.#unusableSince) / 1000)} s; ${this.#core.pending} jobs wait: ${this.#whyUnusable().join('; ')}`,
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
    this.#core.failWaiters(err);
    const items = [...this.#ledger.queue.clear()];
    for (const q of this.#ledger.pinned.values()) items.push(...q.clear());
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
    if (this.#core.pending === 0) timer.unref();
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
    const mine = [...this.#ledger.sent].filter(([, s]) => s.cn === cn).map(([uid]) => uid);
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
      const s = this.#ledger.sent.get(uid);
      if (s && s.cn === cn && this.#ledger.isCancelRequested(s.job)) link.cancel(uid, graceOf(s.job));
    }
    let lost = 0;
    for (const uid of mine) {
      const s = this.#ledger.sent.get(uid);
      if (!s || s.cn !== cn || running.has(uid)) continue;
      // Neither running there nor kept: it was lost with the connection.
      link.forget(uid);
      this.#ledger.sent.delete(uid);
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
    for (const [uid, s] of [...this.#ledger.sent]) {
      if (s.cn !== cn) continue;
      this.#ledger.sent.delete(uid);
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
    switch (this.#ledger.lose(s, node.ipAddr, { lost, reentrant: this.#opts.reentrant === true, closing: this.#closing })) {
      case 'requeue':
        return;
      case 'cancel':
        this.#cancelLocal(s.job, 'cancelled by the program');
        return;
      case 'give-up':
        this.#giveUpJob(s, reason);
        return;
      case 'rerun':
        s.job.status = JobStatus.Created;
        s.job.startTime = null;
        this.#emit(JobStatus.Created, node, s.job);
        return;
      case 'abandon':
        s.job.exception = `DispyError: node ${node.ipAddr} was lost while running the job${reason ? ` (${reason.message})` : ''}`;
        s.job.endTime = Date.now();
        this.#settle(s.job, JobStatus.Abandoned, node);
    }
  }

  /** The ledger gave the job up (lost unstarted MAX_SEND_ATTEMPTS times): Abandoned, DISPY_ERR_UNDELIVERABLE, with an error event. */
  #giveUpJob(s: Sent, reason: DispyError | null): void {
    const job = s.job;
    const n = this.#ledger.lostSends(job);
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
   *
   * With a grace (`options.grace`, or the cluster's `cancelGrace`) a running job is stopped
   * politely: its `dispyAbortSignal` fires (a program job gets SIGINT), and a job that returns
   * within the grace ends Finished with that value (then this resolves 0 too); after the grace
   * it is killed as without one. Code that never yields to the event loop (a synchronous loop)
   * never sees the signal and is killed after the grace.
   */
  async cancel(job: DispyJob, options?: CancelOptions): Promise<number> {
    if (!(job instanceof DispyJob) || job.cluster !== this || job.settled) return -1;
    // A grace makes it polite (per-node-options.ts).
    const grace = cancelGrace(job, options, this.#opts.cancelGrace);
    const s = this.#ledger.sent.get(job._attempt);
    if (s && s.job === job) {
      this.#ledger.cancelRequested(job);
      // A suspended node's link is closed: #resume passes the cancel on.
      if (!s.cn.suspended) s.cn.link.cancel(job._attempt, grace);
      await job.wait().then(
        () => undefined,
        () => undefined,
      );
      // A polite cancel's job may return on purpose: Finished is then its answer to the cancel.
      return job.status === JobStatus.Finished && grace === 0 ? -1 : 0;
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
    const pinned = this.#ledger.pinned.get(ip);
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
      return (reply.uids ?? []).map((uid) => this.#ledger.sent.get(uid)?.job).filter((j): j is DispyJob => j !== undefined);
    }
    return [...this.#ledger.sent.values()].filter((s) => s.cn === cn && s.started).map((s) => s.job);
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
    return this.#core.wait(timeout);
  }

  /**
   * Waits for pending jobs (up to `timeout` seconds; forever by default), then closes the
   * computation on every node. With `terminate`, it waits only `timeout` seconds (default 0),
   * then jobs still queued end Cancelled and running ones Terminated; without it a timed-out
   * close resolves false and leaves the cluster open. Every job settles.
   */
  close(options: { timeout?: number; terminate?: boolean } = {}): Promise<boolean> {
    return this.#core.close(() => this.#close(options));
  }

  async #close({ timeout, terminate = false }: { timeout?: number; terminate?: boolean }): Promise<boolean> {
    const started = Date.now();
    const idle = await this.#core.wait(terminate ? (timeout ?? 0) : timeout, false);
    if (!idle && !terminate) return false;
    this.#closing = true;
    if (this.#pulseTimer) clearInterval(this.#pulseTimer);
    this.#pulseTimer = null;
    if (this.#watchTimer) clearInterval(this.#watchTimer);
    this.#watchTimer = null;
    this.#discovery.close();
    this.#resolver.close();
    for (const item of this.#ledger.takeQueued()) this.#cancelLocal(item.job, 'cluster closed');
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
    for (const s of this.#ledger.sent.values()) {
      s.job.exception = 'DispyError: job terminated as its cluster was closed';
      s.job.endTime = Date.now();
      this.#settle(s.job, JobStatus.Terminated, s.cn.node);
    }
    this.#ledger.sent.clear();
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
    this.#core.cancelLocal(job, why);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close({ terminate: true });
  }

  /** The cluster's nodes and the number of jobs not yet ended. */
  status(): ClusterStatus {
    return { nodes: [...this.#nodes.values()].filter((cn) => cn.ready).map((cn) => cn.node), jobsPending: this.#core.pending };
  }

  /** Prints (and returns) dispy's table of nodes, jobs, times and data; closed nodes included. */
  printStatus(wallTime?: number): string {
    return this.#core.printStatus(wallTime);
  }

  // ---- events ----

  #emit(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
    this.#core.emit(status, node, job);
  }

  #emitError(err: DispyError): void {
    this.#core.emitError(err);
  }

  #drained(): Promise<void> {
    return this.#core.drained();
  }
}

function canSend(cn: ClusterNode): boolean {
  const link = cn.link;
  return cn.ready && !link.closed && !link.closing && !link.full && !link.draining && hasRoom(cn, link, dispatchPolicy() !== null);
}
