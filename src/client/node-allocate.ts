/**
 * NodeAllocate: which nodes a cluster uses and how many of their CPUs. A spec names a host, an
 * IP address or a wildcard (`*` matches one or more address characters; matching is anchored at
 * both ends, so `10.0.0.1` does not match `10.0.0.12`).
 */
import { isIP } from 'node:net';
import { invalidOption } from '../errors.js';
import { dependFiles } from './file-transfer.js';
import { checkOnePortPerHost } from './node-ports.js';
import { NODE_PORT } from '../protocol/constants.js';
import type { AvailInfo } from '../protocol/messages.js';

export interface NodeSpecObject {
  /**
   * Host name, IP address or wildcard (`*` matches one or more address characters).
   * @example host: '127.0.0.2'
   */
  host: string;
  /**
   * The node daemon's TCP port (its `--port`).
   * @default 9701
   * @example port: 9801
   */
  port?: number;
  /**
   * >0 caps the CPUs used, <0 leaves that many unused, 0 = all.
   * @default 0
   * @example cpus: -1
   */
  cpus?: number;
  /**
   * For a host name: `'first'` uses the first address it resolves to, once; `'all'` uses every
   * address it resolves to (a Kubernetes headless Service lists every ready pod), resolved again
   * on `discoverNodes()` and every `pingInterval`: new addresses become nodes, and nodes whose
   * address no longer appears are retired (their jobs run again elsewhere with `reentrant`, as
   * for a lost node). The cluster's `lookup` option resolves the name.
   * @default 'first'
   * @example { host: 'dispyts-nodes.dispyts.svc.cluster.local', resolve: 'all' }
   */
  resolve?: NodeResolve;
}

/** How a node spec's host name becomes addresses (see NodeSpecObject.resolve). */
export type NodeResolve = 'first' | 'all';

export class NodeAllocate {
  /** Host name, IP address or wildcard pattern. */
  host: string;
  port: number;
  cpus: number;
  /**
   * Per-node extra files (paths), sent before setup to the nodes this spec matches, into the
   * computation's directory. A subclass may change them per node in `allocate`.
   */
  depends: string[];
  /** Arguments to `setup` on the nodes this spec matches. */
  setupArgs: unknown[];
  /** The anchored pattern addresses are matched against. */
  readonly ipRex: RegExp;
  /** Whether a host name stands for its first address or all of them (NodeSpecObject.resolve). */
  readonly resolve: NodeResolve;
  /** The addresses the host name resolved to last (for a name; an address or wildcard matches by ipRex). */
  #addresses: ReadonlySet<string> = new Set();

  constructor(
    host: string,
    port: number = NODE_PORT,
    cpus = 0,
    options: { depends?: string[]; setupArgs?: unknown[]; resolve?: NodeResolve } = {},
  ) {
    if (typeof host !== 'string' || host.length === 0 || host.length > 255)
      throw invalidOption('host', 'a host name, IP address or wildcard', host);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidOption('port', 'an integer from 0 to 65535', port);
    if (!Number.isInteger(cpus)) throw invalidOption('cpus', 'an integer', cpus);
    if (options.resolve !== undefined && options.resolve !== 'first' && options.resolve !== 'all')
      throw invalidOption('resolve', "'first' or 'all'", options.resolve);
    if (options.resolve === 'all' && host.includes('*'))
      throw invalidOption('resolve', "a host name or address with resolve 'all' (a wildcard is discovered, not resolved)", host);
    this.resolve = options.resolve ?? 'first';
    this.host = host;
    this.port = port || NODE_PORT;
    this.cpus = cpus;
    if (options.depends !== undefined) {
      if (!Array.isArray(options.depends)) throw invalidOption('depends', 'an array of file paths', options.depends);
      for (const [i, d] of (options.depends as unknown[]).entries())
        if (typeof d !== 'string') throw invalidOption(`depends[${i}]`, 'a file path', d);
      // They must exist now (as in dispy); they are read again when sent.
      dependFiles(options.depends, 'NodeAllocate depends');
    }
    this.depends = options.depends ?? [];
    this.setupArgs = options.setupArgs ?? [];
    const escaped = host.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[0-9a-fA-F.:]+');
    this.ipRex = new RegExp(`^${escaped}$`);
  }

  /** Whether this spec is a pattern rather than one host. */
  get isWildcard(): boolean {
    return this.host.includes('*');
  }

  /** Whether the spec names an address (as opposed to a host name needing resolution). */
  get isAddress(): boolean {
    return isIP(this.host) !== 0;
  }

  /** Whether `ipAddr` is a node of this spec: it matches the pattern, or the host name resolved to it. */
  matches(ipAddr: string): boolean {
    return this.ipRex.test(ipAddr) || this.#addresses.has(ipAddr);
  }

  /** @internal The addresses the host name resolves to now (set by the cluster that resolved it). */
  _setAddresses(addresses: Iterable<string>): void {
    this.#addresses = new Set(addresses);
  }

  /**
   * CPUs the cluster may use on the node at `ipAddr` (offering `cpus`); 0 or less means
   * "do not use it". Override to decide per node.
   */
  allocate(cluster: unknown, ipAddr: string, name: string, cpus: number, availInfo: AvailInfo | null = null, platform = ''): number {
    void cluster;
    void name;
    void availInfo;
    void platform;
    if (!this.matches(ipAddr)) return 0;
    if (this.cpus > 0) return Math.min(this.cpus, cpus);
    if (this.cpus < 0) return Math.max(0, cpus + this.cpus);
    return cpus;
  }
}

export type NodeSpec = string | NodeSpecObject | NodeAllocate;

/** Normalizes the `nodes` option: literal addresses first, wildcards last (dispy's order). */
export function parseNodeSpecs(nodes: NodeSpec | NodeSpec[]): NodeAllocate[] {
  const list = Array.isArray(nodes) ? nodes : [nodes];
  const out = list.map((n, i) => {
    if (n instanceof NodeAllocate) return n;
    if (typeof n === 'string') return new NodeAllocate(n);
    if (n && typeof n === 'object' && typeof (n as NodeSpecObject).host === 'string') {
      const o = n as NodeSpecObject;
      return new NodeAllocate(o.host, o.port ?? NODE_PORT, o.cpus ?? 0, o.resolve === undefined ? {} : { resolve: o.resolve });
    }
    throw invalidOption(`nodes[${i}]`, 'a host, IP address, wildcard, {host, port, cpus, resolve} or NodeAllocate', n);
  });
  // One address (or name) with two ports would be one node: refused, naming the fix.
  checkOnePortPerHost(out);
  return out.sort((a, b) => Number(a.isWildcard) - Number(b.isWildcard));
}
