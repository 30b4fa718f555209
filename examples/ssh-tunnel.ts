/**
 * dispy's sshportfw.py, ported: reaching nodes through ssh port forwards. Each tunnel binds its
 * own loopback address, because a node is known by its address (two tunnels on 127.0.0.1 with
 * different ports would be one node, and are refused):
 *
 *   ssh -N -L 127.0.0.5:9701:nodeA:9701 -L 127.0.0.6:9701:nodeB:9701 gateway
 *   new JobCluster(compute, { nodes: ['127.0.0.5', '127.0.0.6'] })
 *
 * The nodes need nothing special (no dispy `--ext_host`): the client connects out to each
 * node over one connection that carries everything, so nothing connects back through the
 * tunnel. To run on one machine without ssh, this example starts its own nodes and, in place of
 * ssh, a TCP relay per node on its tunnel address, forwarding to the node.
 *
 *   npm run build:js && node --import tsx examples/ssh-tunnel.ts
 *
 * Options: --tunnels A,B (the tunnels' addresses; default 127.0.0.5,127.0.0.6), --jobs N
 * (default 6: job i sleeps i × --job-sec seconds), --job-sec S (default 1), and those of
 * examples/local-nodes.ts (the nodes behind the tunnels).
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { DispyError, JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

// Runs on the nodes.
async function compute(n: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return n;
}

/** What `ssh -L tunnelHost:port:target` does here: a TCP relay on the tunnel's address. */
async function relay(tunnelHost: string, target: { host: string; port: number }): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: tunnelHost, port: 0 }, resolve);
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    tunnels: { type: 'string', default: '127.0.0.5,127.0.0.6' },
    jobs: { type: 'string', default: '6' },
    'job-sec': { type: 'string', default: '1' },
  },
});
const tunnelHosts = values.tunnels.split(',').map((h) => h.trim());
const where = await exampleNodes(values);
const tunnels: { host: string; port: number; close(): void }[] = [];
try {
  for (const [i, node] of where.nodes.entries()) {
    const host = tunnelHosts[i];
    if (!host) throw new Error(`--tunnels names ${tunnelHosts.length} addresses for ${where.nodes.length} nodes`);
    tunnels.push({ host, ...(await relay(host, node)) });
    console.log(`tunnel ${host} -> node ${node.host}`);
  }
  // Two tunnels on one address would be one node: refused, naming the fix.
  try {
    new JobCluster(compute, { nodes: tunnels.map((t) => ({ host: '127.0.0.1', port: t.port })), secret: where.secret });
  } catch (err) {
    if (!(err instanceof DispyError)) throw err;
    console.log(`one address for every tunnel: ${err.code}`);
  }
  const cluster = new JobCluster(compute, { nodes: tunnels.map(({ host, port }) => ({ host, port })), secret: where.secret });
  const jobs = [];
  for (let i = 1; i <= Number(values.jobs); i++) jobs.push(cluster.submit(Math.round(i * Number(values['job-sec']) * 1000) / 1000));
  for (const job of jobs) console.log(`result: ${await job.wait()} from ${job.ipAddr}`);
  await cluster.close();
} finally {
  for (const t of tunnels) t.close();
  await where.stop();
}
