/**
 * Baseline peer for bench/baseline.ts: accepts authenticated Channels (the product's
 * acceptChannel, role 'node', the client-message schema) on a loopback address and answers each
 * `ping` with the `reply` a node daemon sends. Run as a child process:
 *   node --import tsx bench/echo-server.ts HOST   (secret in DISPYTS_BENCH_SECRET)
 * Prints "echo ready on HOST:PORT" once listening; the bench stops it by PID (SIGTERM).
 */
import net from 'node:net';
import { acceptChannel } from '../src/protocol/channel.js';
import { clientMessageSchema, type ClientMessage, type NodeMessage } from '../src/protocol/messages.js';
import { resolveSecret } from '../src/protocol/secret.js';

const host = process.argv[2] ?? '127.0.0.1';
if (!/^127\.\d+\.\d+\.\d+$/.test(host)) {
  process.stderr.write(`echo-server: refusing non-loopback host ${host}\n`);
  process.exit(2);
}
const secretText = process.env.DISPYTS_BENCH_SECRET;
if (!secretText) {
  process.stderr.write('echo-server: DISPYTS_BENCH_SECRET is not set\n');
  process.exit(2);
}
const secret = resolveSecret(secretText);

const server = net.createServer({ noDelay: true }, (socket) => {
  acceptChannel<ClientMessage, NodeMessage>(socket, { secret, schema: clientMessageSchema, role: 'node' }).then(
    (ch) => {
      ch.on('message', (msg) => {
        if (msg.t === 'ping') ch.send({ t: 'reply', rid: msg.rid, ok: true });
      });
    },
    (err: Error) => process.stderr.write(`echo-server: handshake failed: ${err.message}\n`),
  );
});
server.listen({ host, port: 0 }, () => {
  const { port } = server.address() as net.AddressInfo;
  process.stdout.write(`echo ready on ${host}:${port}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  process.exit(0);
});
