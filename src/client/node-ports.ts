/**
 * One node per address. A node is known by its IP address (pages, `setNodeCpus`, the scheduler
 * all key on it), so two node specs naming one address, or one host name, with different ports
 * (two ssh tunnels on 127.0.0.1, say) would be one node and the second would be dropped. They
 * are refused instead, with the fix: each tunnel on a loopback address of its own.
 */
import { DispyError } from '../errors.js';
import type { NodeAllocate } from './node-allocate.js';
import { NodeLink } from './node-link.js';

/** Throws DISPY_ERR_INVALID_OPTION if two specs name one host with different ports (wildcards aside). */
export function checkOnePortPerHost(specs: readonly NodeAllocate[], what = 'nodes'): void {
  const ports = new Map<string, number>();
  for (const s of specs) {
    if (s.isWildcard) continue;
    const host = s.host.toLowerCase();
    const port = ports.get(host);
    if (port === undefined) ports.set(host, s.port);
    else if (port !== s.port) throw samePortError(s.host, port, s.port, what);
  }
}

function samePortError(host: string, a: number, b: number, what: string): DispyError {
  return new DispyError(
    'DISPY_ERR_INVALID_OPTION',
    `${what}: ${host} is given with port ${a} and port ${b}, but a node is known by its address, so one address is one node. ` +
      'Reach each node at an address of its own: for ssh tunnels, bind each to its own loopback address ' +
      '(ssh -L 127.0.0.5:9701:nodeA:9701 -L 127.0.0.6:9701:nodeB:9701) and list 127.0.0.5 and 127.0.0.6; ' +
      'for several daemons on one machine, start each with its own --host (127.0.0.2, 127.0.0.3, ...)',
  );
}

/** What `discoverSpecs` needs of a cluster. */
export interface DiscoverHooks {
  /** Sends a discover request for the cluster's wildcards (nothing on loopback). */
  discover(): Promise<unknown>;
  /** Resolves a host name to its addresses. */
  lookup(host: string): Promise<string[]>;
  /** The cluster's spec that decides for `ip`, if any. */
  specFor(ip: string): NodeAllocate | undefined;
  addNode(ip: string, port: number, spec: NodeAllocate): Promise<void>;
}

/**
 * dispy's `discover_nodes(nodes)`: looks for the given specs now. A wildcard sends a discover
 * request and matches the nodes this process is connected to; an address or host name is
 * contacted at the given port. A node found is set up if one of the cluster's own specs takes it.
 */
export async function discoverSpecs(specs: readonly NodeAllocate[], hooks: DiscoverHooks): Promise<void> {
  const tries: Promise<void>[] = [];
  for (const given of specs) {
    let targets: { host: string; port: number }[];
    if (given.isWildcard) {
      await hooks.discover();
      targets = await NodeLink.known(given.ipRex);
    } else if (given.isAddress) targets = [{ host: given.host, port: given.port }];
    else {
      const [ip] = await hooks.lookup(given.host).catch(() => [] as string[]);
      targets = ip === undefined ? [] : [{ host: ip, port: given.port }];
    }
    for (const t of targets) {
      const spec = hooks.specFor(t.host);
      if (spec) tries.push(hooks.addNode(t.host, t.port, spec));
    }
  }
  await Promise.all(tries);
}
