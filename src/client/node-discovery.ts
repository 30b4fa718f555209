/**
 * Client side of UDP discovery (DESIGN.md §3): finds the nodes that wildcard specs such as
 * `'10.77.0.*'` or `'*'` name.
 *
 * On the interface of the cluster's `host` (a non-loopback IPv4 address; a loopback host does no
 * UDP at all) it
 *   - sends `discover` requests from an ephemeral socket (or the cluster's `port`) to the
 *     subnet's broadcast address (or the multicast group) at each wildcard spec's node port, and
 *     hears the nodes' unicast answers there;
 *   - binds the fixed DISCOVERY_PORT on the broadcast address (or the group) with `reuseAddr`,
 *     so every client on the host hears the announcements nodes make when they start or become
 *     free.
 * Every authentic announcement whose address matches a spec (anchored) is handed to the cluster,
 * which connects to the node unless it has it already. Busy nodes are skipped unless this process
 * has a connection to them (another cluster of ours is the client they serve): they announce
 * themselves again once free. Like connections to nodes, the sockets keep the process alive
 * until the cluster is closed (a program waiting for nodes to appear must not exit); the
 * pingInterval timer does not.
 */
import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { DISCOVERY_PORT } from '../protocol/constants.js';
import { isLoopbackHost } from '../protocol/loopback.js';
import {
  DISCOVERY_MULTICAST_GROUP,
  DiscoveryCodec,
  DropLog,
  discoveryInterface,
  type AnnounceMessage,
  type DiscoveryMode,
  type Ipv4Interface,
} from '../protocol/discovery.js';
import type { NodeAllocate } from './node-allocate.js';
import { NodeLink } from './node-link.js';

/** The spec that decides for `ip`: the first whose anchored pattern matches (or that names it). */
export function specFor(specs: readonly NodeAllocate[], ip: string): NodeAllocate | undefined {
  return specs.find((s) => s.ipRex.test(ip) || s.host === ip);
}

export interface ClusterDiscoveryOptions {
  /** The cluster's address: discovery runs on its interface. */
  host: string;
  /** Local port for answers (0 = ephemeral). */
  port: number;
  secret: Buffer;
  /** @default 'broadcast' */
  mode?: DiscoveryMode;
  /** Seconds between re-discoveries (none when absent). */
  pingInterval?: number;
  log: Logger;
  /** The cluster's current specs (allocateNode adds to them). */
  specs: () => readonly NodeAllocate[];
  /** A matching, usable node was announced. */
  onNode: (ip: string, port: number, spec: NodeAllocate, announce: AnnounceMessage) => void;
}

export class ClusterDiscovery {
  readonly #opts: ClusterDiscoveryOptions;
  readonly #mode: DiscoveryMode;
  readonly #codec: DiscoveryCodec;
  readonly #drops: DropLog;
  #iface: Ipv4Interface | null = null;
  #reply: dgram.Socket | null = null;
  #listen: dgram.Socket | null = null;
  #starting: Promise<boolean> | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** The reason discovery could not start, logged once. */
  #unavailable: string | null = null;
  #closed = false;
  /** Whether the sockets keep the process alive (only while the cluster has pending jobs). */
  #refd = false;

  constructor(opts: ClusterDiscoveryOptions) {
    this.#opts = opts;
    this.#mode = opts.mode ?? 'broadcast';
    this.#codec = new DiscoveryCodec(opts.secret);
    this.#drops = new DropLog(opts.log);
  }

  /** Whether discovery can run at all (not off, not a loopback host). */
  get enabled(): boolean {
    return this.#mode !== 'off' && !isLoopbackHost(this.#opts.host) && !this.#closed;
  }

  /**
   * Sends a discover request now for every wildcard spec (binding the sockets first, and
   * starting the pingInterval timer, the first time). Resolves true if a request went out.
   */
  async discover(): Promise<boolean> {
    // Nothing is bound, sent or timed for a cluster without wildcards.
    if (!this.enabled || !this.#opts.specs().some((s) => s.isWildcard)) return false;
    const every = this.#opts.pingInterval;
    if (every && !this.#timer) {
      this.#timer = setInterval(() => void this.discover(), every * 1000);
      this.#timer.unref();
    }
    if (!(await this.#start()) || this.#closed) return false;
    try {
      return await this.#send();
    } catch (err) {
      this.#opts.log.warn({ err: (err as Error).message }, 'discovery request failed');
      return false;
    }
  }

  async #send(): Promise<boolean> {
    const wild = this.#opts.specs().filter((s) => s.isWildcard);
    if (wild.length === 0) return false;
    const dest = this.#mode === 'multicast' ? DISCOVERY_MULTICAST_GROUP : this.#iface!.broadcast;
    const replyPort = this.#reply!.address().port;
    const ports = [...new Set(wild.map((s) => s.port))];
    const sent = await Promise.all(
      ports.map(
        (port) =>
          new Promise<boolean>((resolve) => {
            const datagram = this.#codec.seal({ t: 'discover', replyAddr: this.#opts.host, replyPort });
            this.#reply!.send(datagram, port, dest, (err) => {
              if (err) this.#opts.log.warn({ dest: `${dest}:${port}`, err: err.message }, 'sending a discovery request failed');
              resolve(!err);
            });
          }),
      ),
    );
    this.#opts.log.debug({ dest, ports, mode: this.#mode }, 'discovery request sent');
    return sent.some(Boolean);
  }

