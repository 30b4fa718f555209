/**
 * UDP discovery datagrams (DESIGN.md §3, "Discovery").
 *
 * A client looking for nodes by wildcard sends a `discover` request to the broadcast address
 * (or the multicast group) of its interface at the node port; nodes answer it by unicast with an
 * `announce`, and announce themselves unasked to the fixed DISCOVERY_PORT when they start and
 * whenever they become free.
 *
 * Layout of one datagram (at most MAX_DATAGRAM bytes, checked before anything is decoded):
 *
 *   magic "DTD" + format byte (4) | HMAC-SHA256(key, magic | body) (32) | msgpack body
 *
 * The key is derived from the shared secret (never the secret itself). The body carries the
 * protocol version, a timestamp (ms) and a random 16-byte nonce. A receiver drops, and logs
 * (rate-limited), a datagram that is too large, malformed, forged (bad MAC, compared with
 * timingSafeEqual), stale (timestamp more than the window away from its clock) or replayed
 * (nonce seen within the window; the nonce cache is bounded).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';
import os from 'node:os';
import type { Logger } from 'pino';
import { z } from 'zod';
import { DispyError } from '../errors.js';
import { PROTOCOL_VERSION } from './constants.js';
import { isLoopbackHost } from './loopback.js';
import { packMessage, unpackMessage } from './wire-codec.js';

/** Largest discovery datagram sent or accepted (bytes). */
export const MAX_DATAGRAM = 1024;
/** Seconds a datagram's timestamp may differ from the receiver's clock. */
export const DISCOVERY_WINDOW = 30;
/** IPv4 multicast group of `discovery: 'multicast'` (administratively scoped; sent with TTL 1). */
export const DISCOVERY_MULTICAST_GROUP = '239.255.97.5';
/** Most nonces a receiver remembers; beyond that (all still in the window) datagrams are dropped. */
export const MAX_NONCES = 8192;

/** How nodes and clients find each other on the interface of their address. */
export type DiscoveryMode = 'broadcast' | 'multicast' | 'off';
export const DISCOVERY_MODES: readonly DiscoveryMode[] = ['broadcast', 'multicast', 'off'];

const MAGIC = Buffer.from([0x44, 0x54, 0x44, 0x01]); // "DTD" + format 1
const TAG_BYTES = 32;
const NONCE_LEN = 16;
const HEADER = MAGIC.length + TAG_BYTES;

const nonce = z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.length === NONCE_LEN, {
  message: `expected ${NONCE_LEN} random bytes`,
});
const ipv4 = z
  .string()
  .max(15)
  .refine((s) => isIPv4(s), { message: 'expected an IPv4 address' });
const port = z.number().int().min(1).max(65535);
const stamp = { v: z.number().int(), ts: z.number().int().nonnegative(), nonce };

/** client -> nodes (broadcast/multicast at the node port): "who is there?", answer to replyAddr:replyPort. */
export const discoverSchema = z.object({ t: z.literal('discover'), ...stamp, replyAddr: ipv4, replyPort: port });
/** node -> client(s): the node's TCP address, name, CPUs and whether it serves a client now. */
export const announceSchema = z.object({
  t: z.literal('announce'),
  ...stamp,
  ipAddr: ipv4,
  port,
  nodeId: z.string().min(1).max(64),
  name: z.string().max(256),
  cpus: z.number().int().min(1).max(1_000_000),
  busy: z.boolean(),
  /** Why it was sent: the node started, became free, or answers a discover request. */
  reason: z.enum(['start', 'free', 'reply']),
});
export const discoveryMessageSchema = z.discriminatedUnion('t', [discoverSchema, announceSchema]);
export type DiscoveryMessage = z.infer<typeof discoveryMessageSchema>;
export type DiscoverMessage = z.infer<typeof discoverSchema>;
export type AnnounceMessage = z.infer<typeof announceSchema>;
type Unstamped<T> = T extends unknown ? Omit<T, 'v' | 'ts' | 'nonce'> : never;
/** A message as a sender writes it (the codec adds version, timestamp and nonce). */
export type DiscoveryMessageInput = Unstamped<DiscoveryMessage>;

