/** Parsing helpers shared by the subcommands: sizes, numbers and clear errors. */
import { DispyError } from '../errors.js';

/** `10k`, `5m`, `1g`, `2t` or plain bytes. */
export function parseSize(name: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$/i.exec(text.trim());
  if (!m) throw new DispyError('DISPY_ERR_INVALID_OPTION', `--${name}: expected a size such as 1048576, 512k, 10m or 2g, got \`${text}\``);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

export function parseIntOption(name: string, text: string | undefined, { min = -Infinity, max = Infinity } = {}): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = min > -Infinity ? (max < Infinity ? ` from ${min} to ${max}` : ` >= ${min}`) : '';
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--${name}: expected an integer${range}, got \`${text}\``);
  }
  return n;
}

export function parseSeconds(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--${name}: expected a positive number of seconds, got \`${text}\``);
  return n;
}

/**
 * `--httpd-trusted-proxy ADDR` with `--httpd-public-url URL`: the reverse proxy in front of a
 * web server and the URL browsers use (both or neither; checked in detail by the server).
 */
export function parseTrustedProxy(
  address: string | undefined,
  publicUrl: string | undefined,
): { address: string; publicUrl: string } | undefined {
  if (address === undefined && publicUrl === undefined) return undefined;
  if (address === undefined || publicUrl === undefined)
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      "--httpd-trusted-proxy and --httpd-public-url go together: the proxy's address and the URL browsers use",
    );
  return { address, publicUrl };
}
