/**
 * @internal Where a JobCluster's nodes come from: its node specs (addresses, host names,
 * wildcards, NodeAllocates; literal ones first), discovery for wildcards, and names followed
 * with `resolve: 'all'` (a node per address they resolve to; addresses they no longer list
 * retired). Each node found is handed to node-sessions.ts to start its session.
 */
import { isIP } from 'node:net';
import { DispyError } from '../errors.js';
import type { JobEngine } from './job-engine.js';
import { type NodeAllocate, parseNodeSpecs } from './node-allocate.js';
import { ClusterDiscovery } from './node-discovery.js';
import { NodeLink } from './node-link.js';
import { NodeResolver } from './node-resolver.js';

/** @internal */
export class NodeFinder {
  readonly #e: JobEngine;
  readonly specs: NodeAllocate[];
  readonly discovery: ClusterDiscovery;
  readonly resolver: NodeResolver;
  /** Nodes being added because a followed name resolved to them (allocateNode waits for these). */
  readonly following = new Map<string, Promise<void>>();
  /** The address each node named by a host name resolved to. */
  readonly resolved = new Map<string, string>();

  constructor(e: JobEngine) {
    this.#e = e;
    const options = e.opts;
    this.specs = parseNodeSpecs(options.nodes ?? [options.host ?? '127.0.0.1']);
    this.discovery = new ClusterDiscovery({
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 0,
      secret: e.creds.secret,
      mode: options.discovery,
      pingInterval: options.pingInterval,
      log: e.log,
      specs: () => this.specs,
      onNode: (ip, port, spec) => void e.sessions.add(ip, port, spec),
    });
    this.resolver = new NodeResolver({
      lookup: options.lookup,
      pingInterval: options.pingInterval,
      log: e.log,
      specs: () => this.specs,
      onResolved: (spec, addresses) => this.#followed(spec, addresses),
      onError: (err) => e.emitError(err),
    });
  }

  /** Says when wildcards cannot be discovered, then looks for the nodes. */
  start(): void {
    const options = this.#e.opts;
    if (!this.discovery.enabled) {
      const wild = this.specs.filter((s) => s.isWildcard).map((s) => s.host);
      if (wild.length)
        this.#e.log.warn(
          { nodes: wild, host: options.host ?? '127.0.0.1', discovery: options.discovery ?? 'broadcast' },
          `nodes ${wild.join(', ')}: nothing will be discovered (${options.discovery === 'off' ? "discovery is 'off'" : `the cluster's host ${options.host ?? '127.0.0.1'} is a loopback address`}); a wildcard only matches nodes this program is already connected to`,
        );
    }
    void this.initNodes();
  }

  async initNodes(): Promise<void> {
    for (const spec of this.specs) if (spec.resolve !== 'all') void this.#resolveSpec(spec);
    await Promise.all([this.resolver.refresh(), this.discovery.discover()]);
  }

  /** The cluster closes: no more discovery or name following. */
  close(): void {
    this.discovery.close();
    this.resolver.close();
  }

  /**
   * A followed name (`resolve: 'all'`) resolved to `addresses`: each is a node (tried again if
   * it failed before), and this spec's nodes at other addresses are retired (closed).
   */
  #followed(spec: NodeAllocate, addresses: ReadonlySet<string>): void {
    const e = this.#e;
    if (e.closing) return;
    const nodes = e.sessions.nodes;
    for (const cn of [...nodes.values()]) {
      const ip = cn.node.ipAddr;
      if (cn.spec !== spec || addresses.has(ip) || nodes.get(ip) !== cn) continue;
      // Told to the node first (when it still answers): it stops what it runs for us.
      const mine = e.ledger.attemptsOn(cn).map(([uid]) => uid);
      if (!cn.link.closed) cn.link.request({ t: 'close', computeId: e.computeId, terminate: true }).catch(() => undefined);
      for (const uid of mine) cn.link.forget(uid);
      cn.drop(e, 'closed', new DispyError('DISPY_ERR_CONNECTION', `${ip} is no longer an address of ${spec.host}: node retired`));
    }
    for (const ip of addresses) {
      if (this.following.has(ip)) continue;
      const p = e.sessions.add(ip, spec.port, spec).finally(() => this.following.delete(ip));
      this.following.set(ip, p);
    }
  }

  async #resolveSpec(spec: NodeAllocate): Promise<void> {
    const sessions = this.#e.sessions;
    if (spec.isWildcard) {
      for (const { host, port } of await NodeLink.known(spec.ipRex)) void sessions.add(host, port, spec);
      return;
    }
    let ip = spec.host;
    if (!isIP(ip)) {
      try {
        ip = await this.lookupFirst(spec);
        this.resolved.set(spec.host, ip);
      } catch (err) {
        sessions.problems.set(spec.host, `cannot resolve the name: ${(err as Error).message}`);
        this.#e.emitError(err as DispyError);
        return;
      }
    }
    await sessions.add(ip, spec.port, spec);
  }

  /** The first address a host name spec resolves to; the spec then matches it. */
  async lookupFirst(spec: NodeAllocate): Promise<string> {
    const [ip] = await this.resolver.lookup(spec.host);
    if (ip === undefined) throw new DispyError('DISPY_ERR_CONNECTION', `cannot resolve node ${spec.host}: it has no address`);
    spec._setAddresses([ip]);
    return ip;
  }

  /** The spec that decides for `ip`: the first one whose pattern matches (or whose name resolved to it). */
  specFor(ip: string): NodeAllocate | undefined {
    return this.specs.find((s) => s.matches(ip) || s.host === ip);
  }
}
