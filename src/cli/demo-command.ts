/**
 * `dispyts demo`: starts two local node daemons (127.0.0.2 and 127.0.0.3) as child processes
 * and keeps jobs of the seed's example (class `C`, a computation that sleeps) flowing over them
 * until Ctrl-C, `--duration` or `--jobs`, then stops everything it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DispyError } from '../errors.js';
import { type CliCommand, HELP_OPTION, helpText, parseCommand } from './options.js';
import { JobCluster } from '../client/job-cluster.js';
import { DispyJob } from '../client/dispy-job.js';
import { DispyHTTPServer } from '../httpd/dispy-http-server.js';
import { HTTP_PORT } from '../protocol/constants.js';
import { parseIntOption, parseSeconds } from './args.js';

/** `dispyts demo`'s options: its parser and `--help` come from this table. */
export const DEMO_COMMAND = {
  usage: 'dispyts demo [options]',
  intro: `Starts two node daemons on 127.0.0.2 and 127.0.0.3, runs a cluster of the seed's example on
them (objects of class C as arguments, jobs that sleep a few seconds) with the monitor on
http://127.0.0.1:8181, prints each result and the cluster's status, and stops everything on
Ctrl-C.`,
  column: 16,
  options: [
    { name: 'port', arg: 'N', help: 'port of the monitor (default 8181; 0 = any free port)' },
    { name: 'http-host', arg: 'ADDR', help: 'address of the monitor (default 127.0.0.1)' },
    { name: 'duration', arg: 'S', help: 'stop after S seconds (default: run until Ctrl-C)' },
    { name: 'jobs', arg: 'N', help: 'stop after N jobs finished (default: no limit)' },
    { name: 'job-seconds', arg: 'S', help: 'longest job in seconds; each sleeps a random 20-100% of it (default 3)' },
    { name: 'cpus', arg: 'N', help: 'CPUs per node (default 2)' },
    HELP_OPTION,
  ],
} as const satisfies CliCommand;

/** `dispyts demo --help`. */
export const DEMO_HELP = helpText(DEMO_COMMAND);

/** The seed's class: its toString is what the Node page shows as a job's arguments. */
class C {
  s: string;
  i: number;
  constructor(s: string, i: number) {
    this.s = s;
    this.i = i;
  }
  toString(): string {
    return `C(${this.s}, ${this.i.toFixed(4)})`;
  }
}

/** The seed's computation: sleeps `n` seconds and returns `n * obj.i`. */
async function compute(obj: C, n = 5): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return n * obj.i;
}

interface DemoNode {
  host: string;
  port: number;
  proc: ChildProcess;
  prefix: string;
}

async function startDemoNode(host: string, cpus: number, secret: string): Promise<DemoNode> {
  // dist/cli/main.js, or src/cli/main.ts when the demo itself runs under a TypeScript loader.
  const js = fileURLToPath(new URL('./main.js', import.meta.url));
  const cli = existsSync(js) ? js : fileURLToPath(new URL('./main.ts', import.meta.url));
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-demo-'));
  const proc = spawn(
    process.execPath,
    [
      ...process.execArgv,
      cli,
      'node',
      '--host',
      host,
      '--port',
      '0',
      '--cpus',
      String(cpus),
      '--secret',
      secret,
      '--name',
      `demo-${host.split('.').pop()}`,
      '--dest-path-prefix',
      prefix,
      '--log-level',
      'warn',
      '--parent-pid',
      String(process.pid),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /ready on [^\s]+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) =>
      reject(new DispyError('DISPY_ERR_CONNECTION', `node ${host} exited with code ${code} before it was ready`)),
    );
  });
  return { host, port, proc, prefix };
}

async function stopDemoNode(n: DemoNode): Promise<void> {
  if (n.proc.exitCode === null && n.proc.signalCode === null) {
    const exited = new Promise((r) => n.proc.once('exit', r));
    n.proc.kill('SIGTERM');
    await exited;
  }
  rmSync(n.prefix, { recursive: true, force: true });
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parseCommand(DEMO_COMMAND, argv);
  if (values.help) {
    process.stdout.write(DEMO_HELP);
    return 0;
  }
  const duration = parseSeconds('duration', values.duration);
  const maxJobs = parseIntOption('jobs', values.jobs, { min: 1 });
  const jobSeconds = parseSeconds('job-seconds', values['job-seconds']) ?? 3;
  const cpus = parseIntOption('cpus', values.cpus, { min: 1 }) ?? 2;
  const httpPort = parseIntOption('port', values.port, { min: 0, max: 65535 }) ?? HTTP_PORT;
  const httpHost = values['http-host'] ?? '127.0.0.1';
  const secret = randomBytes(16).toString('hex');

  const nodes: DemoNode[] = [];
  let cluster: JobCluster<typeof compute> | null = null;
  let monitor: DispyHTTPServer | null = null;
  let stopping = false;
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  const onSignal = (): void => {
    if (!stopping) process.stdout.write('\nstopping...\n');
    stopping = true;
    stop();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const t0 = Date.now();
  try {
    nodes.push(...(await Promise.all(['127.0.0.2', '127.0.0.3'].map((h) => startDemoNode(h, cpus, secret)))));
    for (const n of nodes) process.stdout.write(`node ${n.host}:${n.port} started (pid ${n.proc.pid}, ${cpus} cpus)\n`);
    cluster = new JobCluster(compute, { depends: [C], nodes: nodes.map((n) => ({ host: n.host, port: n.port })), secret, name: 'demo' });
    cluster.on('error', (err) => process.stderr.write(`cluster error: ${err.code}: ${err.message}\n`));
    monitor = new DispyHTTPServer(cluster, { host: httpHost, port: httpPort, pollSec: 2, logLevel: 'warn' });
    const where = await monitor.listening;
    process.stdout.write(`monitor: ${new URL('/', where.url).href}${monitor.token ? `?token=${monitor.token}` : ''}\n`);
    let finished = 0;
    let submitted = 0;
    const inFlight = 2 * cpus * nodes.length;
    const submitOne = (): void => {
      if (stopping || !cluster) return;
      const c = new C(String(submitted), 1 + Math.random() * 8);
      const n = Math.round(jobSeconds * (0.2 + 0.8 * Math.random()) * 10) / 10;
      const job = cluster.submit(c, n);
      job.id = submitted++;
      void job.wait().then(
        (result) => {
          finished++;
          process.stdout.write(`job ${String(job.id)} on ${job.ipAddr}: compute(${String(c)}, ${n}) = ${result.toFixed(4)}\n`);
          if (maxJobs !== undefined && finished >= maxJobs) stop();
          else submitOne();
        },
        (err: unknown) => {
          if (job.status !== DispyJob.Cancelled && job.status !== DispyJob.Terminated)
            process.stderr.write(`job ${String(job.id)} failed: ${(err as Error).message}\n`);
          if (!stopping) submitOne();
        },
      );
    };
    for (let i = 0; i < inFlight; i++) submitOne();
    if (duration !== undefined) setTimeout(stop, duration * 1000).unref();
    await stopped;
    stopping = true;
    await cluster.close({ terminate: true, timeout: 0 });
    cluster.printStatus((Date.now() - t0) / 1000);
    return 0;
  } finally {
    stopping = true;
    await monitor?.shutdown({ wait: false });
    if (cluster && !cluster.closed) await cluster.close({ terminate: true });
    await Promise.all(nodes.map(stopDemoNode));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
