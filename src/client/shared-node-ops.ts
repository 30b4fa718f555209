/**
 * A SharedJobCluster's node management goes to the scheduler as `node-op` requests (the
 * scheduler runs the JobCluster method of the same name): the request and its answer, node
 * names resolved to the addresses this cluster knows, node specs as the scheduler takes them,
 * and files sent to a node through the scheduler.
 */
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { type DispyError, invalidOption } from '../errors.js';
import { NODE_PORT } from '../protocol/constants.js';
import type { ToSchedulerInput } from '../protocol/scheduler-messages.js';
import { DispyNode } from './dispy-node.js';
import { localFile, transferFile, type LocalFile } from './file-transfer.js';
import type { NodeAllocate, NodeSpecObject } from './node-allocate.js';
import { Refused, type SchedRequest, type SchedulerLink } from './scheduler-link.js';

type NodeOp = Extract<ToSchedulerInput, { t: 'node-op' }>['op'];
type NodeOpFields = Omit<Extract<SchedRequest, { t: 'node-op' }>, 't' | 'op' | 'computeId'>;

export interface SharedNodeOpsInit {
  link: SchedulerLink;
  log: Logger;
  /** Every node the cluster saw, by address (names resolve against it). */
  everyNode: ReadonlyMap<string, DispyNode>;
  /** The computation's id once registered; rejects once the cluster cannot be used. */
  computeId(): Promise<string>;
}

export class SharedNodeOps {
  readonly #o: SharedNodeOpsInit;

  constructor(o: SharedNodeOpsInit) {
    this.#o = o;
  }

  /**
   * One node operation on the scheduler: its answer, or -1 when the scheduler refused (the
   * reason is logged). A lost scheduler rejects (DISPY_ERR_CONNECTION).
   */
  async op(op: NodeOp, fields: NodeOpFields = {}): Promise<number | number[]> {
    const link = this.#o.link;
    const computeId = await this.#o.computeId();
    try {
      const r = await link.request({ t: 'node-op', computeId, op, ...fields });
      return r.value ?? 0;
    } catch (err) {
      if (err instanceof Refused) {
        this.#o.log.warn({ op, node: fields.node, code: err.error.code }, `${op} refused by the scheduler: ${err.error.message}`);
        return -1;
      }
      if (link.broken) throw link.unusable();
      throw err;
    }
  }

  /** As `op`, for operations answering a number. */
  async value(op: NodeOp, fields: NodeOpFields = {}): Promise<number> {
    const v = await this.op(op, fields);
    return typeof v === 'number' ? v : 0;
  }

  /** An IP address for a node name this cluster knows; anything else as it is (the scheduler resolves it). */
  resolve(node: DispyNode | string): string {
    if (node instanceof DispyNode) return node.ipAddr;
    const every = this.#o.everyNode;
    if (isIP(node) || every.has(node)) return node;
    for (const n of every.values()) if (n.name === node) return n.ipAddr;
    return node;
  }

  /** Where a job pinned to `node` runs (checked: a DispyNode, an IP address or a node name). */
  pinTarget(node: DispyNode | string): string {
    if (node instanceof DispyNode) return node.ipAddr;
    if (typeof node !== 'string' || node.length === 0 || node.length > 1024)
      throw invalidOption('node', 'a DispyNode, an IP address or a node name', node);
    return this.resolve(node);
  }

  /** Sends a file through the scheduler to `node`: 0, or -1 (logged) if it is missing, too large or refused. */
  async sendFile(path: string, node: DispyNode | string, opts: { destPath: string | null; maxFileSize: number }): Promise<number> {
    const { link, log } = this.#o;
    let file: LocalFile;
    try {
      file = localFile(path, 'sendFile', opts.maxFileSize);
    } catch (err) {
      log.warn({ path, code: (err as DispyError).code, err: (err as Error).message }, 'sendFile failed');
      return -1;
    }
    const computeId = await this.#o.computeId();
    try {
      await transferFile(link.fileRequester(), computeId, file, opts);
    } catch (err) {
      if (err instanceof Refused) {
        log.warn({ path, code: err.error.code }, `sendFile refused by the scheduler: ${err.error.message}`);
        return -1;
      }
      if (link.broken) throw link.unusable();
      throw err;
    }
    return this.value('send-file', { node: this.resolve(node), file: file.name });
  }
}

/** A node spec as the scheduler takes it. */
export function specToWire(s: NodeAllocate): string | NodeSpecObject {
  return s.cpus || s.port !== NODE_PORT ? { host: s.host, port: s.port, ...(s.cpus ? { cpus: s.cpus } : {}) } : s.host;
}
