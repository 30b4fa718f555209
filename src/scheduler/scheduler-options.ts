/**
 * The options of `dispyts scheduler` (SchedulerDaemon) and their checks, run before the
 * scheduler opens anything: a bad option is refused with DISPY_ERR_INVALID_OPTION naming it, a
 * scheduler beyond loopback without a cluster secret with DISPY_ERR_INSECURE.
 */
import type { Logger } from 'pino';
import { DISPATCH_POLICIES } from '../client/dispatcher.js';
import { DispyError, invalidOption } from '../errors.js';
import { DEFAULT_MAX_FRAME, MIN_MAX_FRAME } from '../protocol/constants.js';
import { checkHandshakeCaps } from '../protocol/handshake-gate.js';
import { isLoopbackHost } from '../protocol/loopback.js';

export interface SchedulerDaemonOptions {
  /**
   * The nodes to share: host names, IP addresses or wildcards, each optionally with `:PORT`.
   * A wildcard finds nodes by UDP discovery on the interface of `host`; a loopback `host` sends
   * no UDP, so a loopback scheduler must list its nodes.
   * @default ['*']
   * @example nodes: ['127.0.0.2', '127.0.0.3:9801']
   */
  nodes?: string[];
  /**
   * Address clients connect to; also the interface nodes are discovered on.
   * @default '127.0.0.1'
   * @example host: '192.0.2.10'
   */
  host?: string;
  /**
   * Port for clients (0 = any free one).
   * @default 9702
   * @example port: 9802
   */
  port?: number;
  /**
   * Name the scheduler tells clients.
   * @default os.hostname()
   * @example name: 'lab-scheduler'
   */
  name?: string;
  /**
   * Shared secret of the nodes.
   * @default the per-user secret file
   * @example nodeSecret: process.env.DISPYTS_NODE_SECRET
   */
  nodeSecret?: string;
  /**
   * Secret clients authenticate with.
   * @default the per-user secret file
   * @example clusterSecret: process.env.DISPYTS_CLUSTER_SECRET
   */
  clusterSecret?: string;
  /**
   * TLS toward nodes: this scheduler's client certificate (PEM).
   * @default undefined
   * @example nodeCertFile: '/etc/dispyts/scheduler-client-cert.pem'
   */
  nodeCertFile?: string;
  /**
   * TLS toward nodes: its private key.
   * @default undefined (the key in `nodeCertFile`)
   * @example nodeKeyFile: '/etc/dispyts/scheduler-client-key.pem'
   */
  nodeKeyFile?: string;
  /**
   * TLS toward nodes: CA certificate(s) the nodes' certificates chain to; turns TLS on.
   * @default undefined
   * @example nodeCaFile: '/etc/dispyts/node-ca.pem'
   */
  nodeCaFile?: string;
  /**
   * TLS toward clients: the scheduler's certificate (PEM); serve TLS only.
   * @default undefined
   * @example certFile: '/etc/dispyts/scheduler-cert.pem'
   */
  certFile?: string;
  /**
   * TLS toward clients: its private key.
   * @default undefined (the key in `certFile`)
   * @example keyFile: '/etc/dispyts/scheduler-key.pem'
   */
  keyFile?: string;
  /**
   * TLS toward clients: require client certificates signed by a CA in this file.
   * @default undefined
   * @example caFile: '/etc/dispyts/client-ca.pem'
   */
  caFile?: string;
  /**
   * Seconds between heartbeats: asked of nodes (one silent for 5 of them is declared dead) and
   * sent to clients.
   * @default undefined (every 10 s; a node silent for 50 s is declared dead)
   * @example pulseInterval: 2
   */
  pulseInterval?: number;
  /**
   * Seconds between re-discoveries of nodes.
   * @default undefined (off)
   * @example pingInterval: 60
   */
  pingInterval?: number;
  /**
   * Seconds a vanished client's computations keep running before they are closed.
   * @default 3600
   * @example zombieInterval: 600
   */
  zombieInterval?: number;
  /**
   * Largest file a client may send, in bytes (0 = unlimited).
   * @default 0
   * @example maxFileSize: 100 * 1024 * 1024   // 100 MiB
   */
  maxFileSize?: number;
  /**
   * Largest message (frame) accepted from a client or sent to one, in bytes; announced to
   * clients. A job whose result does not fit ends Terminated with DISPY_ERR_MESSAGE_TOO_LARGE
   * naming both sizes. At least 64 KiB.
   * @default 67108864 (64 MiB)
   * @example maxMessageSize: 256 * 1024 * 1024
   */
  maxMessageSize?: number;
  /**
   * Client connections that may be in their handshake (not yet authenticated) at once; more
   * are closed at once (logged once per address a minute).
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
   * Where clients' files are kept.
   * @default `${os.tmpdir()}/dispyts/scheduler`
   * @example destPathPrefix: '/var/lib/dispyts/scheduler'
   */
  destPathPrefix?: string;
  /**
   * Delete what a previous scheduler at this address left under `destPathPrefix`.
   * @default false
   * @example clean: true
   */
  clean?: boolean;
  /**
   * Which computation gets each free CPU: `fsfs` the one whose earliest queued job was submitted
   * first, `fair` the one served least recently, `early` the one created first.
   * @default 'fsfs'
   * @example policy: 'fair'
   */
  policy?: 'fsfs' | 'fair' | 'early';
  /**
   * Let any computation (not only exclusive ones) change its nodes' CPUs.
   * @default false
   * @example cooperative: true
   */
  cooperative?: boolean;
  /**
   * Allow a non-loopback `host` without a cluster secret.
   * @default false
   * @example insecure: true
   */
  insecure?: boolean;
  /**
   * Closed clusters the HTTP server keeps showing (the oldest go first).
   * @default 16
   * @example keepClosed: 50
   */
  keepClosed?: number;
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

/** Default seconds between the scheduler's heartbeats to clients. */
export const CLIENT_PULSE_INTERVAL = 10;

function seconds(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max))
    throw invalidOption(name, `seconds from ${min} to ${max}`, v);
}

