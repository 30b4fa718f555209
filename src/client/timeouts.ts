/**
 * The client's slow timeouts: how long a request to a node may take, how long a node may stay
 * silent without `pulseInterval`, and how long a broken connection is waited for. Each has a
 * TEST-ONLY environment variable that shortens it, so that tests need not wait for the real
 * values; programs must not set them.
 */

/** Seconds a request to a node may take before it fails. */
export const REQUEST_TIMEOUT = 30;

/**
 * Seconds the jobs of a node whose connection broke wait for a reconnection when the cluster
 * has no pulseInterval (with one, they wait until 5 × pulseInterval after the node was last
 * heard). Nodes keep a vanished client's jobs as long (see the client-gone rule).
 */
export const RECONNECT_WINDOW = 10;

/**
 * Seconds between the heartbeats a cluster without pulseInterval asks of its nodes; a node
 * silent for 5 of them (50 s) is declared dead.
 */
export const DEFAULT_PULSE = 10;

function fromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** REQUEST_TIMEOUT, or `DISPYTS_TEST_REQUEST_TIMEOUT` (seconds; TEST-ONLY). */
export function requestTimeout(): number {
  return fromEnv('DISPYTS_TEST_REQUEST_TIMEOUT', REQUEST_TIMEOUT);
}

/** RECONNECT_WINDOW, or `DISPYTS_TEST_RECONNECT_WINDOW` (seconds; TEST-ONLY). */
export function reconnectWindow(): number {
  return fromEnv('DISPYTS_TEST_RECONNECT_WINDOW', RECONNECT_WINDOW);
}

/**
 * DEFAULT_PULSE, or a fifth of `DISPYTS_TEST_DEFAULT_SILENCE` (seconds a node may stay silent
 * when the cluster has no pulseInterval; TEST-ONLY).
 */
export function defaultPulse(): number {
  return fromEnv('DISPYTS_TEST_DEFAULT_SILENCE', 5 * DEFAULT_PULSE) / 5;
}
