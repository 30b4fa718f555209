/**
 * @internal What a JobCluster's node-management methods do (their contracts are documented on
 * JobCluster): discovering and allocating nodes at run time, deallocating, closing and
 * setting up again a node's computation, its CPUs, its jobs, and files sent to it.
 */
import { isIP } from 'node:net';
import type { DispyError } from '../errors.js';
import { DispyNode } from './dispy-node.js';
import type { DispyJob } from './dispy-job.js';
import { localFile, transferFile } from './file-transfer.js';
import { fileOpts } from './job-dispatch.js';
import type { JobEngine } from './job-engine.js';
import { NodeAllocate, parseNodeSpecs, type NodeSpec } from './node-allocate.js';
import { NodeLink } from './node-link.js';
import { checkOnePortPerHost, discoverSpecs } from './node-ports.js';
import type { NodeSession } from './node-session.js';
import { NodeStatus } from './status.js';

/** @internal */
export async function discoverNodes(e: JobEngine, specs: NodeSpec | NodeSpec[] | undefined): Promise<number> {
  if (e.closing) return -1;
  const finder = e.finder;
  if (specs !== undefined) {
    await discoverSpecs(parseNodeSpecs(specs), {
      discover: () => finder.discovery.discover(),
      lookup: (host) => finder.resolver.lookup(host),
      specFor: (ip) => finder.specFor(ip),
      addNode: (ip, port, spec) => e.sessions.add(ip, port, spec),
    });
    return 0;
  }
  await finder.initNodes();
  return 0;
}

/** @internal */
export async function allocateNode(e: JobEngine, spec: NodeSpec | DispyNode): Promise<number> {
  if (e.closing) return -1;
  const { sessions, finder } = e;
  const alloc = spec instanceof DispyNode ? new NodeAllocate(spec.ipAddr, spec.port) : parseNodeSpecs(spec)[0]!;
  // A bare address names a node the cluster may already know (at its port): no conflict.
  if (typeof spec !== 'string') checkOnePortPerHost([...finder.specs, alloc], 'allocateNode');
  // Literal addresses keep precedence over wildcards, as in the constructor.
  const at = alloc.isWildcard ? finder.specs.length : finder.specs.findIndex((s) => s.isWildcard);
  finder.specs.splice(at < 0 ? finder.specs.length : at, 0, alloc);
  // A wildcard is also discovered: nodes that answer are set up as they do.
  const discovered = alloc.isWildcard && (await finder.discovery.discover());
  if (alloc.resolve === 'all') {
    // Followed from now on; resolved at once, and the nodes it lists set up.
    await finder.resolver.refresh();
    const ips = finder.resolver.addresses(alloc);
    await Promise.all(ips.map((ip) => finder.following.get(ip)));
    return ips.some((ip) => sessions.nodes.has(ip)) ? 0 : -1;
  }
  const targets = await allocTargets(e, alloc);
  if (!targets) return -1;
  let ok = false;
  for (const { host, port } of targets) {
    const r = await allocateAt(e, alloc, host, port);
    if (r === null) return -1;
    if (r) ok = true;
  }
  return ok || discovered ? 0 : -1;
}

/** The addresses a (non-followed) spec names now; null (error event emitted) if its name does not resolve. */
async function allocTargets(e: JobEngine, alloc: NodeAllocate): Promise<{ host: string; port: number }[] | null> {
  if (alloc.isWildcard) return NodeLink.known(alloc.ipRex);
  if (isIP(alloc.host)) return [{ host: alloc.host, port: alloc.port }];
  try {
    return [{ host: await e.finder.lookupFirst(alloc), port: alloc.port }];
  } catch (err) {
    e.emitError(err as DispyError);
    return null;
  }
}

/** Uses the node at `host`: one deallocated is used again, a new one set up. Null: the cluster closed meanwhile. */
async function allocateAt(e: JobEngine, alloc: NodeAllocate, host: string, port: number): Promise<boolean | null> {
  let cn = e.sessions.nodes.get(host);
  if (cn?.closingNode) {
    // Being closed: once it is, it is set up again.
    await cn.closingNode.closed;
    if (e.closing) return null;
    cn = e.sessions.nodes.get(host);
  }
  if (cn) {
    if (!cn.ready && !cn.link.closed) {
      cn.allocated = true;
      cn.node.status = NodeStatus.Initialized;
      cn.node.updateTime = Date.now();
      e.emit(NodeStatus.Initialized, cn.node, null);
      e.pump();
    }
    return true;
  }
  await e.sessions.add(host, port, alloc);
  return e.sessions.nodes.has(host);
}

/** @internal */
export function deallocateNode(e: JobEngine, node: DispyNode | string): number {
  const cn = e.sessions.nodeOf(node);
  if (!cn?.ready) return -1;
  cn.allocated = false;
  cn.node.status = NodeStatus.Closed;
  cn.node.updateTime = Date.now();
  e.emit(NodeStatus.Closed, cn.node, null);
  return 0;
}

