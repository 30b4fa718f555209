/**
 * The JobCluster that runs a client's computation inside the scheduler (relay-cluster.ts), built
 * from its `compute` message: its files, setup, cleanup and options (shared-computation.ts).
 */
import { join } from 'node:path';
import type { z } from 'zod';
import type { RelaySource } from '../client/job-engine.js';
import type { NodeAllocate } from '../client/node-allocate.js';
import { relayCluster, type RelayCluster } from '../client/relay-cluster.js';
import type { computeSchema } from '../protocol/scheduler-messages.js';
import type { SchedulerContext } from './scheduler-context.js';

export type ComputeMessage = z.infer<typeof computeSchema>;

/** Names of the files that must have arrived before the computation is scheduled. */
export function requiredFiles(msg: ComputeMessage): string[] {
  const names = new Set(msg.files);
  if (msg.computation.kind === 'program') names.add(msg.computation.file);
  return [...names];
}

/** The computation a cluster is built for. */
export interface ClusterFor {
  readonly name: string;
  /** Directory of the files its client sent. */
  readonly dir: string;
  /** Key of the connection that registered it. */
  readonly fileKey: string;
  readonly msg: ComputeMessage;
  /** The nodes it may use (node-scope.ts). */
  readonly nodes: NodeAllocate[];
}

/** Builds the computation's cluster; files its jobs send home go to `jobFile`. */
export function computationCluster(ctx: SchedulerContext, c: ClusterFor, jobFile: RelaySource['jobFile']): RelayCluster {
  const m = c.msg;
  return relayCluster(
    {
      computation: {
        computation: m.computation,
        files: requiredFiles(m).map((name) => ({ path: join(c.dir, name), name })),
        setup: m.setup,
        setupArgs: m.setupArgs,
        cleanup: m.cleanup,
        cleanupFiles: m.cleanupFiles,
        nodeSetup: m.nodeSetup ?? null,
        destPath: m.destPath,
        // Nodes keep each client program in runners of its own: this one is the connection
        // that registered the computation (a key the client cannot choose).
        program: c.fileKey,
      },
      jobFile,
    },
    {
      ...ctx.clusterOptions(),
      nodes: c.nodes,
      name: c.name,
      reentrant: m.reentrant,
      ...(m.maxRuntime > 0 ? { maxRuntime: m.maxRuntime } : {}),
      ...(m.isolate ? { isolate: m.isolate } : {}),
      logger: ctx.log.child({ cluster: c.name }),
    },
  );
}