/** Why a datagram was dropped. */
export type DropReason = 'oversized' | 'malformed' | 'bad-mac' | 'stale' | 'replayed' | 'nonce-cache-full';

const DROP_TEXT: Record<DropReason | 'reply-outside-subnet', string> = {
  oversized: `larger than ${MAX_DATAGRAM} bytes`,
  malformed: 'not a discovery datagram',
  'bad-mac': 'bad MAC (forged, or sent with another secret)',
  stale: `timestamp more than ${DISCOVERY_WINDOW} s away from this clock`,
  replayed: 'replayed (its nonce was seen already)',
  'nonce-cache-full': 'too many datagrams within the window (nonce cache full)',
  'reply-outside-subnet': 'its reply address is outside the subnet',
};

export type OpenResult = { ok: true; msg: DiscoveryMessage } | { ok: false; reason: DropReason; detail?: string };

/** The discovery key: derived from the shared secret, so the secret itself never keys a broadcast. */
export function discoveryKey(secret: Buffer): Buffer {
  return createHmac('sha256', secret).update('dispyts discovery key v1').digest();
}

export interface DiscoveryCodecOptions {
  /** Seconds a timestamp may be off. @default 30 */
  window?: number;
  /** @default 8192 */
  maxNonces?: number;
  /** Clock (ms), for tests. @default Date.now */
  now?: () => number;
}

/**
 * Seals and opens discovery datagrams with one secret. Each receiver has its own codec (its own
 * nonce cache): two sockets hearing the same broadcast both accept it once.
 */
export class DiscoveryCodec {
  readonly #key: Buffer;
  readonly #windowMs: number;
  readonly #maxNonces: number;
  readonly #now: () => number;
  /** nonce (hex) -> ms after which its datagram is stale anyway (insertion order ~ expiry order). */
  readonly #nonces = new Map<string, number>();

  constructor(secret: Buffer, opts: DiscoveryCodecOptions = {}) {
    this.#key = discoveryKey(secret);
    this.#windowMs = (opts.window ?? DISCOVERY_WINDOW) * 1000;
    this.#maxNonces = opts.maxNonces ?? MAX_NONCES;
    this.#now = opts.now ?? Date.now;
  }