  /** Refs the UDP sockets while the cluster has pending jobs, unrefs them while it is idle. */
  setRef(on: boolean): void {
    this.#refd = on;
    for (const s of [this.#reply, this.#listen]) {
      if (on) s?.ref();
      else s?.unref();
    }
  }

  /** Closes the sockets and the timer; nothing is sent afterwards. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#closeSockets();
  }

  #closeSockets(): void {
    for (const s of [this.#reply, this.#listen]) {
      try {
        s?.close();
      } catch {
        // already closed
      }
    }
    this.#reply = this.#listen = null;
  }

  /** Binds once; a failed start (an interface not up yet, say) is tried again at the next discover(). */
  #start(): Promise<boolean> {
    this.#starting ??= this.#bind()
      .catch((err: unknown) => {
        this.#unavailable ??= `a socket cannot bind: ${(err as Error).message}`;
        this.#closeSockets();
        return false;
      })
      .then((ok) => {
        if (!ok) {
          this.#starting = null;
          if (this.#unavailable && !this.#closed) {
            this.#opts.log.warn(
              { host: this.#opts.host },
              `wildcard nodes are matched against known nodes only: no discovery, as ${this.#unavailable}`,
            );
            this.#unavailable = '';
          }
        }
        return ok;
      });
    return this.#starting;
  }

  async #bind(): Promise<boolean> {
    const { host, log } = this.#opts;
    const iface = discoveryInterface(host);
    if (typeof iface === 'string') {
      // Logged once (an empty string: logged already).
      this.#unavailable ??= iface;
      return false;
    }
    this.#iface = iface;
    const multicast = this.#mode === 'multicast';
    const reply = dgram.createSocket({ type: 'udp4' });
    this.#reply = reply;
    reply.on('message', (buf, rinfo) => this.#onDatagram(buf, rinfo));
    reply.on('error', (err) => log.warn({ err: err.message }, 'discovery reply socket error'));
    await bindSocket(reply, host, this.#opts.port);
    if (multicast) {
      reply.setMulticastInterface(host);
      reply.setMulticastTTL(1);
      reply.setMulticastLoopback(true);
    } else reply.setBroadcast(true);
    // Announcements nodes send to DISCOVERY_PORT; shared with other clients on this host.
    const listen = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    this.#listen = listen;
    listen.on('message', (buf, rinfo) => this.#onDatagram(buf, rinfo));
    listen.on('error', (err) => log.warn({ err: err.message }, 'discovery announcement socket error'));
    const listenAddr = multicast ? DISCOVERY_MULTICAST_GROUP : iface.broadcast;
    try {
      await bindSocket(listen, listenAddr, DISCOVERY_PORT);
      if (multicast) listen.addMembership(DISCOVERY_MULTICAST_GROUP, host);
    } catch (err) {
      // Answers to our requests still arrive on the reply socket.
      log.warn({ addr: `${listenAddr}:${DISCOVERY_PORT}`, err: (err as Error).message }, 'cannot hear node announcements');
      this.#listen = null;
      listen.close();
    }
    if (this.#closed) {
      // close() ran while the sockets were being bound.
      this.close();
      return false;
    }
    this.setRef(this.#refd);
    log.info(
      {
        host,
        interface: iface.name,
        mode: this.#mode,
        replyPort: reply.address().port,
        announcements: this.#listen ? `${listenAddr}:${DISCOVERY_PORT}` : null,
      },
      'discovery started',
    );
    return true;
  }

  #onDatagram(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    const from = `${rinfo.address}:${rinfo.port}`;
    const opened = this.#codec.open(buf);
    if (!opened.ok) {
      this.#drops.drop(opened.reason, from, opened.detail);
      return;
    }
    const msg = opened.msg;
    if (msg.t !== 'announce') {
      this.#opts.log.debug({ from, t: msg.t }, 'discovery message that is not an announcement ignored');
      return;
    }
    const spec = specFor(this.#opts.specs(), msg.ipAddr);
    const log = { from, node: `${msg.ipAddr}:${msg.port}`, name: msg.name, nodeId: msg.nodeId, busy: msg.busy, reason: msg.reason };
    if (!spec) {
      this.#opts.log.debug(log, 'announced node matches no spec');
      return;
    }
    this.#opts.log.debug(log, 'node announced');
    if (!msg.busy) {
      this.#opts.onNode(msg.ipAddr, msg.port, spec, msg);
      return;
    }
    // Busy with another client: it announces itself when free. Unless that client is us.
    const exact = new RegExp(`^${msg.ipAddr.replace(/\./g, '\\.')}$`);
    void NodeLink.known(exact).then((links) => {
      if (links.some((l) => l.port === msg.port) && !this.#closed) this.#opts.onNode(msg.ipAddr, msg.port, spec, msg);
    });
  }
}

function bindSocket(socket: dgram.Socket, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address, port }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}
