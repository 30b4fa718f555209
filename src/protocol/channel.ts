/**
 * An authenticated message channel over one TCP (or TLS) socket: opening one as a client
 * (`connectChannel`), accepting one as a server (`acceptChannel`), refusing one before its
 * handshake (`refuseConnection`). The channel itself, its frames, MACs and size limits, is in
 * authenticated-channel.ts; its handshake in channel-handshake.ts.
 */
import net from 'node:net';
import { TLSSocket } from 'node:tls';
import { DispyError } from '../errors.js';
import { Channel, type ChannelOptions } from './authenticated-channel.js';
import { HANDSHAKE_TIMEOUT } from './constants.js';
import { encodeFrame } from './frame.js';
import type { HandshakeMessage } from './messages.js';
import { isTlsError, tlsError } from './tls.js';
import { packMessage } from './wire-codec.js';

export { Channel, type ChannelOptions, type Role } from './authenticated-channel.js';

export interface ConnectOptions<In> extends ChannelOptions<In> {
  host: string;
  port: number;
  /** Random id of the client process, shared by all its connections. */
  clientId: string;
  /** Local address to connect from. */
  localAddress?: string;
  /** Opens the socket (TLS uses this); plain TCP when absent. */
  createSocket?: () => net.Socket;
  /** Event the socket emits once usable. @default 'connect' */
  readyEvent?: string;
}

export interface AcceptOptions<In> extends ChannelOptions<In> {
  /** Our role as the server. */
  role: 'node' | 'scheduler';
}

/** Connects to a server and authenticates as a client. */
export async function connectChannel<In, Out>(opts: ConnectOptions<In>): Promise<Channel<In, Out>> {
  const socket = opts.createSocket
    ? opts.createSocket()
    : net.connect({ host: opts.host, port: opts.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
  const timeout = opts.handshakeTimeout ?? HANDSHAKE_TIMEOUT;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DispyError('DISPY_ERR_TIMEOUT', `connecting to ${opts.host}:${opts.port} timed out after ${timeout} s`));
    }, timeout * 1000);
    socket.once(opts.readyEvent ?? 'connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve();
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      if (isTlsError(err)) reject(tlsError(err, `cannot connect to ${opts.host}:${opts.port}`));
      else {
        // A plain-TCP node drops a TLS client's hello without a word.
        const hint =
          socket instanceof TLSSocket && err.code === 'ECONNRESET' ? ' (does the node serve TLS? a plain-TCP node drops TLS clients)' : '';
        reject(
          new DispyError('DISPY_ERR_CONNECTION', `cannot connect to ${opts.host}:${opts.port}: ${err.message}${hint}`, { cause: err }),
        );
      }
    });
  });
  const ch = new Channel<In, Out>(socket, opts);
  try {
    await ch.handshakeAsClient(opts.secret, opts.clientId, timeout);
  } catch (err) {
    // A node serving TLS drops a plain-TCP client without a word.
    if (!(socket instanceof TLSSocket) && ch.rx === 0 && (err as DispyError).code === 'DISPY_ERR_CONNECTION') {
      throw new DispyError(
        'DISPY_ERR_CONNECTION',
        `${(err as Error).message} without answering (a node serving TLS does this to plain-TCP clients: give the cluster caFile)`,
        { cause: err },
      );
    }
    throw err;
  }
  return ch;
}

/**
 * Refuses an accepted connection before its handshake: the client's handshake fails with
 * `error` (e.g. a TLS node telling a client why its certificate was refused).
 */
export function refuseConnection(socket: net.Socket, error: DispyError): void {
  const msg: HandshakeMessage = { t: 'error', error: error.toJSON() };
  socket.on('error', () => undefined);
  socket.end(encodeFrame(packMessage(msg)));
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Authenticates an accepted socket as the server side. */
export async function acceptChannel<In, Out>(socket: net.Socket, opts: AcceptOptions<In>): Promise<Channel<In, Out>> {
  const ch = new Channel<In, Out>(socket, opts);
  await ch.handshakeAsServer(opts.secret, opts.role, opts.handshakeTimeout ?? HANDSHAKE_TIMEOUT);
  return ch;
}
