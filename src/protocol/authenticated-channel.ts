/**
 * One authenticated connection (`Channel`). After the handshake (channel-handshake.ts) every
 * frame is `tag(16) | msgpack body` where tag is HMAC(direction key, seq || body) with a
 * per-direction sequence number, so frames cannot be forged, replayed, reordered or dropped
 * unnoticed. A frame's body is one or more msgpack values, each one message.
 *
 * Sizes: before authentication a frame may be `preAuthMaxFrame` bytes (4 KiB) and is parsed only
 * when the handshake asks for it, so a peer without the secret costs a few KiB at most. After
 * it, frames up to `maxFrame` are accepted, and none larger than `maxSend` (what the peer
 * accepts) is sent: `send` refuses a message that cannot fit. Connections are opened and
 * accepted through channel.ts.
 */
import { EventEmitter } from 'node:events';
import { timingSafeEqual } from 'node:crypto';
import type net from 'node:net';
import { TLSSocket } from 'node:tls';
import type { ZodType } from 'zod';
import { DispyError, type DispyErrorCode, asDispyError } from '../errors.js';
import { DEFAULT_MAX_FRAME, MAC_BYTES, PRE_AUTH_MAX_FRAME } from './constants.js';
import { FrameDecoder, encodeFrame } from './frame.js';
import type { HandshakeMessage } from './messages.js';
import { packMessage, unpackMessages } from './wire-codec.js';
import { isTlsError, tlsError } from './tls.js';
import {
  type HandshakeIO,
  clientHandshake,
  decodeHandshake,
  mac,
  serverHandshake,
  sessionKeys,
  summarizeIssues,
} from './channel-handshake.js';

/** A queued batch is flushed early once it holds this many bytes or messages. */
const FLUSH_BYTES = 256 * 1024;
const FLUSH_COUNT = 512;
/** Bytes a server holds unparsed before authentication beyond one frame: one socket read. */
const PRE_AUTH_SLACK = 64 * 1024;

export type Role = 'client' | 'node' | 'scheduler';

export interface ChannelOptions<In> {
  /** Shared secret both sides prove knowledge of. */
  secret: Buffer;
  /** Schema every authenticated incoming message must match. */
  schema: ZodType<In>;
  /**
   * Largest frame accepted once authenticated (bytes), and the largest sent unless `maxSend`
   * says otherwise.
   * @default 64 MiB
   */
  maxFrame?: number;
  /**
   * Largest frame sent (what the peer accepts).
   * @default maxFrame
   */
  maxSend?: number;
  /**
   * Largest frame accepted before authentication (bytes).
   * @default 4 KiB
   */
  preAuthMaxFrame?: number;
  /** Seconds allowed for the handshake. @default 10 */
  handshakeTimeout?: number;
}

type ChannelEvents<In> = {
  message: [In, number];
  close: [DispyError | null];
  /** The socket took everything written so far (see `congested`). */
  drain: [];
};

/**
 * One authenticated connection. Emits `message` for each valid incoming message and `close`
 * exactly once, with the reason (null for an orderly close by either side).
 */
export class Channel<In, Out = unknown> extends EventEmitter<ChannelEvents<In>> {
  readonly socket: net.Socket;
  /** `address:port` of the peer, for logs. */
  readonly peer: string;
  /** The peer's hello (its role, and the client id for clients). */
  peerHello: Extract<HandshakeMessage, { t: 'hello' }> | null = null;
  /** Bytes sent and received on this connection. */
  tx = 0;
  rx = 0;
  /** Largest frame sent: a message that cannot fit in one is refused by `send`. */
  maxSend: number;

