/**
 * The node's network front: it listens (plain TCP, or TLS and mutual TLS), counts connections in
 * their handshake against the caps (handshake-gate.ts), authenticates clients (channel.ts), and
 * closes an authenticated connection whose client stopped sending heartbeats. What an
 * authenticated client says goes to the daemon through `NodeFrontOptions`.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { DispyError } from '../errors.js';
import { acceptChannel, refuseConnection } from '../protocol/channel.js';
import type { HandshakeGate } from '../protocol/handshake-gate.js';
import { clientMessageSchema, type ClientMessage, type NodeMessage } from '../protocol/messages.js';
import { missedBeatsMs, SilenceWatch } from '../protocol/silence-watch.js';
import { clientCertRefusal, describeTlsError, serverTlsOptions, type TlsMaterial } from '../protocol/tls.js';
import type { ClientChannel } from './node-context.js';

/** How often (ms) connections are checked for silence. */
const SILENCE_CHECK_MS = 500;

export interface NodeFrontOptions {
  host: string;
  log: Logger;
  secret: Buffer;
  tls: TlsMaterial | null;
  gate: HandshakeGate;
  maxMessageSize: number;
  /** The daemon is stopping: new connections are closed at once. */
  stopping: () => boolean;
  /** A client authenticated (`clientId`: its program's id, or its address). */
  onChannel: (ch: ClientChannel, clientId: string) => void;
  onMessage: (ch: ClientChannel, clientId: string, msg: ClientMessage) => void;
  onClose: (ch: ClientChannel, clientId: string, reason: DispyError | null) => void;
}

export class NodeFront {
  /** Open authenticated connections. */
  readonly channels = new Set<ClientChannel>();
  readonly #opts: NodeFrontOptions;
  #server: net.Server | null = null;
  /** Per connection: ms of the last message, and the client's heartbeat period (s). */
  readonly #heard = new WeakMap<ClientChannel, { ch: ClientChannel; lastHeard: number; every: number }>();
  readonly #silence = new SilenceWatch({ roundMs: SILENCE_CHECK_MS });
  #silenceTimer: NodeJS.Timeout | null = null;
  /** Handshakes in progress, by the peer's `address:port`: what to call once one authenticated. */
  readonly #handshakes = new Map<string, () => void>();

  constructor(opts: NodeFrontOptions) {
    this.#opts = opts;
  }

  /** Listens; resolves with the bound port. */
  async listen(port: number): Promise<number> {
    const o = this.#opts;
    this.#silence.reset();
    this.#silenceTimer = setInterval(() => this.#checkSilence(), SILENCE_CHECK_MS);
    this.#silenceTimer.unref();
    const server = o.tls
      ? tls.createServer({ ...serverTlsOptions(o.tls), noDelay: true }, (socket) => this.#acceptTls(socket))
      : net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    // Connections not yet authenticated are counted (and capped) before anything is read.
    server.prependListener('connection', (raw: net.Socket) => this.#admit(raw));
    if (o.tls) this.#watchTlsHandshakes(server as tls.Server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: o.host, port, backlog: 128 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => o.log.error({ err }, 'server error'));
    return (server.address() as net.AddressInfo).port;
  }

  /** Stops listening and watching for silence (open connections stay). */
  close(): void {
    this.#server?.close();
    if (this.#silenceTimer) clearInterval(this.#silenceTimer);
  }

  /**
   * With `--ca-file`, a client whose certificate is missing or not signed by that CA is refused
   * here (node:tls leaves the verdict to us so that the client can be told why).
   */
  #acceptTls(socket: tls.TLSSocket): void {
    const refusal = clientCertRefusal(this.#opts.tls!, socket);
    if (refusal === null) {
      void this.#accept(socket);
      return;
    }
    this.#opts.log.warn(
      { peer: `${socket.remoteAddress}:${socket.remotePort}`, code: 'DISPY_ERR_TLS', reason: refusal },
      'client certificate refused; connection refused',
    );
    refuseConnection(socket, new DispyError('DISPY_ERR_TLS', `node ${this.#opts.host} refused this client: ${refusal}`));
  }

  /**
   * A failed TLS handshake (a plain-TCP client, a client that does not trust our certificate)
   * is logged as DISPY_ERR_TLS; node:tls then destroys that socket and the server goes on
   * serving.
   */
  #watchTlsHandshakes(server: tls.Server): void {
    // The peer's address, read while the raw socket is open (a reset TLS socket has lost it).
    const peers = new WeakMap<net.Socket, string>();
    server.on('connection', (raw: net.Socket) => {
      if (!raw.destroyed) peers.set(raw, `${raw.remoteAddress}:${raw.remotePort}`);
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      const raw = (socket as unknown as { _parent?: net.Socket })._parent;
      // Refused by the handshake caps: logged there, once per address a while.
      if (raw?.destroyed && !peers.has(raw)) return;
      const peer = (raw && peers.get(raw)) ?? (socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : '?');
      const reason =
        err.code === 'ECONNRESET' || err.code === 'EPIPE'
          ? `the client closed the connection during the TLS handshake (does it trust this node's certificate?): ${err.message}`
          : describeTlsError(err);
      this.#opts.log.warn({ peer, code: 'DISPY_ERR_TLS', reason }, 'TLS handshake failed; connection refused');
    });
  }

  /** Counts a new connection against the handshake caps; one over them is closed at once. */
  #admit(raw: net.Socket): void {
    const key = `${raw.remoteAddress}:${raw.remotePort}`;
    const release = this.#opts.gate.admit(raw);
    if (!release) return;
    this.#handshakes.set(key, release);
    raw.once('close', () => {
      if (this.#handshakes.get(key) === release) this.#handshakes.delete(key);
    });
  }

  /** The connection from `key` authenticated (or failed): it no longer counts as a handshake. */
  #handshakeOver(key: string): void {
    this.#handshakes.get(key)?.();
    this.#handshakes.delete(key);
  }

