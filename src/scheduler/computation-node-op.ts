/**
 * `node-op` of a scheduled computation: the JobCluster method of the same name, run on the
 * computation's cluster, with the scheduler's rules on what a computation may do to a shared
 * node (shared-computation.ts).
 */
import { join } from 'node:path';
import type { JobCluster } from '../client/job-cluster.js';
import { DispyError } from '../errors.js';
import type { nodeOpSchema } from '../protocol/scheduler-messages.js';
import type { z } from 'zod';
import { isFile } from './computation-files.js';
import { scopeNodes } from './node-scope.js';
import type { SchedulerContext } from './scheduler-context.js';

export type NodeOpMessage = z.infer<typeof nodeOpSchema>;

/** The computation a node-op is for. */
export interface NodeOpTarget {
  readonly name: string;
  readonly exclusive: boolean;
  /** Directory of the files its client sent. */
  readonly dir: string;
}

/**
 * Runs `msg` on `cluster`; resolves to the method's return value. `uids` maps the cluster's
 * job uids to the client's.
 */
export async function runNodeOp(
  comp: NodeOpTarget,
  cluster: JobCluster,
  ctx: SchedulerContext,
  uids: ReadonlyMap<number, number>,
  msg: NodeOpMessage,
): Promise<number | number[]> {
  const target = msg.node === undefined ? undefined : typeof msg.node === 'string' ? msg.node : msg.node.host;
  const need = (): string => {
    if (target === undefined || target === '')
      throw new DispyError('DISPY_ERR_BAD_REQUEST', `node-op ${msg.op}: which node? (\`node\` is missing)`);
    return target;
  };
  const opts = { terminatePending: msg.terminatePending ?? false };
  switch (msg.op) {
    case 'allocate': {
      const specs = scopeNodes(ctx.nodes, [msg.node ?? need()]);
      let result = -1;
      for (const spec of specs) if ((await cluster.allocateNode(spec)) === 0) result = 0;
      return result;
    }
    case 'deallocate':
      return cluster.deallocateNode(need());
    case 'close':
      return cluster.closeNode(need(), opts);
    case 'resetup':
      return cluster.resetupNode(need(), opts);
    case 'set-cpus': {
      if (!comp.exclusive && !ctx.cooperative) {
        throw new DispyError(
          'DISPY_ERR_FORBIDDEN',
          `set-cpus: computation ${comp.name} is not exclusive and this scheduler is not --cooperative, so it may not change a shared node's CPUs (schedule it exclusive, or start the scheduler with --cooperative)`,
        );
      }
      if (msg.cpus === undefined) throw new DispyError('DISPY_ERR_BAD_REQUEST', 'set-cpus: `cpus` is missing');
      return cluster.setNodeCpus(need(), msg.cpus);
    }
    case 'node-jobs': {
      const jobs = await cluster.nodeJobs(need());
      const found: number[] = [];
      for (const j of jobs) {
        const uid = uids.get(j._uid);
        if (uid !== undefined) found.push(uid);
      }
      return found;
    }
    case 'send-file': {
      if (msg.file === undefined)
        throw new DispyError('DISPY_ERR_BAD_REQUEST', 'send-file: `file` is missing (send it with file-begin/file-chunk first)');
      const path = join(comp.dir, msg.file);
      if (!isFile(path))
        throw new DispyError(
          'DISPY_ERR_NOT_FOUND',
          `send-file: the scheduler has no complete file \`${msg.file}\` for computation ${comp.name} (send it with file-begin/file-chunk first)`,
        );
      return cluster.sendFile(path, need());
    }
    case 'discover':
      return cluster.discoverNodes();
  }
}
