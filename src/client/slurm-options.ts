/** The options of `slurmNodes()` and what it gives back for each node (slurm-nodes.ts). */
import type { SlurmHostFrom } from '../protocol/slurm-ready.js';

export interface SlurmNodesOptions {
  /**
   * How many dispyts nodes to start: one per Slurm task (`sbatch --ntasks`).
   * @example nodes: 4
   */
  nodes: number;
  /**
   * CPUs of each node: the CPUs Slurm gives each task (`--cpus-per-task`), which the node offers.
   * @default 1
   * @example cpusPerNode: 32
   */
  cpusPerNode?: number;
  /**
   * Nodes per compute host (`--ntasks-per-node`). A node's identity is its address, so more
   * than one per host needs a per-task address (`host: 'loopback:N'`).
   * @default 1
   * @example nodesPerHost: 2
   */
  nodesPerHost?: number;
  /**
   * Slurm partition (`--partition`).
   * @default undefined (the cluster's default partition)
   * @example partition: 'compute'
   */
  partition?: string;
  /**
   * Time limit of the allocation (`--time`): minutes, or Slurm's `[days-]hours:minutes:seconds`.
   * @default undefined (the partition's default)
   * @example time: '2:00:00'
   */
  time?: number | string;
  /**
   * Name of the batch job in `squeue` (`--job-name`).
   * @default 'dispyts'
   * @example jobName: 'sweep-42'
   */
  jobName?: string;
  /**
   * More `sbatch` options, e.g. an account, a QOS, memory or constraints.
   * @default []
   * @example sbatchArgs: ['--account=proj7', '--mem-per-cpu=2G']
   */
  sbatchArgs?: string[];
  /**
   * A directory this host and the compute hosts both see at the same path (HPC home or
   * scratch). Each allocation gets a private subdirectory (mode 700) for its batch script,
   * Slurm's output, the secret file and the ready files; `close()` removes it.
   * @default `~/.dispyts/slurm`
   * @example sharedDir: '/scratch/alice/dispyts'
   */
  sharedDir?: string;
  /**
   * The nodes' shared secret. Given to them in a file only you can read (never on a command
   * line), deleted once every node has read it.
   * @default a new random secret for this allocation
   * @example secret: process.env.DISPYTS_SECRET
   */
  secret?: string;
  /**
   * A file holding the secret, mode 600, at a path the compute hosts see; used instead of `secret`.
   * @default undefined
   * @example secretFile: '/home/alice/.config/dispyts/secret'
   */
  secretFile?: string;
  /**
   * Each node exits when no client has been connected for this many seconds (`dispyts node
   * --idle-exit`); when the last one has, the batch job ends and Slurm frees the allocation. This
   * is what releases it when the program dies without `close()`.
   * @default 60
   * @example idleExit: 300
   */
  idleExit?: number;
  /**
   * How each task picks its node's address: `'hostname'` (what the compute host's name
   * resolves to there), `'interface:NAME'` (that interface's IPv4 address, e.g. `interface:ib0`)
   * or `'loopback:N'` (127.0.0.(N + task rank): the program and every task on one machine).
   * @default 'hostname'
   * @example host: 'interface:ib0'
   */
  host?: SlurmHostFrom;
  /**
   * The nodes' TCP port; 0 lets each pick a free one (the ready file tells the client).
   * @default 0
   * @example port: 9701
   */
  port?: number;
  /**
   * The command that runs `dispyts` on the compute hosts.
   * @default [process.execPath, this package's dist/cli/main.js] (the same paths must exist there)
   * @example command: ['/opt/node20/bin/node', '/home/alice/app/node_modules/dispyts/dist/cli/main.js']
   */
  command?: string[];
  /**
   * More `dispyts node` options for every node (not --host, --cpus, --secret or --idle-exit).
   * @default []
   * @example nodeArgs: ['--log-level', 'debug', '--max-file-size', '1g']
   */
  nodeArgs?: string[];
  /**
   * Seconds to wait for every node to be ready (0: as long as Slurm keeps the job queued or
   * running). When it passes, the job is cancelled and `slurmNodes` rejects.
   * @default 0
   * @example readyTimeout: 3600
   */
  readyTimeout?: number;
  /**
   * Seconds between looks for ready files; Slurm is asked about the job every 5 of them.
   * @default 1
   * @example pollInterval: 0.5
   */
  pollInterval?: number;
  /**
   * Called as each node becomes ready, before `slurmNodes` resolves.
   * @default undefined
   * @example onNode: (n) => console.log(`node ${n.host}:${n.port} ready on ${n.slurmNode}`)
   */
  onNode?: (node: SlurmNode) => void;
  /**
   * Cancels the wait for the nodes (and the job).
   * @default undefined
   * @example signal: AbortSignal.timeout(600_000)
   */
  signal?: AbortSignal;
}

/** A node started in the allocation: usable as a `JobCluster` node spec. */
export interface SlurmNode {
  host: string;
  port: number;
  /** CPUs it offers (the task's). */
  cpus: number;
  name: string;
  /** The Slurm node (compute host) it runs on. */
  slurmNode: string;
  /** Its task's rank in the job. */
  task: number;
}