/** @internal */
export function closeNode(e: JobEngine, node: DispyNode | string, terminatePending: boolean): number {
  const cn = e.sessions.nodeOf(node);
  if (!cn) return -1;
  const ip = cn.node.ipAddr;
  const pinned = e.ledger.pinned.get(ip);
  if (pinned) for (const item of pinned.clear()) e.core.cancelLocal(item.job, `its node ${ip} was closed`);
  if (cn.closingNode) cn.closingNode.kind = 'close';
  else void closeOnNode(e, cn, 'close', terminatePending);
  return 0;
}

/** @internal */
export async function resetupNode(e: JobEngine, node: DispyNode | string, terminatePending: boolean): Promise<number> {
  const cn = e.sessions.nodeOf(node);
  if (!cn) return -1;
  const { ipAddr, port } = cn.node;
  const spec = cn.spec;
  if (cn.closingNode) await cn.closingNode.closed;
  else await closeOnNode(e, cn, 'resetup', terminatePending);
  // Closed for good meanwhile (closeNode), or the cluster is closing.
  if (e.closing || cn.closingNode?.kind === 'close') return -1;
  e.sessions.problems.delete(ipAddr);
  await e.sessions.add(ipAddr, port, spec);
  return e.sessions.nodes.get(ipAddr)?.ready ? 0 : -1;
}

/**
 * Closes the computation on a node, waiting as long as its running jobs take (the node
 * answers once they ended; nothing times out into dropping them): the node gets no new job
 * meanwhile and its jobs report as usual. Then its session is dropped (closed, Closed).
 */
function closeOnNode(e: JobEngine, cn: NodeSession, kind: 'close' | 'resetup', terminate: boolean): Promise<void> {
  const ip = cn.node.ipAddr;
  cn.allocated = false;
  const closed = (async () => {
    if (kind === 'close') {
      cn.node.status = NodeStatus.Closed;
      cn.node.updateTime = Date.now();
      e.emit(NodeStatus.Closed, cn.node, null);
    }
    try {
      await cn.link.request({ t: 'close', computeId: e.computeId, terminate }, Number.POSITIVE_INFINITY);
    } catch (err) {
      // The connection is gone: its jobs were dealt with as the node's loss.
      e.log.warn({ node: ip, err: (err as Error).message }, 'closing the computation on a node failed');
    }
    if (e.sessions.nodes.get(ip) === cn) cn.drop(e, 'closed', null, false);
    if (cn.closingNode?.kind === 'close') e.sessions.problems.set(ip, 'closed (closeNode)');
  })();
  cn.closingNode = { kind, closed };
  return closed;
}

/** @internal */
export async function setNodeCpus(e: JobEngine, node: DispyNode | string, cpus: number): Promise<number> {
  const cn = e.sessions.nodeOf(node);
  if (!cn || !Number.isInteger(cpus)) return -1;
  // Relative to the node's --cpus: a lower limit set on its page caps what runs, not the cap.
  const avail = cn.link.info.cpus;
  const target = cpus >= 0 ? Math.min(avail, cpus) : avail + cpus;
  if (target < 0) return -1;
  try {
    const reply = await cn.link.request({ t: 'set-cpus', computeId: e.computeId, cpus: target });
    cn.cap = reply.cpus ?? target;
  } catch (err) {
    e.log.warn({ node: cn.node.ipAddr, err: (err as Error).message }, 'setting cpus failed');
    return -1;
  }
  cn.node.cpus = Math.min(cn.cap, cn.link.cpus);
  cn.node.updateTime = Date.now();
  e.emit(NodeStatus.AvailInfo, cn.node, null);
  e.pump();
  return cn.node.cpus;
}

/** @internal */
export async function nodeJobs(e: JobEngine, node: DispyNode | string, fromNode: boolean): Promise<DispyJob[]> {
  const cn = e.sessions.nodeOf(node);
  if (!cn) return [];
  if (fromNode) {
    const reply = await cn.link.request({ t: 'jobs', computeId: e.computeId });
    return (reply.uids ?? []).map((uid) => e.ledger.sent.get(uid)?.job).filter((j): j is DispyJob => j !== undefined);
  }
  return [...e.ledger.sent.values()].filter((s) => s.cn === cn && s.started).map((s) => s.job);
}

/** @internal */
export async function sendFile(e: JobEngine, path: string, node: DispyNode | string): Promise<number> {
  const cn = e.sessions.nodeOf(node);
  if (!cn || e.closing) {
    e.log.warn({ path, node: node instanceof DispyNode ? node.ipAddr : node }, 'sendFile: not a node of this cluster');
    return -1;
  }
  try {
    const file = localFile(path, 'sendFile', e.opts.maxFileSize ?? 0);
    cn.node.tx += (await transferFile(cn.link, e.computeId, file, fileOpts(e))).sent;
    return 0;
  } catch (err) {
    e.log.warn({ path, node: cn.node.ipAddr, code: (err as DispyError).code, err: (err as Error).message }, 'sendFile failed');
    return -1;
  }
}
