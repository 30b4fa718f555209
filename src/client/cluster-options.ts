/**
 * The options of both cluster kinds: a shared base (what a computation is and how its jobs
 * run, which JobCluster and SharedJobCluster take alike) that JobClusterOptions (nodes of its
 * own) and SharedJobClusterOptions (a scheduler's nodes) extend. Validated by
 * option-rules.ts.
 */
import type { Logger } from 'pino';
import type { DiscoveryMode } from '../protocol/discovery.js';
import type { DispyJob } from './dispy-job.js';
import type { DispyNode } from './dispy-node.js';
import type { NodeSpec } from './node-allocate.js';
import type { NodeLookup } from './node-resolver.js';
import type { RelaySource } from './job-engine.js';
import type { DispyStatus } from './status.js';

/** What both cluster kinds take alike: the computation's shipping, its hooks, its jobs' limits, logging. */
export interface ClusterOptionsBase {
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
   * Re-run jobs whose node died instead of abandoning them.
   * @default false
   * @example reentrant: true
   */
  reentrant?: boolean;
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
   * Run once per node, in one job runner there, before any runner loads the computation:
   * `nodeSetup(...setupArgs)`. Its return value (msgpack, like a result) is handed to each
   * runner's `setup` as its first argument (`setup(value, ...setupArgs)`; with `isolate: 'job'`,
   * in each job's process), so what it reads once (and may then delete) every runner has.
   * Run again by `resetupNode`; throwing closes the computation on that node as a failing
   * `setup` does.
   * @default undefined
   * @example nodeSetup: (file: string) => { const data = require('node:fs').readFileSync(file); require('node:fs').rmSync(file); return data; }
   */
  nodeSetup?: (...args: never[]) => unknown;
  /**
   * Default grace period of `cancel(job)` for a running job, in seconds: the job's
   * `dispyAbortSignal` fires (a program job gets SIGINT) and a job that returns within the
   * grace ends Finished with what it returned; after it, the job is killed (Terminated).
   * @default 0 (killed at once)
   * @example cancelGrace: 5
   */
  cancelGrace?: number;
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
}

/** Options of a JobCluster (nodes of its own). */
export interface JobClusterOptions extends ClusterOptionsBase {
  /**
   * Nodes to use: host names, IP addresses, wildcards (`'127.0.0.*'`), `{ host, port, cpus }` or
   * NodeAllocate instances.
   * @default [host] (the node on the client's own address)
   * @example nodes: ['127.0.0.2', { host: '127.0.0.3', cpus: 1 }]
   */
  nodes?: NodeSpec | NodeSpec[];
  /**
   * The client's IP address; nothing leaves loopback unless this or a node says so.
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
   * @internal For `dispyts scheduler` (relay-cluster.ts): the cluster runs another program's
   * computation, already in its wire form, and relays what its jobs send home to that program.
   */
  _relay?: RelaySource;
}

/** Options of a SharedJobCluster (the nodes of a `dispyts scheduler`). */
export interface SharedJobClusterOptions extends ClusterOptionsBase {
  /**
   * Address of the `dispyts scheduler` (its `--host`).
   * @default '127.0.0.1'
   * @example schedulerHost: '192.0.2.5'
   */
  schedulerHost?: string;
  /**
   * The scheduler's port for clients (its `--port`).
   * @default 9702
   * @example schedulerPort: 9802
   */
  schedulerPort?: number;
  /**
   * Run alone: the scheduler admits this cluster only when no other cluster is active, and
   * admits none while it runs. Jobs submitted meanwhile wait here. `setNodeCpus` works for an
   * exclusive cluster (or with a `--cooperative` scheduler).
   * @default false
   * @example exclusive: true
   */
  exclusive?: boolean;
  /**
   * Seconds to get back to the scheduler after the connection broke while the scheduler still
   * runs (a network outage, a proxy restart): jobs stay pending, calls fail with
   * DISPY_ERR_CONNECTION meanwhile, and on reconnection the cluster resumes its computation
   * (results that came meanwhile are delivered, jobs the scheduler never got are sent again). A
   * scheduler that refuses the connection or restarted ends every pending job at once; so does
   * one not back in time. Never more than the scheduler's zombie interval. 0 turns it off. The
   * scheduler is told it: while the connection is gone it starts none of this cluster's jobs,
   * and at the end of this window it closes the computation (queued jobs dropped, running ones
   * terminated), since nobody can collect their results any more.
   * @default 60
   * @example reconnectTimeout: 300
   */
  reconnectTimeout?: number;
  /**
   * The scheduler's cluster secret (its `--cluster-secret`); the per-user secret file
   * (`~/.config/dispyts/secret`) when absent, which only works for a scheduler of the same user
   * on the same machine. The nodes' secret is the scheduler's business.
   * @default undefined
   * @example secret: process.env.DISPYTS_CLUSTER_SECRET
   */
  secret?: string;
  /**
   * Nodes of the scheduler this cluster may use: host names, IP addresses, wildcards or
   * `{ host, port, cpus }` (a NodeAllocate's `depends` are sent, its `setupArgs` used; its
   * `allocate` is not called: the scheduler decides).
   * @default every node of the scheduler
   * @example nodes: ['127.0.0.2', '127.0.0.3']
   */
  nodes?: NodeSpec | NodeSpec[];
  /**
   * Local address to connect to the scheduler from (the scheduler's monitor shows it).
   * @default chosen by the operating system
   * @example host: '192.0.2.10'
   */
  host?: string;
  /**
   * TLS toward the scheduler: this client's certificate (PEM), for a scheduler that requires
   * one; with `keyFile`, or one PEM holding both. Turns TLS on.
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
   * TLS: CA certificate(s) the scheduler's certificate must chain to (it needs an IP
   * subjectAltName when addressed by IP); turns TLS on.
   * @default undefined (no TLS unless `certFile` is given; then the system CAs)
   * @example caFile: '/etc/dispyts/ca.pem'
   */
  caFile?: string;
}
