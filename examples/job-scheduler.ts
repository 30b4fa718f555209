/**
 * dispy's job_scheduler.py, ported: a `clusterStatus` callback schedules the jobs itself, so at
 * most one job runs on a node at a time (even on a node with more CPUs): when a node is
 * initialized or one of its jobs ends, the next data file goes to that node with its job
 * (`submitWith({ node, depends: [file] })`), and the job computes the file's SHA-1 there.
 * As in dispy, the program reads commands from stdin until `quit` (or the end of its input).
 *
 *   npm run build:js && node --import tsx examples/job-scheduler.ts
 *
 * Options: --files N (data files to make, data000, data001, ...; default 6), --size BYTES
 * (default 1000000), --job-sec S (each job sleeps this long after hashing; default 5, as in
 * dispy), and those of examples/local-nodes.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DispyJob, DispyNode, JobCluster, type DispyStatus } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

// Runs on a node: the file came with the job into the job's working directory.
async function compute(file: string, sec: number): Promise<string> {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  const digest = createHash('sha1').update(readFileSync(file)).digest('hex');
  await new Promise((resolve) => setTimeout(resolve, sec * 1000));
  return digest;
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    files: { type: 'string', default: '6' },
    size: { type: 'string', default: '1000000' },
    'job-sec': { type: 'string', default: '5' },
  },
});

const dir = mkdtempSync(join(tmpdir(), 'dispyts-job-scheduler-'));
const expected = new Map<string, string>();
for (let i = 0; i < Number(values.files); i++) {
  const name = `data${String(i).padStart(3, '0')}`;
  const data = randomBytes(Number(values.size));
  writeFileSync(join(dir, name), data);
  expected.set(name, createHash('sha1').update(data).digest('hex'));
}

const where = await exampleNodes(values);
let submitted = 0;
let cluster: JobCluster<typeof compute> | null = null;
let running = 0;
let maxOnOneNode = 0;
const perNode = new Map<string, number>();

// Called by the cluster as nodes and jobs change state: the next file goes to the node that
// is free now.
function clusterStatus(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
  if (status === DispyJob.Finished && job) {
    const ok = job.result === expected.get(String(job.id)) ? 'matches' : 'DIFFERS';
    console.log(`sha1sum for ${String(job.id)}: ${String(job.result)} (${ok})`);
  } else if (status === DispyJob.Terminated && job) console.log(`sha1sum for ${String(job.id)} failed: ${job.exception}`);
  else if (status === DispyNode.Initialized && node) console.log(`node ${node.ipAddr} with ${node.availCpus} CPUs available`);
  else if (status === DispyJob.Running && node) {
    running++;
    const n = (perNode.get(node.ipAddr) ?? 0) + 1;
    perNode.set(node.ipAddr, n);
    maxOnOneNode = Math.max(maxOnOneNode, n);
    return;
  } else return;
  if (job?.ipAddr && (status === DispyJob.Finished || status === DispyJob.Terminated)) {
    running--;
    perNode.set(job.ipAddr, perNode.get(job.ipAddr)! - 1);
  }
  const file = join(dir, `data${String(submitted).padStart(3, '0')}`);
  if (node && existsSync(file)) {
    submitted++;
    // 'node' and 'depends' are for dispyts; compute gets the file's name and the sleep.
    const name = file.slice(dir.length + 1);
    cluster!.submitWith({ node, depends: [file], id: name }, name, Number(values['job-sec']));
  }
}

try {
  cluster = new JobCluster(compute, { nodes: where.nodes, secret: where.secret, clusterStatus });
  // Commands from stdin, as dispy's: `quit` or `exit` (or the end of the input) stops.
  await new Promise<void>((resolve) => {
    let input = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => {
      input += d;
      if (/^\s*(quit|exit)\s*$/im.test(input)) resolve();
    });
    process.stdin.once('end', resolve);
  });
  process.stdin.pause();
  await cluster.wait();
  await cluster.close();
  console.log(`${submitted} files hashed, at most ${maxOnOneNode} job at a time on a node (${running} running)`);
  cluster.printStatus();
} finally {
  await where.stop();
  rmSync(dir, { recursive: true, force: true });
}
