/**
 * Node side of UDP discovery (DESIGN.md §3). On a daemon whose `--host` is a non-loopback IPv4
 * address (a loopback daemon, the default, does no UDP at all):
 *   - a socket bound with `reuseAddr` to the broadcast address of that interface (or, with
 *     multicast, to the group, joined on that interface) at the node's port hears clients'
 *     `discover` requests, answered by unicast to the address the request names (which must be
 *     in the interface's subnet: discovery never reaches beyond the link);
 *   - the node announces itself to DISCOVERY_PORT on the broadcast address (or the group, TTL 1)
 *     when it starts and whenever it becomes free, so waiting clients find it.
 * Datagrams are authenticated, time-stamped and bounded (protocol/discovery.ts); bad ones are
 * dropped and logged at most once per reason every few seconds.
 */
import dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import { DISCOVERY_PORT } from '../protocol/constants.js';
import { isLoopbackHost } from '../protocol/loopback.js';
import {
  DISCOVERY_MULTICAST_GROUP,
  DiscoveryCodec,
  DropLog,
  discoveryInterface,
  inSubnet,
  type AnnounceMessage,
  type DiscoveryMode,
  type Ipv4Interface,
} from '../protocol/discovery.js';

/** What an announcement says about the node, read when it is sent. */
export interface NodeAnnouncement {
  nodeId: string;
  name: string;
  cpus: number;
  /** Whether a client owns the node now. */
  busy: boolean;
}

export interface NodeAnnouncerOptions {
  /** The daemon's address (its identity, and the interface discovery runs on). */
  host: string;
  /** The daemon's TCP port: discover requests are heard at this UDP port. */
  port: number;
  secret: Buffer;
  /** @default 'broadcast' */
  mode?: DiscoveryMode;
  log: Logger;
  state: () => NodeAnnouncement;
}

/** Longest node name put in an announcement (characters), so a datagram stays small. */
const MAX_NAME = 100;
/** ms between looks for an interface that is not up yet (no carrier). */
const INTERFACE_RETRY_MS = 3000;

export class NodeAnnouncer {
  readonly #opts: NodeAnnouncerOptions;
  readonly #mode: DiscoveryMode;
  readonly #codec: DiscoveryCodec;
  readonly #drops: DropLog;
  #iface: Ipv4Interface | null = null;
  /** Hears discover requests (bound to the broadcast address or the group). */
  #listen: dgram.Socket | null = null;
  /** Sends announcements and answers from the node's own address. */
  #send: dgram.Socket | null = null;
  /** Set while waiting for the interface of `host` to come up. */
  #retry: NodeJS.Timeout | null = null;
  /** Both sockets bound and configured. */
  #ready = false;
  #closed = false;

  constructor(opts: NodeAnnouncerOptions) {
    this.#opts = opts;
    this.#mode = opts.mode ?? 'broadcast';
    this.#codec = new DiscoveryCodec(opts.secret);
    this.#drops = new DropLog(opts.log);
  }

  /** Whether discovery is running. */
  get running(): boolean {
    return this.#ready && !this.#closed;
  }

