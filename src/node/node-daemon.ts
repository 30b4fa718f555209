/**
 * `dispyts node`: accepts authenticated clients, serves one client process at a time, runs its
 * jobs on pre-spawned runners (one process group per running job, one client program per
 * runner) and reports its resources. Its sizes are bounded and announced: messages up to
 * `--max-message-size`, a few KiB per connection before authentication, a capped number of such
 * connections; and every process it starts for jobs carries its tag, so none outlives it
 * (host/process-tag.ts).
 *
 * This file is the daemon's façade: its options (node-options.ts), start and stop, status and
 * the admin surface of its page (CPU limit, drain: node-controls.ts), heartbeats. The parts: the network front
 * (node-front.ts), the client it serves (served-client.ts) and its requests (client-requests.ts),
 * the computation registry (computations.ts), the job scheduler (node-scheduler.ts), the result
 * outbox (result-outbox.ts), the runners (runner-pool.ts, runner.ts) and the state directory
 * (node-record.ts, host/state-dir.ts). docs/architecture.md follows a job through them.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { DispyError } from '../errors.js';
import { FileStore } from '../host/file-store.js';
import { NODE_PORT } from '../protocol/constants.js';
import { HandshakeGate } from '../protocol/handshake-gate.js';
import type { NodeMessage } from '../protocol/messages.js';
import { resolveSecret } from '../protocol/secret.js';
import { CLI_NAMES, loadTls, type TlsMaterial } from '../protocol/tls.js';
import { ClientRequests } from './client-requests.js';
import { Computations } from './computations.js';
import { HostMetrics } from './host-metrics.js';
import { NodeAnnouncer } from './node-announcer.js';
import type { ClientChannel, NodeContext } from './node-context.js';
import { NodeFront } from './node-front.js';
import { NodeStateRecord } from './node-record.js';
import { checkNodeOptions, resolveCpus, type NodeDaemonOptions } from './node-options.js';
import { NodeControls } from './node-controls.js';
import { KILLED, NodeScheduler, type SchedulerHost } from './node-scheduler.js';
import { type NodeDaemonStatus, infoMessage, nodeStatus, pulseMessage } from './node-status.js';
import { ResultOutbox } from './result-outbox.js';
import { NodeExtras } from './node-extras.js';
import { FileRelay } from './send-file-relay.js';
import { RunnerPool } from './runner-pool.js';
import type { Runner } from './runner.js';
import type { ServedClient } from './served-client.js';
import { UndeliveredStore } from './undelivered-store.js';
import { warmUpServer } from '../protocol/warm-up.js';

export { resolveCpus, type NodeDaemonOptions } from './node-options.js';
export type { NodeDaemonStatus } from './node-status.js';

/** The parts of a started daemon. */
interface Parts {
  ctx: NodeContext;
  pool: RunnerPool;
  scheduler: NodeScheduler;
  front: NodeFront;
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
  /** Its state directory and record there (node-record.ts), once started. */
  #record: NodeStateRecord | null = null;
  /** Set once started. */
  #parts: Parts | null = null;
  #owner: ServedClient | null = null;
  #served = 0;
  #pulseTimer: NodeJS.Timeout | null = null;
  #pulseEvery = 0;
  /** Runs while no client connection is open (idleExit). */
  #idleTimer: NodeJS.Timeout | null = null;
  #announcer: NodeAnnouncer | null = null;
  #stopping: Promise<void> | null = null;
  /** CPU limit and draining, set from the node's page (node-controls.ts). */
  readonly #controls: NodeControls;
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
    this.maxMessageSize = checkNodeOptions(opts, this.host);
    this.#gate = new HandshakeGate({ max: opts.maxHandshakes, perPeer: opts.maxHandshakesPerPeer, log: this.log, what: 'node' });
    this.tag = `${this.host}/${this.nodeId}`;
    this.#secret = resolveSecret(opts.secret);
    // Unreadable or unusable TLS files stop the daemon here, before it listens.
    this.#tls = loadTls({ certFile: opts.certFile, keyFile: opts.keyFile, caFile: opts.caFile }, 'node', CLI_NAMES);
    this.stopped = new Promise((r) => (this.#resolveStopped = r));
    this.#controls = new NodeControls({
      host: this.host,
      cpus: this.cpus,
      log: this.log,
      owner: () => this.#owner,
      parts: () => this.#parts,
      pulse: () => this.#pulse(),
    });
  }

  /** Starts runners and listens; resolves with the bound address. */
  async start(): Promise<{ host: string; port: number }> {
    // The node's directory under the prefix is named for its address (its identity).
    this.#record = new NodeStateRecord({ prefix: this.#prefix, host: this.host, clean: this.#opts.clean ?? false, log: this.log });
    const dir = this.#record.path;
    const files = new FileStore(dir, this.#opts.maxFileSize ?? 0, this.log);
    const undelivered = new UndeliveredStore(join(dir, 'undelivered'), this.log, this.#opts.undelivered);
    const pool = new RunnerPool({
      size: this.cpus,
      log: this.log,
      nodeName: this.name,
      nodeIpAddr: this.host,
      tag: this.tag,
      maxMessageSize: this.maxMessageSize,
    });
    const parts = this.#assemble(pool, files, undelivered);
    this.#parts = parts;
    pool.onIdle = () => parts.scheduler.schedule();
    pool.onPidsChanged = () => this.#writePidFile();
    pool.onLoadFailed = (computeId, error) => parts.ctx.computations.loadFailed(computeId, error);
    await pool.start();
    this.port = await parts.front.listen(this.port);
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
    // Parsers and MACs ready before the first client (protocol/warm-up.ts).
    setImmediate(warmUpServer);
    return { host: this.host, port: this.port };
  }

  /** Builds the daemon's parts around the shared context. */
  #assemble(pool: RunnerPool, files: FileStore, undelivered: UndeliveredStore): Parts {
    const daemon = this;
    const extras = new NodeExtras(pool, this.log, this.#opts.sharedStore);
    const fileRelay = new FileRelay();
    // A part of a file a running job sends home goes to its client (send-file-relay.ts).
    pool.onSendFile = (item, reply) => {
      const job = this.#owner?.jobs.get(item.uid);
      if (!job) return false;
      fileRelay.forward((m) => outbox.send(job, m), item, reply);
      return true;
    };
    const outbox = new ResultOutbox({
      host: this.host,
      log: this.log,
      maxMessageSize: this.maxMessageSize,
      undelivered,
      channels: () => this.#owner?.channels ?? [],
    });
    const host: SchedulerHost = {
      log: this.log,
      get cpuLimit() {
        return daemon.cpuLimit;
      },
      get stopping() {
        return daemon.#stopping !== null;
      },
      get draining() {
        return daemon.#controls.draining;
      },
      get clientAway() {
        return daemon.#owner?.channels.size === 0;
      },
      job: (uid) => this.#owner?.jobs.get(uid),
      started: (job, startTime) => outbox.send(job, { t: 'started', uid: job.uid, startTime }),
      provisional: (job, result) => outbox.provisional(job, result),
      finished: (job, done) => {
        this.#owner?.jobs.delete(job.uid);
        job.end();
        outbox.finished(job, done);
      },
      unstarted: (job, why) => this.#controls.unstarted(job, why),
      polite: {
        ask: (job, grace) => extras.polite.ask(job, grace),
        stop: (job, runner, uid, kill) => extras.polite.stop(job, runner as Runner, uid, kill),
      },
    };
    const scheduler = new NodeScheduler(pool, host);
    let computations!: Computations;
    const ctx: NodeContext = {
      host: this.host,
      name: this.name,
      cpus: this.cpus,
      log: this.log,
      opts: this.#opts,
      get stopping() {
        return daemon.#stopping !== null;
      },
      get draining() {
        return daemon.#controls.draining;
      },
      get owner() {
        return daemon.#owner;
      },
      set owner(owner) {
        daemon.#owner = owner;
      },
      get channels() {
        return front.channels;
      },
      pool,
      files,
      undelivered,
      scheduler,
      outbox,
      extras,
      fileRelay,
      get computations() {
        return computations;
      },
      armPulse: () => this.#armPulse(),
      release: (owner) => this.#release(owner),
    };
    computations = new Computations(ctx);
    const requests = new ClientRequests(ctx);
    const front = new NodeFront({
      host: this.host,
      log: this.log,
      secret: this.#secret,
      tls: this.#tls,
      gate: this.#gate,
      maxMessageSize: this.maxMessageSize,
      stopping: () => this.#stopping !== null,
      onChannel: (ch, clientId) => this.#onChannel(ch, clientId),
      onMessage: (ch, clientId, msg) => requests.onMessage(ch, clientId, msg),
      onClose: (ch, clientId, reason) => this.#onClose(ch, clientId, reason),
    });
    return { ctx, pool, scheduler, front };
  }

  /** `'mutual'` when clients must present a certificate, `'tls'`, or `'off'` (plain TCP). */
  get tls(): 'off' | 'tls' | 'mutual' {
    return !this.#tls ? 'off' : this.#tls.ca ? 'mutual' : 'tls';
  }

  // ---- state directory and --clean (node-record.ts) ----

  #writePidFile(): void {
    this.#record?.write(this.port, this.tag, this.#parts?.pool.pids() ?? []);
  }

  // ---- connections and the served client ----

  #onChannel(ch: ClientChannel, clientId: string): void {
    this.#disarmIdleExit();
    if (this.#owner?.clientId === clientId && this.#owner.attach(ch)) this.#parts!.scheduler.schedule();
    ch.send(this.#info());
  }

  #onClose(ch: ClientChannel, clientId: string, reason: DispyError | null): void {
    const channels = this.#parts!.front.channels;
    this.#armIdleExit();
    // Files sent for computations that were never set up go with the client's last connection.
    if (![...channels].some((c) => (c.peerHello?.clientId ?? c.peer) === clientId)) this.#parts!.ctx.files.dropStaged(clientId);
    if (reason) this.log.warn({ peer: ch.peer, code: reason.code, reason: reason.message }, 'connection closed');
    else this.log.debug({ peer: ch.peer }, 'connection closed');
    if (this.#owner?.clientId === clientId) this.#owner.detach(ch);
  }

  #info(): NodeMessage {
    return infoMessage(this, this.#metrics.sample(), this.#owner !== null);
  }

  #release(owner: ServedClient): void {
    // Whatever led here, no runner of this client serves the next one.
    this.#parts?.pool.retireProgram(owner.clientId, true);
    owner.release();
    this.#owner = null;
    this.#served++;
    this.log.info({ clientId: owner.clientId, served: this.#served }, 'client done');
    const serve = this.#opts.serve ?? -1;
    if (serve >= 0 && this.#served >= serve) {
      this.log.info({ served: this.#served }, 'served the requested number of clients; exiting');
      setTimeout(() => void this.stop('served'), 50);
    } else if (!this.#stopping) this.#announcer?.announce('free');
  }

  /** idleExit: starts the countdown when no client connection is open (and none runs yet). */
  #armIdleExit(): void {
    const idleExit = this.#opts.idleExit ?? 0;
    const open = this.#parts?.front.channels.size ?? 0;
    if (idleExit <= 0 || this.#idleTimer || open > 0 || this.#stopping) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      if ((this.#parts?.front.channels.size ?? 0) > 0) return;
      this.log.info({ idleExit }, 'no client connected for the idle-exit interval; exiting');
      void this.stop(`no client for ${idleExit} s`);
    }, idleExit * 1000);
  }

  #disarmIdleExit(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
  }

  // ---- the node's own page (node-httpd.ts): status, CPUs, drain (node-controls.ts) ----

  /** CPUs the node runs jobs on now (at most `cpus`). */
  get cpuLimit(): number {
    return this.#controls.cpuLimit;
  }

  /** Whether the node is draining (see setDraining). */
  get draining(): boolean {
    return this.#controls.draining;
  }

  /** Runs jobs on at most `cpus` (1 to `cpus`) of the node's CPUs, at once; returns the new limit. */
  setCpuLimit(cpus: number): number {
    return this.#controls.setCpuLimit(cpus);
  }

  /** Drains the node (`true`) or resumes it (`false`); returns the new state. */
  setDraining(on: boolean): boolean {
    return this.#controls.setDraining(on);
  }

  /** A read-only picture of the node for its page: CPUs, its client, running jobs, uptime. */
  status(): NodeDaemonStatus {
    const now = { scheduler: this.#parts?.scheduler, owner: this.#owner, served: this.#served, stopping: this.#stopping !== null };
    return nodeStatus(this, now);
  }

  // ---- heartbeats ----

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
    const msg = pulseMessage(this, this.#metrics.sample(), this.#parts?.scheduler.running ?? 0);
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
    this.#parts?.front.close();
    if (this.#pulseTimer) clearInterval(this.#pulseTimer);
    this.#disarmIdleExit();
    // Jobs that never started go back to the client, which runs them elsewhere.
    const shutdown = `node ${this.host} is shutting down`;
    this.#controls.returnQueued('shutdown', shutdown);
    // Running jobs are terminated (their client sees Terminated); jobs queued inside runners
    // come back to the scheduler as never started and are refused below.
    this.#parts?.scheduler.terminateAll(KILLED.shutdown(this.host, reason));
    await this.#parts?.pool.close();
    this.#controls.returnQueued('shutdown', shutdown);
    for (const ch of this.#parts?.front.channels ?? []) {
      ch.send({ t: 'closing', reason: `node ${this.host} is shutting down (${reason})` });
      ch.end();
    }
    if (this.#record?.close()) this.#writePidFile();
    this.log.info('node stopped');
    this.#resolveStopped();
  }
}
