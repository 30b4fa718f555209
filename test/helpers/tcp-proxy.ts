/**
 * A TCP proxy on a loopback address in front of a node, for tests that break, delay or hold up
 * a client's connection while the node itself runs on: `cut()` resets every forwarded
 * connection (both ends see it break), `hold()` accepts new connections without forwarding them
 * until `release()`, and `pauseUpstream()` stops passing what the client sends (what the node
 * sends still arrives) until `resumeUpstream()`.
 */
import net from 'node:net';

export interface TcpProxy {
  host: string;
  port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  cut(): void;
  hold(): void;
  release(): void;
  pauseUpstream(): void;
  resumeUpstream(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(host: string, target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<{ client: net.Socket; server: net.Socket }>();
  const waiting: net.Socket[] = [];
  let held = false;
  let paused = false;
  let accepted = 0;
  const forward = (client: net.Socket): void => {
    const server = net.connect(target);
    const pair = { client, server };
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('error', drop).on('close', drop);
    server.on('error', drop).on('close', drop);
    client.pipe(server);
    server.pipe(client);
    if (paused) client.pause();
  };
  const proxy = net.createServer((client) => {
    accepted++;
    client.on('error', () => client.destroy());
    if (held) waiting.push(client);
    else forward(client);
  });
  await new Promise<void>((resolve, reject) => {
    proxy.once('error', reject);
    proxy.listen({ host, port: 0 }, () => resolve());
  });
  const port = (proxy.address() as net.AddressInfo).port;
  const self: TcpProxy = {
    host,
    port,
    get accepted() {
      return accepted;
    },
    cut() {
      for (const p of [...pairs]) {
        p.client.resetAndDestroy();
        p.server.resetAndDestroy();
      }
      pairs.clear();
    },
    hold() {
      held = true;
    },
    release() {
      held = false;
      for (const client of waiting.splice(0)) if (!client.destroyed) forward(client);
    },
    pauseUpstream() {
      paused = true;
      for (const p of pairs) {
        p.client.unpipe(p.server);
        p.client.pause();
      }
    },
    resumeUpstream() {
      paused = false;
      for (const p of pairs) {
        p.client.pipe(p.server);
        p.client.resume();
      }
    },
    async close() {
      self.cut();
      for (const client of waiting.splice(0)) client.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
    },
  };
  return self;
}
