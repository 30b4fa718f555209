/**
 * @internal A JobCluster's node sessions: starting a session (node-session.ts) for each node
 * node-finder.ts finds and trying again with back-off when that fails, heartbeats (a node silent for 5 intervals is dead), what the node links report about a node
 * (pulses, a closed computation, a closed connection), and the recover file's node list.
 */
import { DispyError } from '../errors.js';
import type { NodeMessage } from '../protocol/messages.js';
import { missedBeatsMs, SilenceWatch } from '../protocol/silence-watch.js';
import { warmUpClient } from '../protocol/warm-up.js';
import { DispyNode } from './dispy-node.js';
import { transferFiles } from './file-transfer.js';
import { fileOpts, setupFiles } from './job-dispatch.js';
import type { JobEngine } from './job-engine.js';
import type { NodeAllocate } from './node-allocate.js';
import { NodeLink } from './node-link.js';
import { type DropReason, NodeSession, reconnectRefused, retryDelay, setupRetried } from './node-session.js';
import { nodeSetupSource } from './per-node-options.js';
import { writeRecoverFile } from './recover-jobs.js';
import { NodeStatus } from './status.js';
import { defaultPulse, reconnectWindow } from './timeouts.js';

/** @internal */
export class NodeSessions {
  readonly #e: JobEngine;
  /** Sessions set up (ready, or suspended), by address. */
  readonly nodes = new Map<string, NodeSession>();
  /** Addresses being connected to (or reconnected). */
  readonly connecting = new Set<string>();
  readonly #retryTimers = new Set<NodeJS.Timeout>();
  readonly #lastError = new Map<string, string>();
  /** Why each node that is not usable is not, as last heard (for the warnings). */
  readonly problems = new Map<string, string>();
  /** The daemon identity (nodeId) last seen at each address. */
  readonly #nodeIds = new Map<string, string>();
  /** Every node set up, for the recover file. */
  readonly #recoverNodes = new Map<string, number>();
  #pulseTimer: NodeJS.Timeout | null = null;

  constructor(e: JobEngine) {
    this.#e = e;
  }

  /** Writes the recover file, starts the heartbeat checks and looks for the nodes. */
  start(): void {
    const options = this.#e.opts;
    if (options.recoverFile) this.#writeRecoverFile();
    // Without pulseInterval nodes are asked for heartbeats every 10 s, and one silent for 5 of
    // them is declared dead too: no job waits forever on a stopped or cut-off node.
    const pulse = options.pulseInterval ?? defaultPulse();
    const watch = new SilenceWatch({ roundMs: pulse * 1000 });
    this.#pulseTimer = setInterval(() => this.#checkPulses(watch, pulse), pulse * 1000);
    this.#pulseTimer.unref();
    this.#e.finder.start();
  }

  nodeOf(node: DispyNode | string): NodeSession | undefined {
    if (node instanceof DispyNode) return this.nodes.get(node.ipAddr);
    return this.nodes.get(node) ?? [...this.nodes.values()].find((cn) => cn.node.name === node);
  }

  // ---- a session's start: connecting → setting up → ready ----