  /** The datagram for `msg`, stamped now (or at `ts`, for tests) with a fresh nonce. */
  seal(msg: DiscoveryMessageInput, opts: { ts?: number; nonce?: Uint8Array } = {}): Buffer {
    const body = packMessage({ ...msg, v: PROTOCOL_VERSION, ts: opts.ts ?? this.#now(), nonce: opts.nonce ?? randomBytes(NONCE_LEN) });
    const out = Buffer.concat([MAGIC, this.#tag(body), body]);
    if (out.length > MAX_DATAGRAM)
      throw new DispyError('DISPY_ERR_PAYLOAD_TOO_LARGE', `discovery datagram of ${out.length} bytes is larger than ${MAX_DATAGRAM}`);
    return out;
  }

  /** Checks and decodes a received datagram; never throws. */
  open(buf: Uint8Array): OpenResult {
    if (buf.length > MAX_DATAGRAM) return { ok: false, reason: 'oversized', detail: `${buf.length} bytes` };
    if (buf.length <= HEADER || !MAGIC.equals(buf.subarray(0, MAGIC.length)))
      return { ok: false, reason: 'malformed', detail: 'no discovery header' };
    const body = buf.subarray(HEADER);
    const tag = buf.subarray(MAGIC.length, HEADER);
    if (!timingSafeEqual(tag, this.#tag(body))) return { ok: false, reason: 'bad-mac' };
    let value: unknown;
    try {
      value = unpackMessage(body);
    } catch (err) {
      return { ok: false, reason: 'malformed', detail: (err as Error).message.slice(0, 200) };
    }
    const parsed = discoveryMessageSchema.safeParse(value);
    if (!parsed.success)
      return {
        ok: false,
        reason: 'malformed',
        detail: parsed.error.issues
          .map((i) => `${i.path.join('.')}: ${i.message}`)
          .join('; ')
          .slice(0, 200),
      };
    const msg = parsed.data;
    const now = this.#now();
    if (Math.abs(now - msg.ts) > this.#windowMs)
      return { ok: false, reason: 'stale', detail: `${((now - msg.ts) / 1000).toFixed(1)} s old` };
    this.#expire(now);
    const id = Buffer.from(msg.nonce).toString('hex');
    if (this.#nonces.has(id)) return { ok: false, reason: 'replayed' };
    // Fail closed: only authentic datagrams get here, so a full cache means a sender with the
    // secret is flooding; forgetting a live nonce would let its datagram be replayed.
    if (this.#nonces.size >= this.#maxNonces) return { ok: false, reason: 'nonce-cache-full' };
    this.#nonces.set(id, msg.ts + this.#windowMs + 1000);
    return { ok: true, msg };
  }

  #tag(body: Uint8Array): Buffer {
    return createHmac('sha256', this.#key).update(MAGIC).update(body).digest();
  }

  #expire(now: number): void {
    for (const [id, until] of this.#nonces) {
      if (until > now) {
        // Mostly in order; a full cache gets a complete sweep.
        if (this.#nonces.size < this.#maxNonces) break;
        continue;
      }
      this.#nonces.delete(id);
    }
  }
}

/**
 * Logs dropped datagrams at most once per reason per `intervalMs`, with the number suppressed
 * since, so a flood of junk cannot fill the disk.
 */
export class DropLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #last = new Map<DropReason | string, { at: number; suppressed: number }>();

  constructor(log: Logger, intervalMs = 5000, now: () => number = Date.now) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  drop(reason: DropReason | string, from: string, detail?: string): void {
    const now = this.#now();
    const seen = this.#last.get(reason);
    if (seen && now - seen.at < this.#intervalMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.#last.set(reason, { at: now, suppressed: 0 });
    const text = (DROP_TEXT as Record<string, string>)[reason] ?? reason;
    this.#log.warn(
      { reason, from, ...(detail ? { detail } : {}), ...(suppressed ? { suppressed } : {}) },
      `discovery datagram dropped: ${text}`,
    );
  }
}

/** An IPv4 address of this machine with its subnet. */
export interface Ipv4Interface {
  /** Interface name (eth0). */
  name: string;
  address: string;
  netmask: string;
  /** The subnet's broadcast address. */
  broadcast: string;
}

export function ipv4ToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The broadcast address of `address`/`netmask`. */
export function broadcastAddress(address: string, netmask: string): string {
  const mask = ipv4ToInt(netmask);
  return intToIpv4(((ipv4ToInt(address) & mask) | (~mask >>> 0)) >>> 0);
}

/** Whether `ip` is in the subnet of `iface`. */
export function inSubnet(ip: string, iface: Ipv4Interface): boolean {
  if (!isIPv4(ip)) return false;
  const mask = ipv4ToInt(iface.netmask);
  return (ipv4ToInt(ip) & mask) >>> 0 === (ipv4ToInt(iface.address) & mask) >>> 0;
}

/**
 * Why discovery cannot run on `host`, or its interface: only a non-loopback IPv4 address that
 * is configured on an interface of this machine (with a real subnet) can broadcast.
 */
export function discoveryInterface(
  host: string,
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
): Ipv4Interface | string {
  if (isLoopbackHost(host)) return `${host} is a loopback address (loopback has no broadcast)`;
  if (!isIPv4(host) || host === '0.0.0.0') return `${host || "''"} is not the IPv4 address of one interface`;
  for (const [name, infos] of Object.entries(interfaces)) {
    for (const info of infos ?? []) {
      if (info.family !== 'IPv4' || info.address !== host) continue;
      if (info.internal) return `${host} is on the loopback interface ${name}`;
      if (info.netmask === '255.255.255.255') return `${host} on ${name} has no subnet to broadcast on`;
      return { name, address: host, netmask: info.netmask, broadcast: broadcastAddress(host, info.netmask) };
    }
  }
  return `${host} is not an address of any interface of this machine`;
}
