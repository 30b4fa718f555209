/**
 * The handshake of an authenticated channel (channel.ts, authenticated-channel.ts), in plain
 * msgpack frames:
 *   client -> server  hello {v, role: client, nonce Nc, clientId}
 *   server -> client  hello {v, role: node|scheduler, nonce Ns, proof = HMAC(secret, "server|role|" Nc Ns)}
 *   client -> server  auth  {proof = HMAC(secret, "client|client|" Ns Nc)}
 *   server -> client  auth-ok
 * Role labels inside the MACs stop a proof from being reflected back. Both nonces derive the
 * session's per-direction keys (`sessionKeys`); `mac` also tags every authenticated frame.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { DispyError } from '../errors.js';
import { NONCE_BYTES, PROTOCOL_VERSION } from './constants.js';
import { handshakeSchema, type HandshakeMessage } from './messages.js';
import { unpackMessage } from './wire-codec.js';

export type Hello = Extract<HandshakeMessage, { t: 'hello' }>;

/** What the handshake steps use of their channel. */
export interface HandshakeIO {
  /** `address:port` of the peer, for messages. */
  readonly peer: string;
  writePlain(msg: HandshakeMessage): void;
  /** The next handshake message from the peer (an `error` one is thrown). */
  next(): Promise<HandshakeMessage>;
  /** Both sides proved the secret: called at once after the last handshake frame. */
  established(hello: Hello, clientNonce: Uint8Array, serverNonce: Uint8Array): void;
}

export function mac(key: Buffer, ...parts: (Buffer | Uint8Array | string)[]): Buffer {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
}

export function equalTags(a: Uint8Array | undefined, b: Buffer): boolean {
  return !!a && a.length === b.length && timingSafeEqual(a, b);
}

export function summarizeIssues(issues: readonly { path: PropertyKey[]; message: string }[]): string {
  return issues
    .slice(0, 3)
    .map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}

/** A handshake frame as a message; throws for an undecodable or invalid one, and for the peer's `error`. */
export function decodeHandshake(frame: Buffer, peer: string): HandshakeMessage {
  let decoded: unknown;
  try {
    decoded = unpackMessage(frame);
  } catch {
    throw new DispyError('DISPY_ERR_BAD_FRAME', `${peer}: undecodable handshake frame`);
  }
  const parsed = handshakeSchema.safeParse(decoded);
  if (!parsed.success)
    throw new DispyError('DISPY_ERR_BAD_FRAME', `${peer}: invalid handshake message: ${summarizeIssues(parsed.error.issues)}`);
  if (parsed.data.t === 'error') {
    const { code, message } = parsed.data.error;
    throw new DispyError(
      code === 'DISPY_ERR_VERSION' || code === 'DISPY_ERR_AUTH' || code === 'DISPY_ERR_TLS' ? code : 'DISPY_ERR_AUTH',
      message,
    );
  }
  return parsed.data;
}

/** The session's keys, one per direction, from the secret and both nonces. */
export function sessionKeys(secret: Buffer, clientNonce: Uint8Array, serverNonce: Uint8Array): { c2s: Buffer; s2c: Buffer } {
  const session = mac(secret, 'dispyts session|', clientNonce, serverNonce);
  return { c2s: mac(session, 'client->server'), s2c: mac(session, 'server->client') };
}

/** The client's steps: hello, check the server's proof, prove the secret, wait for auth-ok. */
export async function clientHandshake(io: HandshakeIO, secret: Buffer, clientId: string): Promise<void> {
  const nonce = randomBytes(NONCE_BYTES);
  io.writePlain({ t: 'hello', v: PROTOCOL_VERSION, role: 'client', nonce, clientId });
  const hello = await io.next();
  if (hello.t !== 'hello' || hello.role === 'client') throw new DispyError('DISPY_ERR_AUTH', `${io.peer}: expected a server hello`);
  if (hello.v !== PROTOCOL_VERSION)
    throw new DispyError('DISPY_ERR_VERSION', `${io.peer} speaks protocol ${hello.v}, we speak ${PROTOCOL_VERSION}`);
  const expected = mac(secret, `server|${hello.role}|`, nonce, hello.nonce);
  if (!equalTags(hello.proof, expected)) {
    // Tell the server too, so its log says why the connection ended.
    io.writePlain({ t: 'error', error: { code: 'DISPY_ERR_AUTH', message: 'client refused the server: wrong secret' } });
    throw new DispyError('DISPY_ERR_AUTH', `${io.peer} failed to prove it knows the secret (wrong secret on one side?)`);
  }
  io.writePlain({ t: 'auth', proof: mac(secret, 'client|client|', hello.nonce, nonce) });
  const ok = await io.next();
  if (ok.t !== 'auth-ok') throw new DispyError('DISPY_ERR_AUTH', `${io.peer}: unexpected ${ok.t} in the handshake`);
  io.established(hello, nonce, hello.nonce);
}

/** The server's steps as `role`: check the client's hello, prove the secret, check its proof. */
export async function serverHandshake(io: HandshakeIO, secret: Buffer, role: 'node' | 'scheduler'): Promise<void> {
  const hello = await io.next();
  if (hello.t !== 'hello' || hello.role !== 'client') throw new DispyError('DISPY_ERR_BAD_FRAME', `${io.peer}: expected a client hello`);
  if (hello.v !== PROTOCOL_VERSION) {
    const e = new DispyError('DISPY_ERR_VERSION', `client speaks protocol ${hello.v}, this ${role} speaks ${PROTOCOL_VERSION}`);
    io.writePlain({ t: 'error', error: e.toJSON() });
    throw e;
  }
  if (hello.nonce.length !== NONCE_BYTES) throw new DispyError('DISPY_ERR_BAD_FRAME', `${io.peer}: bad nonce`);
  const nonce = randomBytes(NONCE_BYTES);
  io.writePlain({ t: 'hello', v: PROTOCOL_VERSION, role, nonce, proof: mac(secret, `server|${role}|`, hello.nonce, nonce) });
  const auth = await io.next();
  if (auth.t !== 'auth') throw new DispyError('DISPY_ERR_BAD_FRAME', `${io.peer}: expected auth`);
  if (!equalTags(auth.proof, mac(secret, 'client|client|', nonce, hello.nonce))) {
    const e = new DispyError('DISPY_ERR_AUTH', `client ${io.peer} failed authentication (wrong secret)`);
    io.writePlain({ t: 'error', error: { code: e.code, message: `${role} refused the client: wrong secret` } });
    throw e;
  }
  io.writePlain({ t: 'auth-ok' });
  io.established(hello, hello.nonce, nonce);
}