  /**
   * Starts a session with the node at `ip:port` (or reconnects the suspended one there): opens
   * the link, asks NodeAllocate for CPUs, sends files and setup, then makes it ready. A failure
   * is reported once per kind and tried again with back-off (#failed).
   */
  async add(ip: string, port: number, spec: NodeAllocate, failures = 0): Promise<void> {
    const current = this.nodes.get(ip);
    if (this.#e.closing || (current && !current.suspended) || this.connecting.has(ip)) return;
    // A retry for an address its followed name no longer lists.
    if (spec.resolve === 'all' && !this.#e.finder.resolver.has(spec, ip)) return;
    this.connecting.add(ip);
    // A suspended session reconnects itself; otherwise a new one starts (connecting).
    const fresh = current ? null : new NodeSession(spec);
    let link: NodeLink | null = null;
    try {
      link = await NodeLink.open(ip, port, this.#e.creds, this.#e, this.#e.log);
      const set = await this.#setUp(ip, port, spec, link, fresh);
      if (set) await this.#place(ip, port, spec, link, set, fresh);
      else fresh?.failed('closed');
    } catch (err) {
      fresh?.failed('refused');
      this.#failed(ip, port, spec, failures, link, err);
    } finally {
      this.connecting.delete(ip);
    }
  }

  /**
   * Asks NodeAllocate for the node's CPUs, then sends the computation's files and setup there
   * (`fresh`, a new session, goes to setting up). Resolves to the CPUs and the bytes of files
   * shipped, or null (link released) when the node gets no CPU or the cluster is closing.
   */
  async #setUp(ip: string, port: number, spec: NodeAllocate, link: NodeLink, fresh: NodeSession | null): Promise<SetUp | null> {
    const e = this.#e;
    const info = link.info;
    const cpus = Math.min(spec.allocate(e.cluster, ip, info.name, info.cpus, info.availInfo, info.platform), info.cpus);
    // What allocate() chose for this node, read before any await: a NodeAllocate shared by
    // several nodes may set other depends/setupArgs for the next one meanwhile.
    const files = setupFiles(e, spec);
    const setupArgs = spec.setupArgs;
    if (!(cpus > 0)) {
      e.log.info({ node: ip }, 'node not allocated (0 cpus)');
      this.problems.set(ip, 'not allocated (NodeAllocate.allocate gave it 0 cpus)');
      link.release(e);
      return null;
    }
    if (e.closing) {
      link.release(e);
      return null;
    }
    fresh?.linked(link, new DispyNode(ip, port, info.name, e.cluster), cpus);
    const computation = await e.computation;
    // Files first (program, file depends, the spec's depends), so setup finds them.
    const shipped = await transferFiles(link, e.computeId, files, fileOpts(e));
    // While the node loads the computation: the replies and job reports to come (warm-up.ts).
    warmUpClient();
    await link.request({ t: 'setup', computeId: e.computeId, cluster: e.name, computation, cpus, ...this.#setupFields(setupArgs) });
    if (e.closing) {
      await link.request({ t: 'close', computeId: e.computeId, terminate: true }).catch(() => undefined);
      link.release(e);
      return null;
    }
    return { cpus, shipped };
  }

  /** The setup message's fields besides the computation and its CPUs. */
  #setupFields(setupArgs: unknown[]) {
    const e = this.#e;
    const o = e.opts;
    const pre = e.prebuilt;
    return {
      pulseInterval: o.pulseInterval ?? defaultPulse(),
      // The node keeps our jobs as long as we would wait for it after a broken connection.
      reconnectWindow: o.pulseInterval ? 5 * o.pulseInterval : reconnectWindow(),
      recoverable: o.recoverFile !== undefined,
      setup: e.hooks.setup,
      // cleanup gets setup's arguments too, and nodeSetup gets them.
      setupArgs: pre
        ? pre.setup || pre.nodeSetup || pre.cleanup
          ? pre.setupArgs
          : null
        : o.setup || o.nodeSetup || typeof o.cleanup === 'function'
          ? e.codec.encode(setupArgs, 'setupArgs')
          : null,
      cleanup: e.hooks.cleanup,
      // Per-node setup (per-node-options.ts).
      nodeSetup: pre ? (pre.nodeSetup ?? null) : nodeSetupSource(o),
      cleanupFiles: pre ? pre.cleanupFiles : o.cleanup !== false,
      destPath: e.destPath,
      isolate: o.isolate ?? null,
      program: pre?.program ?? null,
    };
  }

  /**
   * Setup ran on `link`: a suspended session of the same daemon resumes on it; one of another
   * daemon (restarted) is dropped and a new session takes its place; else `fresh` becomes ready.
   */
  async #place(ip: string, port: number, spec: NodeAllocate, link: NodeLink, set: SetUp, fresh: NodeSession | null): Promise<void> {
    const e = this.#e;
    const info = link.info;
    const prev = this.nodes.get(ip);
    if (prev?.suspended) {
      if (prev.awaitedNodeId === info.nodeId) {
        await prev.resume(e, link);
        return;
      }
      // Another daemon answers at that address: what ran on the old one is gone.
      prev.drop(e, 'restarted', new DispyError('DISPY_ERR_CONNECTION', `node ${ip} restarted (a new daemon answers there)`));
    }
    if (this.#nodeIds.get(ip) === info.nodeId) {
      // The same daemon as before (its link returned after we gave it up): it stops what it
      // still runs for us and forgets results kept for us. Sent before any new job.
      link.request({ t: 'resume', computeId: e.computeId, uids: [] }).catch((err: unknown) => {
        e.log.debug({ node: ip, err: (err as Error).message }, 'resume after reconnection failed');
      });
    }
    this.#nodeIds.set(ip, info.nodeId);
    let session = fresh;
    if (!session) {
      // The suspended session was dropped (restarted, or its wait ran out): a new one.
      session = new NodeSession(spec);
      session.linked(link, new DispyNode(ip, port, info.name, e.cluster), set.cpus);
    }
    this.#ready(session, set);
  }

  /** The session is ready: in the table (with the counters its address had), Initialized. */
  #ready(session: NodeSession, { cpus, shipped }: SetUp): void {
    const e = this.#e;
    const { link, node } = session;
    const ip = node.ipAddr;
    const info = link.info;
    node.availCpus = link.cpus;
    node.cpus = Math.min(cpus, link.cpus);
    node.machineCpus = info.machineCpus;
    node.availInfo = info.availInfo;
    node.platform = info.platform;
    session.setUp();
    this.nodes.set(ip, session);
    this.#lastError.delete(ip);
    this.problems.delete(ip);
    link.updateRef();
    // A node that comes back keeps its counters in the table under the same address.
    const before = e.core.everyNode.get(ip);
    if (before) {
      node.jobsDone = before.jobsDone;
      node.jobTime = before.jobTime;
      node.cpuUsed = before.cpuUsed;
      node.tx = before.tx;
      node.rx = before.rx;
    }
    e.core.everyNode.set(ip, node);
    node.tx += shipped;
    e.log.info({ node: ip, cpus }, 'node initialized');
    if (e.opts.recoverFile && !this.#recoverNodes.has(ip)) {
      this.#recoverNodes.set(ip, node.port);
      this.#writeRecoverFile();
    }
    e.emit(NodeStatus.Initialized, node, null);
    e.pump();
  }

  /**
   * An attempt failed: the reason is kept (and reported once per kind), a suspended session
   * whose address refuses is dropped, and the address is tried again unless the failure is the
   * program's own (setupRetried). A node that closed the computation at setup says Closed.
   */
  #failed(ip: string, port: number, spec: NodeAllocate, failures: number, link: NodeLink | null, err: unknown): void {
    const e = this.#e;
    const de = err instanceof DispyError ? err : new DispyError('DISPY_ERR_CONNECTION', (err as Error).message);
    this.problems.set(ip, `${de.code}: ${de.message}`);
    if (de.code === 'DISPY_ERR_SETUP' && link) {
      // The computation was closed on that node: say so, with a Closed event for it.
      const node = new DispyNode(ip, port, link.info.name, e.cluster);
      node.availCpus = link.cpus;
      node.machineCpus = link.info.machineCpus;
      node.status = NodeStatus.Closed;
      e.emitError(new DispyError(de.code, `node ${ip}:${port}: ${de.message}`, { cause: de }));
      e.emit(NodeStatus.Closed, node, null);
      link.release(e);
      return;
    }
    link?.release(e);
    const waiting = this.nodes.get(ip);
    if (waiting?.suspended && reconnectRefused(de)) {
      // Nothing listens there any more (or someone else owns it): the daemon we had is gone.
      waiting.drop(e, 'refused', new DispyError(de.code, `node ${ip} cannot be reached again: ${de.message}`));
    }
    // Report each kind of failure once per node, not at every retry.
    if (this.#lastError.get(ip) !== de.code) {
      this.#lastError.set(ip, de.code);
      e.emitError(new DispyError(de.code, `node ${ip}:${port}: ${de.message}`, { cause: de }));
    }
    if (setupRetried(de.code)) this.#retry(ip, port, spec, failures + 1);
  }

