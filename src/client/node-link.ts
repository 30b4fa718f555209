/**
 * One authenticated connection from this process to a node, shared by every cluster of the
 * process that reaches the node with the same credentials: one connection and one CPU ledger
 * per node, so the clusters' running jobs together never exceed what the node offers.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { DispyError, fromWire } from '../errors.js';
import { type Channel, connectChannel } from '../protocol/channel.js';
import { DEFAULT_MAX_FRAME } from '../protocol/constants.js';
import {
  nodeMessageSchema,
  type ClientMessageInput as ClientMessage,
  type Depend,
  type JobFile,
  type NodeInfo,
  type NodeMessage,
  type Reply,
} from '../protocol/messages.js';
import { connectTls, type TlsMaterial } from '../protocol/tls.js';
import { requestTimeout } from './timeouts.js';
import type { JobFileAnswer } from './result-files.js';
import { cancelMessage } from './per-node-options.js';

export { REQUEST_TIMEOUT } from './timeouts.js';

/** Identifies this client process to nodes (a node serves one client process at a time). */
export const CLIENT_ID = randomBytes(12).toString('hex');

export type JobMessage = Extract<NodeMessage, { t: 'started' | 'done' | 'nak' | 'provisional' }>;

/**
 * What a cluster's engine (job-engine.ts) implements to receive its share of a link's traffic.
 * Its members are internal (stripped from the published types).
 */
export interface LinkUser {
  /** @internal */
  onJobMessage(link: NodeLink, msg: JobMessage, bytes: number): void;
  /** @internal */
  onPulse(link: NodeLink, msg: Extract<NodeMessage, { t: 'pulse' }>): void;
  /** @internal */
  onComputationClosed(link: NodeLink, computeId: string, reason: string): void;
  /** @internal */
  onLinkClosed(link: NodeLink, reason: DispyError | null): void;
  /** @internal A part of a file a job sends home (result-files.ts); resolves with the answer. */
  onJobFile?(link: NodeLink, msg: JobFile): Promise<JobFileAnswer>;
  /** @internal Seconds between the heartbeats this user wants the node to get (at most 10). */
  readonly heartbeatInterval?: number;
  /**
   * @internal Whether the user has work pending: the link's socket keeps the process alive only
   * while a user has (or a request is waiting for its reply).
   */
  readonly keepsAlive?: boolean;
}

/** Longest time between two client heartbeats to a node, in seconds. */
export const HEARTBEAT_MAX = 10;

export interface Credentials {
  secret: Buffer;
  /** TLS files' contents; plain TCP when absent. */
  tls?: TlsMaterial | null;
}

const links = new Map<string, Promise<NodeLink>>();

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A request without its id (the link assigns it). */
export type RequestMessage = DistributiveOmit<Extract<ClientMessage, { rid: number }>, 'rid'>;

function linkKey(host: string, port: number, creds: Credentials): string {
  // The TLS files are part of the credentials: other TLS settings, another connection.
  return `${host}:${port}|${createHash('sha256').update(creds.secret).digest('hex').slice(0, 16)}|${creds.tls?.fingerprint ?? 'plain'}`;
}

export class NodeLink {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly channel: Channel<NodeMessage, ClientMessage>;
  info: NodeInfo;
  /** Jobs sent on this link and not yet ended, over all clusters. */
  inflight = 0;
  /** Set when the node said it is full; cleared by the next job that ends there. */
  full = false;
  /** Set once the node announced that it is shutting down. */
  closing = false;
  /** ms since epoch of the last message from the node (heartbeats included). */
  lastHeard = Date.now();
  readonly users = new Set<LinkUser>();
  readonly jobs = new Map<number, LinkUser>();
  readonly #log: Logger;
  #rid = 0;
  readonly #requests = new Map<number, { resolve: (r: Reply) => void; reject: (e: DispyError) => void; timer: NodeJS.Timeout | null }>();