  /**
   * Binds the sockets and announces the node. Resolves false (and logs why) when discovery does
   * not run here: mode off, a loopback or wildcard address, or a socket that cannot bind. An
   * address whose interface is not up yet (no carrier: the OS does not list it) is looked for
   * again every few seconds; discovery starts, with its announcement, once it is up. Never
   * rejects: the daemon serves clients that name it either way.
   */
  async start(): Promise<boolean> {
    const { host, port, log } = this.#opts;
    if (this.#mode === 'off' || this.#closed) return false;
    const iface = discoveryInterface(host);
    if (typeof iface === 'string') {
      if (isLoopbackHost(host) || !isIPv4(host) || host === '0.0.0.0') {
        log.debug({ host }, `no UDP discovery: ${iface}`);
        return false;
      }
      if (!this.#retry) log.info({ host }, `UDP discovery waits for the interface: ${iface} (yet)`);
      this.#retry = setTimeout(() => void this.start(), INTERFACE_RETRY_MS);
      this.#retry.unref();
      return false;
    }
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    this.#iface = iface;
    const multicast = this.#mode === 'multicast';
    const listenAddr = multicast ? DISCOVERY_MULTICAST_GROUP : iface.broadcast;
    try {
      const listen = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      this.#listen = listen;
      listen.on('message', (buf, rinfo) => this.#onDatagram(buf, rinfo));
      listen.on('error', (err) => log.warn({ err: err.message }, 'discovery socket error'));
      await bindSocket(listen, listenAddr, port);
      if (multicast) listen.addMembership(DISCOVERY_MULTICAST_GROUP, host);
      const send = dgram.createSocket({ type: 'udp4' });
      this.#send = send;
      send.on('error', (err) => log.warn({ err: err.message }, 'discovery socket error'));
      await bindSocket(send, host, 0);
      if (multicast) {
        send.setMulticastInterface(host);
        send.setMulticastTTL(1);
        send.setMulticastLoopback(true);
      } else send.setBroadcast(true);
      listen.unref();
      send.unref();
    } catch (err) {
      log.warn({ addr: `${listenAddr}:${port}`, err: (err as Error).message }, 'UDP discovery cannot start; clients must name this node');
      this.close();
      return false;
    }
    if (this.#closed) {
      this.close();
      return false;
    }
    this.#ready = true;
    log.info(
      { interface: iface.name, mode: this.#mode, listen: `${listenAddr}:${port}`, announce: `${listenAddr}:${DISCOVERY_PORT}` },
      'UDP discovery started',
    );
    this.announce('start');
    return true;
  }

  /** Tells clients listening on DISCOVERY_PORT about this node (it started, or became free). */
  announce(reason: 'start' | 'free'): void {
    if (!this.running) return;
    const dest = this.#mode === 'multicast' ? DISCOVERY_MULTICAST_GROUP : this.#iface!.broadcast;
    this.#sendAnnounce(reason, dest, DISCOVERY_PORT);
  }

  close(): void {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = null;
    for (const s of [this.#listen, this.#send]) {
      try {
        s?.close();
      } catch {
        // already closed
      }
    }
    this.#listen = this.#send = null;
  }

  #sendAnnounce(reason: AnnounceMessage['reason'], address: string, port: number): void {
    const send = this.#send;
    if (!send || !this.running) return;
    const s = this.#opts.state();
    const datagram = this.#codec.seal({
      t: 'announce',
      ipAddr: this.#opts.host,
      port: this.#opts.port,
      nodeId: s.nodeId,
      name: [...s.name].slice(0, MAX_NAME).join(''),
      cpus: s.cpus,
      busy: s.busy,
      reason,
    });
    send.send(datagram, port, address, (err) => {
      if (err) this.#opts.log.warn({ dest: `${address}:${port}`, reason, err: err.message }, 'sending a discovery announcement failed');
      else this.#opts.log.debug({ dest: `${address}:${port}`, reason, busy: s.busy }, 'announced');
    });
  }

  #onDatagram(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    const from = `${rinfo.address}:${rinfo.port}`;
    const opened = this.#codec.open(buf);
    if (!opened.ok) {
      this.#drops.drop(opened.reason, from, opened.detail);
      return;
    }
    const msg = opened.msg;
    if (msg.t !== 'discover') {
      this.#opts.log.debug({ from, t: msg.t }, 'discovery message that is not a request ignored');
      return;
    }
    // Answers stay on the link: an address elsewhere is not a client that broadcast here.
    if (!inSubnet(msg.replyAddr, this.#iface!)) {
      this.#drops.drop(
        'reply-outside-subnet',
        from,
        `reply address ${msg.replyAddr} is not in ${this.#iface!.address}/${this.#iface!.netmask}`,
      );
      return;
    }
    this.#opts.log.debug({ from, reply: `${msg.replyAddr}:${msg.replyPort}` }, 'discovery request answered');
    this.#sendAnnounce('reply', msg.replyAddr, msg.replyPort);
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