  #retry(ip: string, port: number, spec: NodeAllocate, failures: number): void {
    if (this.#e.closing) return;
    const suspended = this.nodes.get(ip)?.suspended ?? false;
    const delay = retryDelay(failures, suspended, this.#lastError.get(ip) === 'DISPY_ERR_NODE_BUSY');
    const t = setTimeout(() => {
      this.#retryTimers.delete(t);
      void this.add(ip, port, spec, failures);
    }, delay * 1000);
    if (this.#e.core.pending === 0) t.unref();
    this.#retryTimers.add(t);
  }

  // ---- what the links report ----

  /**
   * Nodes send a heartbeat every `pulseInterval` (every 10 s without it); one silent for 5
   * intervals, busy or idle, is declared dead: its connection is closed, which drops its
   * session (dead: its jobs re-run or are abandoned, Closed is emitted) and the address is
   * tried again, so a node that comes back is used again.
   */
  #checkPulses(watch: SilenceWatch, pulseInterval: number): void {
    const e = this.#e;
    const late = watch.round(this.nodes.values(), {
      heard: (cn) => cn.link,
      limitMs: (cn) => (cn.link.closed ? Number.POSITIVE_INFINITY : missedBeatsMs(pulseInterval)),
      gone: (cn, silent) => {
        cn.dead = true;
        e.log.warn({ node: cn.node.ipAddr, silentMs: silent }, 'node missed its heartbeats: declared dead');
        const why = `node ${cn.node.ipAddr} sent nothing for ${(silent / 1000).toFixed(1)} s (5 heartbeats of ${pulseInterval} s): declared dead`;
        cn.link.channel.close(new DispyError('DISPY_ERR_CONNECTION', why));
      },
    });
    // The silence was ours (this process was stopped or blocked), not the nodes': they get a fresh 5 intervals.
    if (late !== null) e.log.warn({ lateMs: late }, 'heartbeat check ran late (process paused?): nodes not judged this round');
  }

  onPulse(link: NodeLink, msg: Extract<NodeMessage, { t: 'pulse' }>): void {
    const cn = this.nodes.get(link.host);
    if (!cn || cn.link !== link) return;
    const e = this.#e;
    cn.node.availInfo = msg.availInfo;
    cn.node.updateTime = Date.now();
    // The node's own page may have changed the CPUs it runs jobs on, or drained it.
    if (cn.node.availCpus !== link.cpus) {
      cn.node.availCpus = link.cpus;
      cn.node.cpus = Math.min(cn.cap, link.cpus);
      e.log.info({ node: cn.node.ipAddr, cpus: link.cpus }, "node's CPUs changed");
      e.pump();
    }
    if (cn.draining !== link.draining) {
      cn.draining = link.draining;
      e.log.info({ node: cn.node.ipAddr, draining: link.draining }, link.draining ? 'node draining: no job is sent to it' : 'node resumed');
      e.pump();
    }
    e.emit(NodeStatus.AvailInfo, cn.node, null);
  }

  onComputationClosed(link: NodeLink, reason: string): void {
    const cn = this.nodes.get(link.host);
    if (cn && cn.link === link) cn.drop(this.#e, 'closed', new DispyError('DISPY_ERR_UNKNOWN_COMPUTATION', reason));
  }

  /**
   * A node's connection closed: a session not declared dead, not closing and not being closed
   * is suspended (its jobs wait for the node to come back); otherwise it is dropped and the
   * address tried again.
   */
  onLinkClosed(link: NodeLink, reason: DispyError | null): void {
    const cn = this.nodes.get(link.host);
    if (!cn || cn.link !== link) return;
    const e = this.#e;
    const pulse = e.opts.pulseInterval;
    const { ipAddr, port } = cn.node;
    if (!e.closing && !cn.dead && !link.closing && !cn.suspended && !cn.closingNode && cn.suspend(e, reason, pulse, reconnectWindow())) {
      this.#retry(ipAddr, port, cn.spec, 0);
      return;
    }
    cn.drop(e, dropReasonOf(cn, link, e.closing), reason);
    if (!e.closing && !cn.closingNode) this.#retry(ipAddr, port, cn.spec, 1);
  }

  /** A dropped session leaves the table; why it went is kept for the warnings. */
  forget(session: NodeSession, reason: DispyError | null): void {
    const ip = session.node.ipAddr;
    if (this.nodes.get(ip) === session) this.nodes.delete(ip);
    if (reason && !this.#e.closing) this.problems.set(ip, `${reason.code}: ${reason.message}`);
  }

  // ---- keeping the program alive, closing ----

  /** Refs or unrefs what waits on nodes (retries, reconnections, links, discovery): only pending jobs keep the program alive. */
  setRef(on: boolean): void {
    for (const t of this.#retryTimers) on ? t.ref() : t.unref();
    for (const cn of this.nodes.values()) {
      cn.setRef(on);
      cn.link.updateRef();
    }
    this.#e.finder.discovery.setRef(on && !this.#e.closing);
  }

  /** The cluster closes: no heartbeat check, discovery, retry or reconnection any more. */
  stopTimers(): void {
    if (this.#pulseTimer) clearInterval(this.#pulseTimer);
    this.#pulseTimer = null;
    this.#e.finder.close();
    for (const t of this.#retryTimers) clearTimeout(t);
    this.#retryTimers.clear();
    for (const cn of this.nodes.values()) cn.stopWaiting();
  }

  /** Closes the computation on every node still connected (terminating its jobs), each answering within `replyWithin` s. */
  async closeComputation(replyWithin: number): Promise<void> {
    const e = this.#e;
    await Promise.all(
      [...this.nodes.values()]
        .filter((cn) => !cn.suspended && !cn.link.closed)
        .map((cn) =>
          cn.link.request({ t: 'close', computeId: e.computeId, terminate: true }, replyWithin).catch((err: unknown) => {
            e.log.warn({ node: cn.node.ipAddr, err: (err as Error).message }, 'closing the computation on a node failed');
          }),
        ),
    );
  }

  /** The cluster closed: every node Closed, its link released. */
  closeAll(): void {
    for (const cn of [...this.nodes.values()]) {
      this.nodes.delete(cn.node.ipAddr);
      cn.node.busy = 0;
      cn.node.status = NodeStatus.Closed;
      cn.node.updateTime = Date.now();
      this.#e.emit(NodeStatus.Closed, cn.node, null);
      cn.link.release(this.#e);
    }
  }

  #writeRecoverFile(): void {
    const e = this.#e;
    const path = e.opts.recoverFile!;
    try {
      writeRecoverFile(path, {
        computeId: e.computeId,
        cluster: e.name,
        created: Date.now(),
        nodes: [...this.#recoverNodes].map(([host, port]) => ({ host, port })),
      });
    } catch (err) {
      e.emitError(new DispyError('DISPY_ERR_INVALID_OPTION', `cannot write the recover file ${path}: ${(err as Error).message}`));
    }
  }
}

/** What setup gave: the node's CPUs for this cluster, and the bytes of files shipped before it. */
interface SetUp {
  cpus: number;
  shipped: number;
}

/** Why a session whose connection closed is dropped rather than suspended. */
function dropReasonOf(cn: NodeSession, link: NodeLink, closing: boolean): DropReason {
  if (cn.dead) return 'dead';
  if (closing || link.closing || cn.closingNode) return 'closed';
  return 'lost';
}
