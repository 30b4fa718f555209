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

/**
 * Largest authenticated frame a peer may announce before we refuse it (bytes): the default of
 * `--max-message-size` on nodes and the scheduler, and of a cluster's `maxArgsSize`.
 */
export const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;
/** Smallest `--max-message-size` a daemon accepts (bytes): room for set-up and file chunks. */
export const MIN_MAX_FRAME = 64 * 1024;
/**
 * Largest frame before authentication (bytes). A hello is about 100 bytes: a stranger who does
 * not know the secret can make a daemon hold no more than this per connection.
 */
export const PRE_AUTH_MAX_FRAME = 4 * 1024;
/** Connections a daemon lets be in their handshake at once (not yet authenticated). */
export const MAX_HANDSHAKES = 64;
/** Of those, how many may come from one peer address. */
export const MAX_HANDSHAKES_PER_PEER = 8;
/** Bytes of the truncated HMAC-SHA256 tag carried by every authenticated frame. */
export const MAC_BYTES = 16;
/** Bytes of each side's random nonce in the handshake. */
export const NONCE_BYTES = 32;
/** Seconds a peer has to finish the handshake. */
export const HANDSHAKE_TIMEOUT = 10;
