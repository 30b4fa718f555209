/**
 * The loopback test, written once. It asks one of two questions:
 * - `isLoopbackAddress`: is this address (a peer's, or one to bind) on loopback — 127.0.0.0/8,
 *   `::1`, or either IPv4-mapped or bracketed. Names are not addresses: `localhost` is not one.
 *   Used where a peer is trusted for being local.
 * - `isLoopbackHost`: does a host given in options keep a daemon or a server on this machine —
 *   `localhost` or a loopback address. Used for "no secret needed on loopback" and "no
 *   discovery on loopback".
 */
import { isIP } from 'node:net';

/** Whether `addr` (a peer or bind address) is on loopback: 127.0.0.0/8, ::1 or mapped. */
export function isLoopbackAddress(addr: string | undefined | null): boolean {
  if (!addr) return false;
  let a = addr.toLowerCase();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  if (a.startsWith('::ffff:')) a = a.slice(7);
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  return isIP(a) === 4 && a.startsWith('127.');
}

/** Whether binding or naming `host` keeps to this machine: `localhost` or a loopback address. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || isLoopbackAddress(host);
}
