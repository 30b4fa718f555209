/**
 * Node specs that follow a name: `{ host, resolve: 'all' }` stands for every address the host
 * name resolves to (a Kubernetes headless Service name resolves to every ready pod). The
 * cluster resolves such specs when it starts, on `discoverNodes()` and every `pingInterval`;
 * this module keeps what each spec resolved to, and tells the cluster which addresses are nodes
 * now and which left since the last answer (the cluster retires those).
 *
 * A name that does not exist (ENOTFOUND, ENODATA: a headless Service with no ready pod) or
 * resolves to nothing stands for no node. Any other failure (a DNS server that does not
 * answer) leaves the nodes as they were: a passing resolver outage must not retire them.
 */
import dns from 'node:dns/promises';
import type { Logger } from 'pino';
import { DispyError } from '../errors.js';
import type { NodeAllocate } from './node-allocate.js';

/**
 * Resolves a host name to every address it has, like `dns.promises.lookup(name, { all: true })`
 * (the default), which may be passed as is.
 */
export type NodeLookup = (hostname: string, options: { all: true }) => Promise<readonly { address: string; family: number }[]>;

/** The error codes meaning "this name has no address" (the answer, not a failure to get one). */
const NO_SUCH_NAME = new Set(['ENOTFOUND', 'ENODATA', 'ENONAME']);

export interface NodeResolverOptions {
  /** @default dns.promises.lookup */
  lookup?: NodeLookup;
  /** Seconds between resolutions of the following specs (none when absent). */
  pingInterval?: number;
  log: Logger;
  /** The cluster's current specs (allocateNode adds to them). */
  specs: () => readonly NodeAllocate[];
  /**
   * `spec` resolved to `addresses` (possibly none): the cluster adds those it does not have and
   * retires its nodes of that spec that are not among them.
   */
  onResolved: (spec: NodeAllocate, addresses: ReadonlySet<string>) => void;
  /** A name could not be resolved (reported once per kind of failure until it resolves again). */
  onError: (err: DispyError) => void;
}

/** Resolves host names of node specs: once for `resolve: 'first'`, again and again for `'all'`. */
export class NodeResolver {
  readonly #opts: NodeResolverOptions;
  /** What each following spec resolved to last. */
  readonly #current = new Map<NodeAllocate, Set<string>>();
  /** Per spec, the resolution under way (calls meanwhile share it). */
  readonly #inflight = new Map<NodeAllocate, Promise<void>>();
  /** Per spec, the code of the last failure reported. */
  readonly #lastError = new Map<NodeAllocate, string>();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(opts: NodeResolverOptions) {
    if (opts.lookup !== undefined && typeof opts.lookup !== 'function')
      throw new DispyError('DISPY_ERR_INVALID_OPTION', 'option `lookup`: expected a function like dns.promises.lookup');
    this.#opts = opts;
  }

  /**
   * The addresses `host` resolves to, in the resolver's order (a literal address is itself).
   * Rejects with DISPY_ERR_CONNECTION when it cannot be resolved.
   */
  async lookup(host: string): Promise<string[]> {
    const lookup = this.#opts.lookup ?? ((name: string, o: { all: true }) => dns.lookup(name, o));
    let answer: readonly { address: string; family: number }[];
    try {
      answer = await lookup(host, { all: true });
    } catch (err) {
      throw new DispyError('DISPY_ERR_CONNECTION', `cannot resolve node ${host}: ${(err as Error).message}`, { cause: err });
    }
    if (!Array.isArray(answer)) throw new DispyError('DISPY_ERR_CONNECTION', `cannot resolve node ${host}: the lookup gave no list`);
    return [...new Set(answer.map((a) => a?.address).filter((a): a is string => typeof a === 'string' && a.length > 0))];
  }

  /** The addresses `spec` (a following spec) resolved to last. */
  addresses(spec: NodeAllocate): string[] {
    return [...(this.#current.get(spec) ?? [])];
  }

  /** Whether `ip` is among the addresses `spec` (a following spec) resolved to last. */
  has(spec: NodeAllocate, ip: string): boolean {
    return this.#current.get(spec)?.has(ip) ?? false;
  }

  /**
   * Resolves every following spec now (and starts the pingInterval timer the first time).
   * Resolves once each has been looked up and the cluster told what changed.
   */
  async refresh(): Promise<void> {
    const follow = this.#opts.specs().filter((s) => s.resolve === 'all');
    if (this.#closed || follow.length === 0) return;
    const every = this.#opts.pingInterval;
    if (every && !this.#timer) {
      this.#timer = setInterval(() => void this.refresh(), every * 1000);
      this.#timer.unref();
    }
    await Promise.all(follow.map((spec) => this.#refreshSpec(spec)));
  }

  #refreshSpec(spec: NodeAllocate): Promise<void> {
    let p = this.#inflight.get(spec);
    if (!p) {
      p = this.#resolveSpec(spec).finally(() => this.#inflight.delete(spec));
      this.#inflight.set(spec, p);
    }
    return p;
  }

  async #resolveSpec(spec: NodeAllocate): Promise<void> {
    let addresses: string[];
    try {
      addresses = await this.lookup(spec.host);
    } catch (err) {
      const e = err as DispyError;
      const code = ((e.cause as NodeJS.ErrnoException | undefined)?.code ?? e.code) || 'unknown';
      if (!NO_SUCH_NAME.has(code)) {
        // No answer: keep the nodes as they are.
        if (this.#lastError.get(spec) !== code) {
          this.#lastError.set(spec, code);
          this.#opts.log.warn({ host: spec.host, code }, `cannot resolve ${spec.host}: its nodes stay as they are`);
          this.#opts.onError(e);
        }
        return;
      }
      // The name does not exist (a Service without a ready pod): no node.
      if (this.#lastError.get(spec) !== code) {
        this.#lastError.set(spec, code);
        this.#opts.log.warn({ host: spec.host, code }, `${spec.host} resolves to no address`);
        if (!this.#current.get(spec)?.size) this.#opts.onError(e);
      }
      addresses = [];
    }
    if (this.#closed) return;
    if (addresses.length > 0) this.#lastError.delete(spec);
    const before = this.#current.get(spec) ?? new Set<string>();
    const now = new Set(addresses);
    this.#current.set(spec, now);
    spec._setAddresses(now);
    const added = addresses.filter((a) => !before.has(a));
    const gone = [...before].filter((a) => !now.has(a));
    if (added.length || gone.length) this.#opts.log.info({ host: spec.host, added, gone, nodes: now.size }, 'node name resolved anew');
    this.#opts.onResolved(spec, now);
  }

  /** Stops the timer; nothing is resolved afterwards. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
