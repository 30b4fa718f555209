/**
 * Cluster names in the scheduler, unique even for two clients on one address:
 * `"<name> @ <client ip>"`, then `"<name> @ <client ip> (2)"`, ... while the first is taken.
 * A name stays taken while its computation runs and while its closed cluster is still shown.
 */
export class ClusterNames {
  readonly #taken = new Set<string>();

  /** A new unique name for computation `name` of a client at `clientIp`. */
  take(name: string, clientIp: string): string {
    const clean =
      name
        // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
        .replace(/[\u0000-\u001f\u007f]/g, ' ')
        .trim()
        .slice(0, 200) || 'compute';
    const base = `${clean} @ ${clientIp}`;
    let unique = base;
    for (let i = 2; this.#taken.has(unique); i++) unique = `${base} (${i})`;
    this.#taken.add(unique);
    return unique;
  }

  release(name: string): void {
    this.#taken.delete(name);
  }

  has(name: string): boolean {
    return this.#taken.has(name);
  }
}