  async #accept(socket: net.Socket): Promise<void> {
    const o = this.#opts;
    // Refused by the handshake caps (and logged there).
    if (socket.destroyed) return;
    if (o.stopping()) {
      socket.destroy();
      return;
    }
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    let ch: ClientChannel;
    try {
      ch = await acceptChannel<ClientMessage, NodeMessage>(socket, {
        secret: o.secret,
        schema: clientMessageSchema,
        role: 'node',
        maxFrame: o.maxMessageSize,
      });
      this.#handshakeOver(key);
    } catch (err) {
      this.#handshakeOver(key);
      o.log.warn(
        { peer: `${socket.remoteAddress}:${socket.remotePort}`, code: (err as DispyError).code, reason: (err as Error).message },
        'connection refused',
      );
      return;
    }
    this.channels.add(ch);
    const clientId = ch.peerHello?.clientId ?? ch.peer;
    o.log.debug({ peer: ch.peer, clientId }, 'client authenticated');
    const heard = { ch, lastHeard: Date.now(), every: 0 };
    this.#heard.set(ch, heard);
    ch.on('message', (msg) => {
      heard.lastHeard = Date.now();
      if (msg.t === 'beat') {
        if (heard.every !== msg.every) o.log.debug({ peer: ch.peer, every: msg.every }, 'client heartbeat interval');
        heard.every = msg.every;
        return;
      }
      try {
        o.onMessage(ch, clientId, msg);
      } catch (err) {
        o.log.error({ err, peer: ch.peer }, 'error handling a message');
        ch.close(new DispyError('DISPY_ERR_INTERNAL', (err as Error).message));
      }
    });
    ch.on('close', (reason) => {
      this.channels.delete(ch);
      o.onClose(ch, clientId, reason);
    });
    o.onChannel(ch, clientId);
  }

  /**
   * A client sends a heartbeat every `every` seconds; a connection of it that stayed silent for
   * 5 × that is closed (silence-watch.ts), so its jobs wait for the client to return (up to the
   * zombie interval) rather than writing results into a dead connection. A live client is never
   * cut off: its heartbeats keep coming while it is idle; nor is it cut off for the node's own
   * silence (a round run late, the daemon stopped or blocked, judges nobody).
   */
  #checkSilence(): void {
    const heard = [...this.channels].flatMap((ch) => this.#heard.get(ch) ?? []);
    const late = this.#silence.round(heard, {
      heard: (h) => h,
      limitMs: (h) => (h.every <= 0 || h.ch.closed ? Number.POSITIVE_INFINITY : missedBeatsMs(h.every)),
      gone: (h, silent) => {
        this.#opts.log.warn({ peer: h.ch.peer, silentMs: silent }, 'client sent no heartbeat for 5 intervals: connection closed');
        h.ch.close(new DispyError('DISPY_ERR_TIMEOUT', `client ${h.ch.peer} sent nothing for ${(silent / 1000).toFixed(1)} s`));
      },
    });
    if (late !== null) this.#opts.log.warn({ lateMs: late }, 'heartbeat check ran late (process paused?): clients not judged this round');
  }
}
