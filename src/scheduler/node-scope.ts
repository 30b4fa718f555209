/**
 * Which nodes a client's computation may use: the scheduler's own nodes (`--node`), narrowed to
 * those the client named. A client can never make the scheduler connect to an address (or a
 * port) the scheduler was not given.
 */
import { isIP } from 'node:net';
import { DispyError } from '../errors.js';
import { NODE_PORT } from '../protocol/constants.js';
import type { AvailInfo } from '../protocol/messages.js';
import { NodeAllocate } from '../client/node-allocate.js';

/** A node as a client names it (scheduler-messages.ts): host, IP, wildcard, or { host, port, cpus }. */
export type RequestedNode = string | { host: string; port?: number | undefined; cpus?: number | undefined };

/**
 * A client's wildcard inside one of the scheduler's wildcards: a node must match both patterns.
 * The client's `cpus` applies.
 */
class ScopedAllocate extends NodeAllocate {
  readonly #outer: RegExp;

  constructor(host: string, port: number, cpus: number, outer: RegExp) {
    super(host, port, cpus);
    this.#outer = outer;
  }

  override allocate(
    cluster: unknown,
    ipAddr: string,
    name: string,
    cpus: number,
    availInfo: AvailInfo | null = null,
    platform = '',
  ): number {
    if (!this.#outer.test(ipAddr)) return 0;
    return super.allocate(cluster, ipAddr, name, cpus, availInfo, platform);
  }
}

/**
 * Parses the scheduler's `--node` values: `HOST`, `IP`, `IP:PORT`, `[IPv6]:PORT` or a wildcard
 * (`127.0.0.*`, `*`; `*:PORT` for another node port).
 */
export function parseSchedulerNodes(values: readonly string[]): NodeAllocate[] {
  const out: NodeAllocate[] = [];
  for (const raw of values) {
    const text = raw.trim();
    let host = text;
    let port = NODE_PORT;
    const v6 = /^\[([0-9a-fA-F:.*]+)\](?::(\d{1,5}))?$/.exec(text);
    const v4 = /^([^:\s]+):(\d{1,5})$/.exec(text);
    if (v6) {
      host = v6[1]!;
      if (v6[2] !== undefined) port = Number(v6[2]);
    } else if (v4) {
      host = v4[1]!;
      port = Number(v4[2]);
    }
    if (host.length === 0 || port < 1 || port > 65535 || /\s/.test(host)) {
      throw new DispyError(
        'DISPY_ERR_INVALID_OPTION',
        `--node: expected a host, an IP address, a wildcard such as 127.0.0.* (each optionally with :PORT), got \`${raw}\``,
      );
    }
    out.push(new NodeAllocate(host, port));
  }
  // Literal addresses first, wildcards last (as JobCluster orders its nodes).
  return out.sort((a, b) => Number(a.isWildcard) - Number(b.isWildcard));
}

function describe(r: RequestedNode): string {
  return typeof r === 'string' ? r : r.host;
}

/**
 * The node specs of a computation: the scheduler's own when the client named none, else each
 * node the client named that is one of the scheduler's, at the scheduler's port for it, with
 * the client's `cpus`. Throws DISPY_ERR_NODE_UNKNOWN when nothing the client named is.
 */
export function scopeNodes(schedulerNodes: readonly NodeAllocate[], requested: readonly RequestedNode[]): NodeAllocate[] {
  if (requested.length === 0) return schedulerNodes.map((s) => new NodeAllocate(s.host, s.port, s.cpus));
  const out: NodeAllocate[] = [];
  for (const r of requested) {
    const host = typeof r === 'string' ? r : r.host;
    const cpus = typeof r === 'string' ? 0 : (r.cpus ?? 0);
    if (!Number.isInteger(cpus)) continue;
    if (!host.includes('*')) {
      // A pattern of the scheduler admits addresses, never names (a name would be looked up).
      const s = schedulerNodes.find((n) => n.host === host || (isIP(host) !== 0 && n.ipRex.test(host)));
      if (s) out.push(new NodeAllocate(host, s.port, cpus));
      continue;
    }
    let wanted: NodeAllocate;
    try {
      wanted = new NodeAllocate(host, NODE_PORT, cpus);
    } catch {
      continue;
    }
    for (const s of schedulerNodes) {
      if (!s.isWildcard) {
        if (wanted.ipRex.test(s.host)) out.push(new NodeAllocate(s.host, s.port, cpus));
      } else out.push(new ScopedAllocate(host, s.port, cpus, s.ipRex));
    }
  }
  if (out.length === 0) {
    const names = requested.slice(0, 5).map(describe).join(', ');
    const ours = schedulerNodes.map((s) => s.host).join(', ');
    throw new DispyError(
      'DISPY_ERR_NODE_UNKNOWN',
      `none of the nodes asked for (${names}${requested.length > 5 ? ', ...' : ''}) is a node of this scheduler (${ours})`,
    );
  }
  return out.sort((a, b) => Number(a.isWildcard) - Number(b.isWildcard));
}