  /** Whether the node's page drained it: it starts no job, so none is sent until it resumes. */
  get draining(): boolean {
    return this.info.draining === true;
  }

  /** Largest message the node accepts or sends (its --max-message-size, as it announced it). */
  get maxMessageSize(): number {
    return this.info.maxMessageSize ?? DEFAULT_MAX_FRAME;
  }

  /** CPUs the node runs jobs on now: its `--cpus`, or less when its page lowered them. */
  get cpus(): number {
    const { cpus, cpuLimit } = this.info;
    return cpuLimit !== undefined && cpuLimit > 0 ? Math.min(cpus, cpuLimit) : cpus;
  }

  private constructor(key: string, host: string, port: number, channel: Channel<NodeMessage, ClientMessage>, info: NodeInfo, log: Logger) {
    this.key = key;
    this.host = host;
    this.port = port;
    this.channel = channel;
    this.info = info;
    this.#log = log;
    this.#applyLimit();
    channel.on('message', (msg, bytes) => this.#onMessage(msg, bytes));
    channel.on('close', (reason) => this.#onClose(reason));
  }

  #beatEvery = 0;
  #beatTimer: NodeJS.Timeout | null = null;

  /** Sends nothing larger than the node takes; accepts what it may send (at least the default). */
  #applyLimit(): void {
    this.channel.maxSend = this.maxMessageSize;
    this.channel.maxFrame = Math.max(DEFAULT_MAX_FRAME, this.maxMessageSize);
  }

  /**
   * Heartbeats to the node at the shortest interval any user wants (at most HEARTBEAT_MAX s):
   * a node closes a connection that stays silent for 5 intervals, and keeps its jobs for the
   * client's return. An idle but live client keeps sending them.
   */
  #tuneHeartbeat(): void {
    let every = HEARTBEAT_MAX;
    for (const u of this.users) if (u.heartbeatInterval && u.heartbeatInterval > 0) every = Math.min(every, u.heartbeatInterval);
    if (every === this.#beatEvery || this.closed) return;
    this.#beatEvery = every;
    if (this.#beatTimer) clearInterval(this.#beatTimer);
    const beat = (): void => {
      if (!this.closed) this.channel.send({ t: 'beat', every });
    };
    beat();
    this.#beatTimer = setInterval(beat, every * 1000);
    this.#beatTimer.unref();
  }

  /** Routes job `uid` of `user` to this link (a job resumed after a reconnection). */
  adopt(user: LinkUser, uid: number): void {
    if (this.jobs.has(uid)) return;
    this.jobs.set(uid, user);
    this.inflight++;
  }

  /** Forgets job `uid` (it will not end on this link). */
  forget(uid: number): void {
    if (this.jobs.delete(uid)) this.inflight--;
  }

  /** Handles a job message that came inside a reply (a result the node kept for us). */
  deliver(msg: JobMessage): void {
    this.#onMessage(msg, 0);
  }

  /** The shared link to `host:port` for these credentials, connecting if needed. */
  static async open(host: string, port: number, creds: Credentials, user: LinkUser, log: Logger): Promise<NodeLink> {
    const key = linkKey(host, port, creds);
    let p = links.get(key);
    if (!p) {
      p = NodeLink.#connect(key, host, port, creds, log);
      links.set(key, p);
      p.catch(() => links.delete(key));
    }
    const link = await p;
    if (link.channel.closed) {
      if (links.get(key) === p) links.delete(key);
      return NodeLink.open(host, port, creds, user, log);
    }
    link.users.add(user);
    link.#tuneHeartbeat();
    link.updateRef();
    return link;
  }

  /** Open links whose address matches `rex` (wildcards match the nodes this process knows). */
  static async known(rex: RegExp): Promise<{ host: string; port: number }[]> {
    const out: { host: string; port: number }[] = [];
    for (const p of links.values()) {
      const link = await p.catch(() => null);
      if (link && !link.channel.closed && rex.test(link.host)) out.push({ host: link.host, port: link.port });
    }
    return out;
  }

  static async #connect(key: string, host: string, port: number, creds: Credentials, log: Logger): Promise<NodeLink> {
    const channel = await connectChannel<NodeMessage, ClientMessage>({
      host,
      port,
      secret: creds.secret,
      clientId: CLIENT_ID,
      schema: nodeMessageSchema,
      ...(creds.tls ? { createSocket: () => connectTls(creds.tls!, host, port), readyEvent: 'secureConnect' } : {}),
    });
    const info = await new Promise<NodeInfo>((resolve, reject) => {
      const timer = setTimeout(() => {
        channel.close(new DispyError('DISPY_ERR_TIMEOUT', `node ${host}:${port} sent no info`));
      }, requestTimeout() * 1000);
      channel.once('message', (msg) => {
        clearTimeout(timer);
        if (msg.t === 'info') resolve(msg);
        else {
          channel.close(new DispyError('DISPY_ERR_BAD_FRAME', `node ${host}:${port} sent ${msg.t} before its info`));
          reject(new DispyError('DISPY_ERR_BAD_FRAME', `node ${host}:${port} sent ${msg.t} before its info`));
        }
      });
      channel.once('close', (reason) => {
        clearTimeout(timer);
        reject(reason ?? new DispyError('DISPY_ERR_CONNECTION', `node ${host}:${port} closed the connection`));
      });
    });
    return new NodeLink(key, host, port, channel, info, log);
  }

  get closed(): boolean {
    return this.channel.closed;
  }

  /**
   * Sends a request and resolves with its reply (rejects on error replies, a closed connection
   * and timeouts). `timeoutSec` Infinity waits as long as the connection lasts (a node that
   * answers only once its running jobs ended); the link keeps the process alive meanwhile.
   */
  request(msg: RequestMessage, timeoutSec = requestTimeout()): Promise<Reply> {
    if (this.closed) return Promise.reject(new DispyError('DISPY_ERR_CONNECTION', `connection to node ${this.host} is closed`));
    const rid = ++this.#rid;
    return new Promise<Reply>((resolve, reject) => {
      const timer = Number.isFinite(timeoutSec)
        ? setTimeout(() => {
            this.#requests.delete(rid);
            this.updateRef();
            reject(new DispyError('DISPY_ERR_TIMEOUT', `node ${this.host} did not answer ${msg.t} in ${timeoutSec} s`));
          }, timeoutSec * 1000)
        : null;
      this.#requests.set(rid, { resolve, reject, timer });
      this.updateRef();
      try {
        this.channel.send({ ...msg, rid } as ClientMessage);
      } catch (err) {
        // Too large for the node (DISPY_ERR_MESSAGE_TOO_LARGE): nothing was sent.
        if (timer) clearTimeout(timer);
        this.#requests.delete(rid);
        this.updateRef();
        reject(err);
      }
    });
  }

  #refd = true;

  /**
   * Refs the socket while a user has work pending or a request waits for its reply, unrefs it
   * otherwise: an idle cluster never keeps its program alive.
   */
  updateRef(): void {
    if (this.closed) return;
    let want = this.#requests.size > 0;
    for (const u of this.users) if (u.keepsAlive) want = true;
    if (want === this.#refd) return;
    this.#refd = want;
    if (want) this.channel.socket.ref();
    else this.channel.socket.unref();
  }

  /** Sends a job; returns the bytes written. Throws DISPY_ERR_MESSAGE_TOO_LARGE (nothing sent) if it does not fit. */
  sendJob(
    user: LinkUser,
    uid: number,
    computeId: string,
    args: Uint8Array,
    maxRuntime = 0,
    files: string[] = [],
    tag?: string | number,
    depends?: Depend[],
  ): number {
    const bytes = this.channel.send(
      tag === undefined
        ? { t: 'job', uid, computeId, args, maxRuntime, files, ...(depends ? { depends } : {}) }
        : { t: 'job', uid, computeId, args, maxRuntime, files, tag, ...(depends ? { depends } : {}) },
    );
    this.jobs.set(uid, user);
    this.inflight++;
    return bytes;
  }

  cancel(uid: number, grace = 0): void {
    if (this.jobs.has(uid)) this.channel.send(cancelMessage(uid, grace));
  }

  /** A cluster stops using the link; the last one closes it (once its jobs ended). */
  release(user: LinkUser): void {
    this.users.delete(user);
    this.#endIfUnused();
    this.updateRef();
  }

  #endIfUnused(): void {
    if (this.users.size === 0 && this.jobs.size === 0 && !this.closed) {
      if (links.get(this.key)) links.delete(this.key);
      this.channel.end();
    }
  }

  #onMessage(msg: NodeMessage, bytes: number): void {
    this.lastHeard = Date.now();
    switch (msg.t) {
      case 'started':
      case 'provisional':
      case 'done':
      case 'nak': {
        const user = this.jobs.get(msg.uid);
        if (msg.t === 'done' || msg.t === 'nak') {
          if (user) {
            this.jobs.delete(msg.uid);
            this.inflight--;
          }
          if (msg.t === 'done') this.full = false;
          else if (msg.reason === 'full') this.full = true;
        }
        if (user) user.onJobMessage(this, msg, bytes);
        else this.#log.debug({ node: this.host, uid: msg.uid, t: msg.t }, 'message for an unknown job ignored');
        // The last job of a link nobody uses any more ended.
        if (this.users.size === 0) this.#endIfUnused();
        return;
      }
      case 'job-file': {
        // A file a job sends home: its cluster answers (result-files.ts).
        const user = this.jobs.get(msg.uid);
        const answer = user?.onJobFile
          ? user.onJobFile(this, msg)
          : Promise.resolve({ offset: 0, error: { code: 'DISPY_ERR_NOT_FOUND', message: 'no such job' } });
        void answer.then((a) => {
          if (!this.channel.closed) this.channel.send({ t: 'job-file-ack', fid: msg.fid, ...a });
        });
        return;
      }
      case 'reply': {
        const r = this.#requests.get(msg.rid);
        if (!r) return;
        this.#requests.delete(msg.rid);
        if (r.timer) clearTimeout(r.timer);
        this.updateRef();
        if (msg.ok) r.resolve(msg);
        else r.reject(fromWire(msg.error ?? { code: 'DISPY_ERR_INTERNAL', message: 'request failed' }));
        return;
      }
      case 'pulse':
        this.info = {
          ...this.info,
          availInfo: msg.availInfo,
          ...(msg.cpuLimit !== undefined ? { cpuLimit: msg.cpuLimit } : {}),
          ...(msg.draining !== undefined ? { draining: msg.draining } : {}),
        };
        for (const u of this.users) u.onPulse(this, msg);
        return;
      case 'closed':
        for (const u of this.users) u.onComputationClosed(this, msg.computeId, msg.reason);
        return;
      case 'closing':
        this.closing = true;
        this.#log.info({ node: this.host, reason: msg.reason }, 'node is shutting down');
        return;
      case 'info':
        this.info = msg;
        this.#applyLimit();
        return;
    }
  }

  #onClose(reason: DispyError | null): void {
    if (this.#beatTimer) clearInterval(this.#beatTimer);
    if (links.has(this.key)) {
      const p = links.get(this.key);
      void p?.then((l) => {
        if (l === this) links.delete(this.key);
      });
    }
    for (const r of this.#requests.values()) {
      if (r.timer) clearTimeout(r.timer);
      r.reject(reason ?? new DispyError('DISPY_ERR_CONNECTION', `connection to node ${this.host} closed`));
    }
    this.#requests.clear();
    const users = [...this.users];
    this.users.clear();
    for (const u of users) u.onLinkClosed(this, reason);
    this.jobs.clear();
    this.inflight = 0;
  }
}
