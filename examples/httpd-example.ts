/**
 * The seed's httpd example (dispy's `httpd_example.py`), ported: objects of class C are the
 * jobs' arguments (their toString() is what the Node page shows), each job sleeps n seconds, and
 * a DispyHTTPServer lets a browser (or curl) watch and steer the cluster while they run.
 *
 * Run it from the repository (it starts two local nodes on 127.0.0.2 and 127.0.0.3):
 *
 *   npm run build:js && node --import tsx examples/httpd-example.ts
 *   # then open http://127.0.0.1:8181/ or, for example:
 *   curl http://127.0.0.1:8181/cluster_status
 *   curl -d host=127.0.0.2 http://127.0.0.1:8181/node_info
 *
 * or against nodes you started (`dispyts node --host 127.0.0.5 --secret s ...`):
 *
 *   node --import tsx examples/httpd-example.ts --nodes 127.0.0.5:9701,127.0.0.6:9701 --secret s
 *
 * Options: --port N (HTTP port, default 8181; 0 = any), --host ADDR (HTTP address, default
 * 127.0.0.1; '' listens on every interface, protected by a logged token), --poll-sec S (default
 * 10), --jobs N (default 8), --min-sec S / --max-sec S (job lengths, default 5 and 20),
 * --nodes host:port,... and --secret (use these nodes instead of starting two).
 * It prints `HTTP server at <url>` once listening and `done` at the end. In your own program,
 * import from 'dispyts' instead of '../src/index.js'.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DispyHTTPServer, JobCluster, type DispyJob } from '../src/index.js';

// Example program that sends object instances in the local program as arguments to the
// distributed computation.
class C {
  s: string;
  i: number;
  constructor(s: string, i: number) {
    this.s = s;
    this.i = i;
  }
  // Shown as the job's arguments when monitoring jobs on the Node page.
  toString(): string {
    return `C(${this.s}, ${this.i.toFixed(4)})`;
  }
}

async function compute(obj: C, n = 5): Promise<number> {
  // obj is an instance of C (rebuilt on the node: C is in `depends`)
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return n * obj.i;
}

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8181' },
    host: { type: 'string', default: '127.0.0.1' },
    'poll-sec': { type: 'string', default: '10' },
    jobs: { type: 'string', default: '8' },
    'min-sec': { type: 'string', default: '5' },
    'max-sec': { type: 'string', default: '20' },
    nodes: { type: 'string' },
    secret: { type: 'string' },
  },
});

function num(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${v}`);
  return n;
}

/** Starts `dispyts node` on `host` (ephemeral port) from this repository's build. */
async function startNode(host: string, secret: string): Promise<{ host: string; port: number; proc: ChildProcess; prefix: string }> {
  const cli = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-httpd-example-'));
  const proc = spawn(
    process.execPath,
    [cli, 'node', '--host', host, '--port', '0', '--cpus', '2', '--secret', secret, '--dest-path-prefix', prefix, '--log-level', 'warn'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /ready on [^\s]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`node ${host} exited with code ${code}`)));
  });
  return { host, port, proc, prefix };
}

const started: { host: string; port: number; proc: ChildProcess; prefix: string }[] = [];
let nodes: { host: string; port: number }[];
let secret = values.secret;
if (values.nodes) {
  nodes = values.nodes.split(',').map((s) => {
    const [host, port] = s.trim().split(':');
    return { host: host!, port: port ? Number(port) : 9701 };
  });
} else {
  secret ??= randomBytes(16).toString('hex');
  started.push(...(await Promise.all(['127.0.0.2', '127.0.0.3'].map((h) => startNode(h, secret!)))));
  nodes = started.map(({ host, port }) => ({ host, port }));
}

const minSec = num('min-sec', values['min-sec']);
const maxSec = Math.max(minSec, num('max-sec', values['max-sec']));
try {
  // create cluster
  const cluster = new JobCluster(compute, { depends: [C], nodes, ...(secret ? { secret } : {}) });
  cluster.on('error', (err) => console.error(`cluster error: ${err.code}: ${err.message}`));

  // create http server for this cluster; it can now be monitored and managed in a browser at
  // http://<host>:<port>
  const httpServer = new DispyHTTPServer(cluster, {
    host: values.host,
    port: num('port', values.port),
    pollSec: num('poll-sec', values['poll-sec']),
  });
  const address = await httpServer.listening;
  console.log(`HTTP server at ${address.url}`);

  const jobs: DispyJob<number>[] = [];
  for (let i = 0; i < num('jobs', values.jobs); i++) {
    // submit jobs to cluster
    const c = new C(String(i), 1 + Math.random() * 8);
    const job = cluster.submit(c, Math.round((minSec + Math.random() * (maxSec - minSec)) * 10) / 10);
    job.id = i;
    jobs.push(job);
  }
  for (const job of jobs) {
    job.wait().then(
      (result) => console.log(`job ${String(job.id)}: ${result.toFixed(4)}`),
      (err: unknown) => console.log(`job ${String(job.id)}: ${(err as Error).message}`),
    );
  }

  await cluster.wait(); // wait for all jobs to finish
  await httpServer.shutdown(); // this waits until browsers get all updates
  await cluster.close();
  console.log('done');
} finally {
  for (const n of started) {
    if (n.proc.exitCode === null && n.proc.signalCode === null) {
      const exited = new Promise((r) => n.proc.once('exit', r));
      n.proc.kill('SIGTERM');
      await exited;
    }
    rmSync(n.prefix, { recursive: true, force: true });
  }
}
