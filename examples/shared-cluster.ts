/**
 * Sharing nodes between clusters: a `dispyts scheduler` owns the nodes, and two
 * SharedJobClusters (here in one program; they could as well be two programs, on other
 * machines) submit jobs to it. The scheduler sets each computation up on the nodes and gives
 * every free CPU to one of them by its policy.
 *
 *   npm run build:js && node --import tsx examples/shared-cluster.ts
 *
 * It starts the nodes (as every example does) and a scheduler (`dispyts scheduler` from this
 * repository's build, on --scheduler-host with an ephemeral port, its secrets in files of mode
 * 600), and stops them when it ends. Options: --jobs N (jobs per cluster, default 6), --job-sec S
 * (each job's sleep, default 0.5), --policy fsfs|fair|early (default fair), --scheduler-host ADDR
 * (default 127.0.0.1), and those of examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret;
 * --secret is the nodes' secret, which only the scheduler needs). In your own program, import
 * from 'dispyts' instead of '../src/index.js', and run the scheduler yourself:
 * `dispyts scheduler --node 10.0.0.2 --node 10.0.0.3 --cluster-secret-file F --node-secret-file G`.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SharedJobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

/** Set by the job runner on each node: the node's name. */
declare const dispyNodeName: string;

// Both run on the nodes: only their source travels.
async function square(n: number, sec: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, sec * 1000));
  return `${n * n} on ${dispyNodeName}`;
}

async function reverse(word: string, sec: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, sec * 1000));
  return `${[...word].reverse().join('')} on ${dispyNodeName}`;
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    jobs: { type: 'string', default: '6' },
    'job-sec': { type: 'string', default: '0.5' },
    policy: { type: 'string', default: 'fair' },
    'scheduler-host': { type: 'string', default: '127.0.0.1' },
  },
});
const jobs = Number(values.jobs);
const jobSec = Number(values['job-sec']);
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/** Starts `dispyts scheduler` over the nodes; resolves with its port once it prints its ready line. */
async function startScheduler(dir: string, nodes: { host: string; port: number }[], nodeSecret: string | undefined, clusterSecret: string) {
  const args = [CLI, 'scheduler', '--host', values['scheduler-host']!, '--port', '0', '--policy', values.policy!];
  for (const n of nodes) args.push('--node', `${n.host}:${n.port}`);
  // Secrets from files (mode 600), so they do not show in `ps`.
  writeFileSync(join(dir, 'cluster-secret'), clusterSecret, { mode: 0o600 });
  args.push('--cluster-secret-file', join(dir, 'cluster-secret'));
  if (nodeSecret !== undefined) {
    writeFileSync(join(dir, 'node-secret'), nodeSecret, { mode: 0o600 });
    args.push('--node-secret-file', join(dir, 'node-secret'));
  }
  // The scheduler stops by itself if this example dies without stopping it.
  args.push('--dest-path-prefix', join(dir, 'files'), '--log-level', 'warn', '--parent-pid', String(process.pid));
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /dispyts scheduler ready on \S+:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`dispyts scheduler exited with code ${code} before it was ready`)));
  });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
  };
  return { port, stop };
}

const where = await exampleNodes(values);
const dir = mkdtempSync(join(tmpdir(), 'dispyts-example-scheduler-'));
try {
  const clusterSecret = randomBytes(16).toString('hex');
  const scheduler = await startScheduler(dir, where.nodes, where.secret, clusterSecret);
  try {
    console.log(`scheduler on ${values['scheduler-host']}:${scheduler.port}, policy ${values.policy}, ${where.nodes.length} nodes`);
    const to = { schedulerHost: values['scheduler-host'], schedulerPort: scheduler.port, secret: clusterSecret };
    const squares = new SharedJobCluster(square, { ...to, name: 'squares' });
    const words = new SharedJobCluster(reverse, { ...to, name: 'words' });
    // Both clusters submit at once; the scheduler interleaves their jobs on the shared CPUs.
    const sq = Array.from({ length: jobs }, (_, i) => squares.submit(i, jobSec));
    const wd = Array.from({ length: jobs }, (_, i) => words.submit(`word${i}`, jobSec));
    for (const [i, job] of sq.entries()) console.log(`squares job ${i}: ${await job.wait()}`);
    for (const [i, job] of wd.entries()) console.log(`words job ${i}: ${await job.wait()}`);
    await Promise.all([squares.close(), words.close()]);
    console.log(`done: ${sq.length + wd.length} jobs in 2 clusters`);
  } finally {
    await scheduler.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
  await where.stop();
}
