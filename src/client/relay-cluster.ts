/**
 * @internal How `dispyts scheduler` runs a client program's computation: a real JobCluster of
 * this process (node links, setup, heartbeats, dead nodes, re-runs and the HTTP server come
 * with it) built from the computation's wire form, plus what only the scheduler needs of its
 * engine: submitting jobs whose arguments are already encoded, and holding the cluster (no job
 * of it starts) while its client is away. Results stay as the encoded bytes the node sent, so
 * they are forwarded untouched. JobCluster itself has no member for any of this.
 */
import { Errors } from '../errors.js';
import type { JobClusterOptions } from './cluster-options.js';
import { holdCluster } from './dispatcher.js';
import type { DispyJob } from './dispy-job.js';
import type { LocalFile } from './file-transfer.js';
import { JobCluster, clusterEngine } from './job-cluster.js';
import type { JobEngine, RelaySource } from './job-engine.js';
import type { Depend } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';

/** @internal Options of `RelayCluster.submit`. */
export interface EncodedSubmitOptions {
  /** The job's id (default: a counter). */
  id?: unknown;
  /** The arguments as the HTTP server shows them (default: decoded without classes, or a placeholder). */
  display?: unknown[];
  /** Run only on this node (IP address or node name). */
  node?: string;
  /** Seconds after which the job is terminated (default: the cluster's maxRuntime). */
  maxRuntime?: number;
  /** Per-job files, sent to the job's node right before it (read from `path` each time it is sent). */
  files?: LocalFile[];
  /** The job's own functions and classes, as source. */
  depends?: Depend[];
}

/** @internal A cluster running another program's computation, and the scheduler's handle on it. */
export interface RelayCluster {
  /** The cluster (node management, wait, close, events, the HTTP server). */
  readonly cluster: JobCluster;
  /**
   * Queues a job whose arguments are already encoded (by the submitting program's payload
   * codec). Throws DISPY_ERR_CLUSTER_CLOSED, or DISPY_ERR_NODE_UNKNOWN for a `node` that is not
   * the cluster's.
   */
  submit(args: Uint8Array, options?: EncodedSubmitOptions): DispyJob;
  /** Holds the cluster (no job of it starts, it never outranks another) or releases it. */
  hold(on: boolean): void;
}

/**
 * @internal
 * A cluster for `source.computation` (options `setup`, `cleanup`, `destPath` and `depends` are
 * taken from it, not from `options`), whose jobs' files go to `source.jobFile`.
 */
export function relayCluster(source: RelaySource, options: JobClusterOptions = {}): RelayCluster {
  const cluster = new JobCluster(source.computation.computation.name || 'compute', { ...options, _relay: source });
  const engine = clusterEngine(cluster);
  return {
    cluster,
    submit: (args, o = {}) => submitEncoded(engine, args, o),
    hold: (on) => holdCluster(engine, on),
  };
}

function submitEncoded(engine: JobEngine, args: Uint8Array, options: EncodedSubmitOptions): DispyJob {
  if (engine.closing) throw Errors.clusterClosed(engine.name);
  const pinTo = options.node === undefined ? null : engine.pinTarget(options.node);
  const job = engine.enqueue(options.id, pinTo, options.display ?? [], args, options.maxRuntime);
  if (options.files?.length || options.depends?.length)
    engine.jobExtras.set(job, { files: options.files ?? [], ...(options.depends?.length ? { depends: options.depends } : {}) });
  if (!options.display) {
    // Decoded only if something looks (the HTTP server with showJobArgs): most jobs never are.
    let shown: unknown[] | null = null;
    Object.defineProperty(job, 'args', {
      enumerable: true,
      configurable: true,
      get: () => (shown ??= displayArgs(args)),
      set: (v: unknown[]) => {
        shown = v;
      },
    });
  }
  return job;
}

/** Decodes arguments for display only: classes are not known here, so instances come back as plain objects. */
let displayCodec: PayloadCodec | null = null;
function displayArgs(bytes: Uint8Array): unknown[] {
  try {
    displayCodec ??= new PayloadCodec();
    const v = displayCodec.decode(bytes);
    return Array.isArray(v) ? v : [v];
  } catch {
    return ['<encoded arguments>'];
  }
}