  #schema: ZodType<In>;
  #decoder: FrameDecoder;
  #sendKey: Buffer | null = null;
  #recvKey: Buffer | null = null;
  #sendSeq = 0n;
  #recvSeq = 0n;
  #seqBuf = Buffer.alloc(8);
  #closed = false;
  #outbox: Buffer[] = [];
  #outboxBytes = 0;
  #flushScheduled = false;
  #waiter: { resolve: (f: Buffer) => void; reject: (e: DispyError) => void } | null = null;
  #handshakeError: DispyError | null = null;
  /** Largest frame accepted once authenticated. */
  #maxFrame: number;
  /** Set while frames that came with the last handshake frame wait for the caller's listeners. */
  #holding = false;
  /** The accepting side: it bounds what a peer may send before authentication. */
  #server = false;

  constructor(socket: net.Socket, opts: ChannelOptions<In>) {
    super();
    this.socket = socket;
    this.peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.#schema = opts.schema;
    this.#maxFrame = opts.maxFrame ?? DEFAULT_MAX_FRAME;
    this.maxSend = opts.maxSend ?? this.#maxFrame;
    this.#decoder = new FrameDecoder(opts.preAuthMaxFrame ?? PRE_AUTH_MAX_FRAME);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.emit('drain'));
    // A TLS alert can arrive after `secureConnect` (TLS 1.3 refuses a client certificate then).
    socket.on('error', (err) =>
      this.close(
        isTlsError(err) ? tlsError(err, this.peer) : new DispyError('DISPY_ERR_CONNECTION', `${this.peer}: ${err.message}`, { cause: err }),
      ),
    );
    socket.on('close', () =>
      this.close(this.#sendKey ? null : new DispyError('DISPY_ERR_CONNECTION', `${this.peer} closed the connection during the handshake`)),
    );
  }

  get closed(): boolean {
    return this.#closed;
  }

  get authenticated(): boolean {
    return this.#sendKey !== null;
  }

  /** Largest frame accepted once authenticated (a client raises it to what its node announced). */
  get maxFrame(): number {
    return this.#maxFrame;
  }

  set maxFrame(n: number) {
    this.#maxFrame = n;
    if (this.#recvKey) this.#decoder.maxFrame = n;
  }

  /**
   * Whether the peer reads slower than we write: the socket holds more than its high-water
   * mark. A `drain` event follows once it took everything. Senders of messages that a later one
   * replaces (provisional results) hold them meanwhile.
   */
  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  /**
   * Queues one message; returns its encoded size. Messages queued in one event-loop turn leave
   * together as one authenticated frame (a sequence of msgpack values), so a burst of jobs or
   * replies costs one MAC and one write. Throws DISPY_ERR_MESSAGE_TOO_LARGE (nothing is sent)
   * for a message that cannot fit in a frame of `maxSend` bytes.
   */
  send(msg: Out): number {
    if (this.#closed) return 0;
    if (!this.#sendKey) throw new DispyError('DISPY_ERR_INTERNAL', 'channel not authenticated');
    // Copy: the packer reuses its buffer.
    const body = Buffer.from(packMessage(msg));
    if (body.length + MAC_BYTES > this.maxSend) {
      throw new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `a message of ${body.length + MAC_BYTES} bytes exceeds the ${this.maxSend} bytes ${this.peer} accepts`,
      );
    }
    // A batch never grows past what the peer accepts.
    if (this.#outboxBytes + body.length + MAC_BYTES > this.maxSend) this.#flush();
    this.#outbox.push(body);
    this.#outboxBytes += body.length;
    if (this.#outboxBytes >= FLUSH_BYTES || this.#outbox.length >= FLUSH_COUNT) this.#flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // After this turn's I/O callbacks: replies to everything that arrived together leave together.
      setImmediate(() => {
        this.#flushScheduled = false;
        this.#flush();
      });
    }
    return body.length + 1;
  }

  #flush(): void {
    if (this.#closed || this.#outbox.length === 0) return;
    const parts = this.#outbox;
    this.#outbox = [];
    this.#outboxBytes = 0;
    const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.#seqBuf.writeBigUInt64BE(this.#sendSeq++);
    const tag = mac(this.#sendKey!, this.#seqBuf, body).subarray(0, MAC_BYTES);
    this.#write(encodeFrame(tag, body));
  }

  /** Closes the connection; `reason` null means an orderly close. Idempotent. */
  close(reason: DispyError | null = null): void {
    if (this.#closed) return;
    // An orderly close still delivers what was queued.
    if (!reason) this.#flush();
    this.#closed = true;
    if (this.#waiter) {
      this.#waiter.reject(reason ?? new DispyError('DISPY_ERR_CONNECTION', `${this.peer} closed`));
      this.#waiter = null;
    }
    if (reason && !this.#sendKey) this.#handshakeError = reason;
    this.socket.end();
    this.socket.destroySoon?.();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.emit('close', reason);
  }

  /** Closes after the currently queued writes are flushed. */
  end(): void {
    this.close(null);
  }

  #write(frame: Buffer): void {
    this.tx += frame.length;
    this.socket.write(frame);
  }

  #writePlain(msg: HandshakeMessage): void {
    this.#write(encodeFrame(packMessage(msg)));
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    if (this.rx === 0 && chunk[0] === 0x16 && chunk[1] === 0x03 && !(this.socket instanceof TLSSocket)) {
      // A TLS ClientHello record (as a frame length it would be ~369 MB): say so, not "frame too large".
      this.close(
        new DispyError(
          'DISPY_ERR_TLS',
          `${this.peer} started a TLS handshake, but this side serves plain TCP (start the node with --cert-file, or give the client no caFile/certFile)`,
        ),
      );
      return;
    }
    this.rx += chunk.length;
    this.#decoder.append(chunk);
    this.#pump();
  }

  /**
   * Parses what arrived. Before authentication only the frame the handshake waits for is taken
   * (the rest waits, unparsed and bounded); after it, every complete frame is delivered.
   */
  #pump(): void {
    if (this.#closed || this.#holding) return;
    try {
      if (!this.#recvKey) {
        if (this.#server && this.#decoder.buffered > this.#decoder.maxFrame + 4 + PRE_AUTH_SLACK) {
          throw new DispyError('DISPY_ERR_FRAME_TOO_LARGE', `${this.peer} sent ${this.#decoder.buffered} bytes before authenticating`);
        }
        if (!this.#waiter) return;
        const f = this.#nextPreAuth();
        if (f) {
          const w = this.#waiter;
          this.#waiter = null;
          w.resolve(f);
        }
        return;
      }
      for (let f = this.#decoder.next(); f; f = this.#decoder.next()) {
        this.#onAuthenticatedFrame(f);
        if (this.#closed) return;
      }
    } catch (err) {
      this.close(asDispyError(err, 'DISPY_ERR_BAD_FRAME'));
    }
  }

  /** The next handshake frame, if complete; throws for one over the pre-authentication limit. */
  #nextPreAuth(): Buffer | null {
    try {
      return this.#decoder.next();
    } catch (err) {
      const e = asDispyError(err, 'DISPY_ERR_BAD_FRAME');
      if (e.code !== 'DISPY_ERR_FRAME_TOO_LARGE') throw e;
      throw new DispyError('DISPY_ERR_FRAME_TOO_LARGE', `${this.peer}: before authentication, ${e.message}`);
    }
  }

  #onAuthenticatedFrame(frame: Buffer): void {
    if (frame.length <= MAC_BYTES) {
      this.close(new DispyError('DISPY_ERR_BAD_FRAME', `${this.peer}: frame too short for its tag`));
      return;
    }
    const tag = frame.subarray(0, MAC_BYTES);
    const body = frame.subarray(MAC_BYTES);
    this.#seqBuf.writeBigUInt64BE(this.#recvSeq);
    const expected = mac(this.#recvKey!, this.#seqBuf, body).subarray(0, MAC_BYTES);
    if (!timingSafeEqual(tag, expected)) {
      this.close(new DispyError('DISPY_ERR_BAD_MAC', `${this.peer}: frame ${this.#recvSeq} failed its MAC check`));
      return;
    }
    this.#recvSeq++;
    const messages: { value: unknown; size: number }[] = [];
    try {
      unpackMessages(body, (value, start, end) => {
        messages.push({ value, size: end - start });
      });
    } catch (err) {
      this.close(new DispyError('DISPY_ERR_BAD_FRAME', `${this.peer}: undecodable message: ${(err as Error).message}`));
      return;
    }
    for (const { value, size } of messages) {
      const parsed = this.#schema.safeParse(value);
      if (!parsed.success) {
        this.close(new DispyError('DISPY_ERR_BAD_FRAME', `${this.peer}: invalid message: ${summarizeIssues(parsed.error.issues)}`));
        return;
      }
      if (this.#closed) return;
      this.emit('message', parsed.data, size);
    }
  }

  // ---- handshake (channel-handshake.ts) ----

  async #nextHandshake(): Promise<HandshakeMessage> {
    const frame =
      (this.#closed ? null : this.#nextPreAuth()) ??
      (await new Promise<Buffer>((resolve, reject) => {
        if (this.#closed) reject(this.#handshakeError ?? new DispyError('DISPY_ERR_CONNECTION', `${this.peer} closed`));
        else this.#waiter = { resolve, reject };
      }));
    return decodeHandshake(frame, this.peer);
  }

  #deriveKeys(secret: Buffer, clientNonce: Uint8Array, serverNonce: Uint8Array, weAreClient: boolean): void {
    const { c2s, s2c } = sessionKeys(secret, clientNonce, serverNonce);
    this.#sendKey = weAreClient ? c2s : s2c;
    this.#recvKey = weAreClient ? s2c : c2s;
    this.#decoder.maxFrame = this.#maxFrame;
  }

  /** What the handshake steps use of this channel; `established` runs right after the last step. */
  #handshakeIO(secret: Buffer, weAreClient: boolean): HandshakeIO {
    return {
      peer: this.peer,
      writePlain: (msg) => this.#writePlain(msg),
      next: () => this.#nextHandshake(),
      established: (hello, clientNonce, serverNonce) => {
        this.peerHello = hello;
        this.#deriveKeys(secret, clientNonce, serverNonce, weAreClient);
        this.#drainPending();
      },
    };
  }

  /** Client side of the handshake; resolves with the server's hello. */
  handshakeAsClient(secret: Buffer, clientId: string, timeoutSec: number): Promise<void> {
    return this.#handshake(timeoutSec, 'DISPY_ERR_AUTH', () => clientHandshake(this.#handshakeIO(secret, true), secret, clientId));
  }

  /** Server side of the handshake. */
  handshakeAsServer(secret: Buffer, role: 'node' | 'scheduler', timeoutSec: number): Promise<void> {
    this.#server = true;
    return this.#handshake(timeoutSec, 'DISPY_ERR_BAD_FRAME', () => serverHandshake(this.#handshakeIO(secret, false), secret, role));
  }

  /** Runs one side's handshake steps within `timeoutSec`; a failure closes the channel (`fallback`: its code if it has none). */
  async #handshake(timeoutSec: number, fallback: DispyErrorCode, steps: () => Promise<void>): Promise<void> {
    const timer = this.#armTimeout(timeoutSec);
    try {
      await steps();
    } catch (err) {
      const e = asDispyError(err, fallback);
      this.close(e);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  #armTimeout(sec: number): NodeJS.Timeout {
    const t = setTimeout(
      () => this.close(new DispyError('DISPY_ERR_TIMEOUT', `${this.peer}: handshake not finished in ${sec} s`)),
      sec * 1000,
    );
    t.unref();
    return t;
  }

  #drainPending(): void {
    // Frames that arrived with the last handshake frame (and any until then) are delivered once
    // the caller has attached its listeners, in order.
    this.#holding = true;
    setImmediate(() => {
      this.#holding = false;
      this.#pump();
    });
  }
}
