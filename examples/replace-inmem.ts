/**
 * dispy's replace_inmem.py, ported: each node gets a data file (one of the example programs, as
 * dispy takes its own *.py files); `nodeSetup` runs once per node, reads the file into memory
 * and deletes it, and hands the bytes to `setup`, which keeps them in a global in each job
 * runner (with 2 runners the file is long gone when the second one sets up: in dispy, setup
 * runs once in the node's process before jobs fork from it). Each job digests the node's data
 * with one hash algorithm; the client checks it against its own copy. Then `resetupNode`
 * replaces every node's data with the next file and more jobs run on that.
 *
 *   npm run build:js && node --import tsx examples/replace-inmem.ts
 *
 * Options: --jobs N (per round; default 6), --min-sec / --max-sec (job length; default 2 / 5),
 * and those of examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DispyJob, JobCluster, NodeAllocate, type AvailInfo } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

/** What `setup` leaves in each job runner (globals, as in dispy). */
declare const inmem: { data: Buffer; algorithms: string[]; fileName: string };

// Once per node, in one job runner, before any runner sets up: the file is read and deleted.
function nodeSetup(dataFile: string, _n: number): Buffer {
  const fs = require('node:fs') as typeof import('node:fs');
  const data = fs.readFileSync(dataFile);
  fs.rmSync(dataFile); // dataFile can now be deleted
  return data;
}

// In each job runner, with nodeSetup's value first: the data becomes a global for the jobs.
function setup(data: Buffer, dataFile: string, _n: number): number {
  const algorithms = ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512'];
  (globalThis as Record<string, unknown>).inmem = { data: Buffer.from(data), algorithms, fileName: dataFile };
  return 0;
}

// When the computation closes on the node (or before resetupNode sets it up again).
function cleanup(): void {
  delete (globalThis as Record<string, unknown>).inmem;
}

async function compute(i: number, n: number): Promise<[string, string, string, string]> {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const alg = inmem.algorithms[i % inmem.algorithms.length]!;
  const digest = createHash(alg).update(inmem.data).digest('hex');
  await new Promise((r) => setTimeout(r, n * 1000));
  return [dispyNodeIpAddr, inmem.fileName, alg, digest];
}
declare const dispyNodeIpAddr: string;

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    jobs: { type: 'string', default: '6' },
    'min-sec': { type: 'string', default: '2' },
    'max-sec': { type: 'string', default: '5' },
  },
});
const here = fileURLToPath(new URL('.', import.meta.url));
const dataFiles = readdirSync(here)
  .filter((f) => f.endsWith('.ts'))
  .sort()
  .map((f) => join(here, f));
let fileId = 0;
/** Which file each node processes now. */
const nodes = new Map<string, string>();

class InMemAllocate extends NodeAllocate {
  // Asked when a node is set up, and again by resetupNode: the next file for that node.
  override allocate(
    cluster: unknown,
    ipAddr: string,
    name: string,
    cpus: number,
    availInfo: AvailInfo | null = null,
    platform = '',
  ): number {
    if (!nodes.has(ipAddr) && nodes.size === 2) return 0; // use at most 2 nodes, to illustrate this example
    const dataFile = dataFiles[fileId % dataFiles.length]!;
    fileId++;
    nodes.set(ipAddr, dataFile);
    console.log(`Node ${ipAddr} (${name}) processes "${basename(dataFile)}"`);
    // Files are saved on the node in the computation's directory, so send just the base name.
    this.setupArgs = [basename(dataFile), fileId];
    this.depends = [dataFile];
    return Math.min(2, super.allocate(cluster, ipAddr, name, cpus, availInfo, platform)); // at most 2 cpus (for illustration)
  }
}

const where = await exampleNodes(values);
let checked = 0;
let matched = 0;
function jobStatus(job: DispyJob): void {
  if (job.status === DispyJob.Finished) {
    const [ip, file, alg, digest] = job.result as [string, string, string, string];
    const expected = createHash(alg)
      .update(readFileSync(join(here, file)))
      .digest('hex');
    checked++;
    if (digest === expected) matched++;
    console.log(
      `job ${String(job.id)} finished by ${ip}, ${alg} of ${file} is ${digest.slice(0, 16)}... (${digest === expected ? 'matches' : 'DIFFERS from'} the client's copy)`,
    );
  } else {
    console.log(`job ${String(job.id)} failed: ${job.exception}`);
  }
}
try {
  const cluster = new JobCluster(compute, {
    nodes: where.nodes.map(({ host, port }) => new InMemAllocate(host, port)),
    secret: where.secret,
    nodeSetup,
    setup,
    cleanup,
    jobStatus,
  });
  const min = Number(values['min-sec']);
  const max = Number(values['max-sec']);
  const jobs = Number(values.jobs);
  let i = 0;
  for (; i < jobs; i++) cluster.submit(i + 1, min + Math.random() * (max - min)).id = i + 1;
  await cluster.wait(); // alternately, jobStatus above can decide when to call resetupNode
  // resetupNode on the nodes: each processes its next file.
  for (const ipAddr of [...nodes.keys()]) await cluster.resetupNode(ipAddr);
  for (; i < 2 * jobs; i++) cluster.submit(i + 1, min + Math.random() * (max - min)).id = i + 1;
  await cluster.wait();
  cluster.printStatus();
  await cluster.close();
  console.log(`${matched} of ${checked} digests match`);
} finally {
  await where.stop();
}
