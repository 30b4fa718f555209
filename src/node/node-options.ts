/**
 * The options of a node daemon (`dispyts node`, `new NodeDaemon()`), and their checks: a bad
 * option stops the daemon before it starts anything.
 */
import type { Logger } from 'pino';
import { DispyError, invalidOption } from '../errors.js';
import { DEFAULT_MAX_FRAME, MIN_MAX_FRAME } from '../protocol/constants.js';
import { DISCOVERY_MODES, type DiscoveryMode } from '../protocol/discovery.js';
import { checkHandshakeCaps } from '../protocol/handshake-gate.js';
import { isLoopbackHost } from '../protocol/loopback.js';
import type { SharedStoreLimits } from './node-shared-store.js';
import type { UndeliveredLimits } from './undelivered-store.js';

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
   * Bounds of each computation's shared store on this node (`dispyNodeShared`): keys and lock
   * names, and bytes of keys and encoded values.
   * @default { maxKeys: 10000, maxBytes: 16 MiB }
   * @example sharedStore: { maxKeys: 100, maxBytes: 1024 * 1024 }
   */
  sharedStore?: SharedStoreLimits;
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

/** Resolves `--cpus` against the machine: 0 = all, negative = all but N. */
export function resolveCpus(cpus: number, machineCpus: number): number {
  if (!Number.isInteger(cpus)) throw invalidOption('cpus', 'an integer', cpus);
  if (cpus > machineCpus)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--cpus ${cpus} is more than this machine's ${machineCpus} CPUs`);
  const n = cpus > 0 ? cpus : machineCpus + cpus;
  if (n < 1) throw new DispyError('DISPY_ERR_INVALID_OPTION', `--cpus ${cpus} leaves no CPU to use on a machine with ${machineCpus}`);
  return n;
}

/**
 * Checks the options that need no file or network; returns the largest message size. Throws
 * DISPY_ERR_INSECURE for a non-loopback address without a secret (unless `insecure`).
 */
export function checkNodeOptions(opts: NodeDaemonOptions, host: string): number {
  if (!isLoopbackHost(host) && !opts.secret && !opts.insecure) {
    throw new DispyError(
      'DISPY_ERR_INSECURE',
      `refusing to serve on ${host || 'all interfaces'} without --secret (pass --insecure to use the per-user secret file anyway)`,
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
  checkHandshakeCaps(opts);
  return max;
}
