/** Numbers every side of the wire agrees on. */

/** Bumped whenever a message shape changes incompatibly; checked in the first frame. */
export const PROTOCOL_VERSION = 1;

/** Default TCP port of `dispyts node`. */
export const NODE_PORT = 9701;
/** Default port of `dispyts scheduler` for clients. */
export const SCHEDULER_PORT = 9702;
/** Fixed UDP port nodes announce themselves to. */
export const DISCOVERY_PORT = 9700;
/** Default port of DispyHTTPServer. */
export const HTTP_PORT = 8181;

/** Largest frame a peer may announce before we refuse it (bytes). */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;
/** Bytes of the truncated HMAC-SHA256 tag carried by every authenticated frame. */
export const MAC_BYTES = 16;
/** Bytes of each side's random nonce in the handshake. */
export const NONCE_BYTES = 32;
/** Seconds a peer has to finish the handshake. */
export const HANDSHAKE_TIMEOUT = 10;
