/**
 * The nodes an example runs on. By default an example starts its own `dispyts node` daemons
 * (from this repository's build, dist/cli/main.js) on loopback addresses with ephemeral ports
 * and a random secret, and stops them when it ends; on Linux every 127.x.y.z address is local,
 * so several daemons run side by side on one machine. Given `--nodes`, it uses daemons you
 * started instead (`dispyts node --host 127.0.0.5 --secret s`, on this machine or others).
 *
 * Options every example takes:
 *   --hosts A,B,...        addresses to start daemons on (default 127.0.0.2,127.0.0.3)
 *   --cpus N               CPUs each started daemon offers (default 2)
 *   --nodes H:P,H:P,...    use these running daemons instead of starting any
 *   --secret S             their secret (default: the per-user secret file)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The `parseArgs` options above, to spread into an example's own. */
export const NODE_OPTIONS = {
  hosts: { type: 'string', default: '127.0.0.2,127.0.0.3' },
  cpus: { type: 'string', default: '2' },
  nodes: { type: 'string' },
  secret: { type: 'string' },
} as const;

export interface ExampleNodes {
  /** For JobCluster's `nodes` option. */
  nodes: { host: string; port: number }[];
  /** For JobCluster's `secret` option (undefined: the per-user secret file). */
  secret: string | undefined;
  /** The names the started daemons report (`node-<last octet>`); empty for `--nodes`. */
  names: string[];
  /** Stops the daemons this example started (none for `--nodes`). */
  stop(): Promise<void>;
}

interface Started {
  host: string;
  port: number;
  proc: ChildProcess;
  prefix: string;
}

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

async function startDaemon(host: string, cpus: string, secret: string): Promise<Started> {
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-example-'));
  const args = [CLI, 'node', '--host', host, '--port', '0', '--cpus', cpus, '--secret', secret, '--name', `node-${host.split('.').pop()}`];
  // The daemon stops by itself if this example dies without stopping it.
  args.push('--dest-path-prefix', prefix, '--log-level', 'warn', '--parent-pid', String(process.pid));
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /ready on [^\s]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`dispyts node on ${host} exited with code ${code} before it was ready`)));
  });
  return { host, port, proc, prefix };
}

async function stopDaemon(n: Started): Promise<void> {
  if (n.proc.exitCode === null && n.proc.signalCode === null) {
    const exited = new Promise((r) => n.proc.once('exit', r));
    n.proc.kill('SIGTERM');
    await exited;
  }
  rmSync(n.prefix, { recursive: true, force: true });
}

/** Starts the daemons of `--hosts`, or parses `--nodes`. */
export async function exampleNodes(values: { hosts?: string; cpus?: string; nodes?: string; secret?: string }): Promise<ExampleNodes> {
  if (values.nodes) {
    const nodes = values.nodes.split(',').map((s) => {
      const [host, port] = s.trim().split(':');
      return { host: host!, port: port ? Number(port) : 9701 };
    });
    return { nodes, secret: values.secret, names: [], stop: async () => undefined };
  }
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build the package first (npm run build:js)`);
  const hosts = (values.hosts ?? NODE_OPTIONS.hosts.default).split(',').map((h) => h.trim());
  const secret = values.secret ?? randomBytes(16).toString('hex');
  const settled = await Promise.allSettled(hosts.map((h) => startDaemon(h, values.cpus ?? NODE_OPTIONS.cpus.default, secret)));
  const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map(stopDaemon));
    throw failed.reason;
  }
  return {
    nodes: started.map(({ host, port }) => ({ host, port })),
    secret,
    names: started.map((n) => `node-${n.host.split('.').pop()}`),
    stop: async () => {
      await Promise.all(started.map(stopDaemon));
    },
  };
}