/**
 * Checks the options (the scheduler on `host`:`port`); returns the largest message to or from a
 * client, in bytes.
 */
export function checkSchedulerOptions(opts: SchedulerDaemonOptions, host: string, port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidOption('port', 'an integer from 0 to 65535', port);
  if (!isLoopbackHost(host) && !opts.clusterSecret && !opts.insecure) {
    throw new DispyError(
      'DISPY_ERR_INSECURE',
      `refusing to serve clients on ${host || 'all interfaces'} without --cluster-secret (pass --insecure to use the per-user secret file anyway)`,
    );
  }
  seconds('pulseInterval', opts.pulseInterval, 0.1, 1000);
  seconds('pingInterval', opts.pingInterval, 1, 1000);
  if (
    opts.zombieInterval !== undefined &&
    !(typeof opts.zombieInterval === 'number' && Number.isFinite(opts.zombieInterval) && opts.zombieInterval > 0)
  ) {
    throw invalidOption('zombieInterval', 'a positive number of seconds', opts.zombieInterval);
  }
  if (opts.maxFileSize !== undefined && !(Number.isInteger(opts.maxFileSize) && opts.maxFileSize >= 0))
    throw invalidOption('maxFileSize', 'a number of bytes >= 0', opts.maxFileSize);
  if (opts.keepClosed !== undefined && !(Number.isInteger(opts.keepClosed) && opts.keepClosed >= 0))
    throw invalidOption('keepClosed', 'an integer >= 0', opts.keepClosed);
  const max = opts.maxMessageSize ?? DEFAULT_MAX_FRAME;
  if (!(Number.isInteger(max) && max >= MIN_MAX_FRAME && max <= 0xffffffff))
    throw invalidOption('maxMessageSize', `a number of bytes from ${MIN_MAX_FRAME} to 4 GiB`, opts.maxMessageSize);
  checkHandshakeCaps(opts);
  const policy = opts.policy ?? 'fsfs';
  if (!DISPATCH_POLICIES.includes(policy)) throw invalidOption('policy', "'fsfs', 'fair' or 'early'", policy);
  return max;
}
