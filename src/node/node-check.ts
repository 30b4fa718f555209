/**
 * `dispyts node --check`: asks a running node daemon whether it serves, the way a client would
 * (connect, mutual authentication with the shared secret, the node's `info`), then hangs up
 * without setting anything up. Made for container health checks (a Kubernetes exec probe):
 * unlike a bare TCP probe it opens no unauthenticated connection, and it fails when the
 * daemon's port answers but the daemon cannot serve (a wrong secret, a stopping daemon).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { DispyError } from '../errors.js';
import { connectChannel } from '../protocol/channel.js';
import { NODE_PORT } from '../protocol/constants.js';
import { nodeMessageSchema, type ClientMessage, type NodeMessage } from '../protocol/messages.js';

export interface NodeCheckOptions {
  /** The node's address (its `--host`). @default '127.0.0.1' */
  host?: string;
  /** Its port. @default 9701 */
  port?: number;
  secret: Buffer;
  /** The node's `--cert-file`: it serves TLS only, so the check speaks TLS. @default undefined */
  certFile?: string;
  /** The node's `--key-file`. @default undefined */
  keyFile?: string;
  /** The node's `--ca-file`: it wants a client certificate; the check presents the node's own. @default undefined */
  caFile?: string;
  /** Seconds the whole check may take. @default 10 */
  timeout?: number;
}

/** What a node that answered said about itself. */
export interface NodeCheckResult {
  name: string;
  ipAddr: string;
  port: number;
  cpus: number;
  cpuLimit: number;
  busy: boolean;
  draining: boolean;
}

/** Resolves with the node's info, or rejects with a DispyError saying why it does not serve. */
export async function checkNode(opts: NodeCheckOptions): Promise<NodeCheckResult> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? NODE_PORT;
  const timeout = opts.timeout ?? 10;
  const tlsFiles = opts.certFile ? readTls(opts) : null;
  const deadline = new Promise<never>((_, reject) => {
    setTimeout(
      () => reject(new DispyError('DISPY_ERR_TIMEOUT', `node ${host}:${port} did not answer within ${timeout} s`)),
      timeout * 1000,
    ).unref();
  });
  const channel = await Promise.race([
    connectChannel<NodeMessage, ClientMessage>({
      host,
      port,
      secret: opts.secret,
      // A fresh identity: never taken for the client the node serves.
      clientId: randomBytes(12).toString('hex'),
      schema: nodeMessageSchema,
      handshakeTimeout: timeout,
      ...(tlsFiles
        ? {
            // The mutual HMAC handshake that follows proves the node holds the secret; the
            // certificate is not what this check is about (and nothing secret is sent).
            createSocket: () => tls.connect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.2', ...tlsFiles }),
            readyEvent: 'secureConnect',
          }
        : {}),
    }),
    deadline,
  ]);
  try {
    const info = await Promise.race([
      new Promise<Extract<NodeMessage, { t: 'info' }>>((resolve, reject) => {
        channel.once('message', (msg) => {
          if (msg.t === 'info') resolve(msg);
          else reject(new DispyError('DISPY_ERR_BAD_FRAME', `node ${host}:${port} sent ${msg.t} before its info`));
        });
        channel.once('close', (reason) =>
          reject(reason ?? new DispyError('DISPY_ERR_CONNECTION', `node ${host}:${port} closed the connection`)),
        );
      }),
      deadline,
    ]);
    return {
      name: info.name,
      ipAddr: info.ipAddr,
      port: info.port,
      cpus: info.cpus,
      cpuLimit: info.cpuLimit ?? info.cpus,
      busy: info.busy,
      draining: info.draining ?? false,
    };
  } finally {
    channel.close(null);
  }
}

function readTls(opts: NodeCheckOptions): { cert?: Buffer; key?: Buffer } {
  if (!opts.caFile) return {};
  try {
    const cert = readFileSync(opts.certFile!);
    return { cert, key: opts.keyFile ? readFileSync(opts.keyFile) : cert };
  } catch (err) {
    throw new DispyError('DISPY_ERR_TLS', `--check cannot read the node's certificate: ${(err as Error).message}`);
  }
}
