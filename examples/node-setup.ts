/**
 * dispy's node_setup.py, ported: a NodeAllocate subclass gives each node its own data file
 * (sent before setup) and setup arguments; `setup` runs once in each job runner of a node and
 * loads the file into a global that every job there reads; `cleanup` drops it when the
 * computation closes. Each job digests the node's data with one hash algorithm, and the client
 * checks the digest against its own copy of that node's data.
 *
 *   npm run build:js && node --import tsx examples/node-setup.ts
 *
 * Options: --jobs N (default 8), --size BYTES (data per node; default 1000000), and those of
 * examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { JobCluster, NodeAllocate, type AvailInfo } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

/** What `setup` leaves in each job runner for the jobs (a global, as in dispy). */
declare const nodeData: { bytes: Buffer; file: string };

// Runs once in each job runner of a node, before its first job, with the node's setupArgs. The
// file came with the NodeAllocate's depends into the computation's directory (the working
// directory of setup and of jobs). Throwing here would close the computation on that node.
function setup(file: string): void {
  const { readFileSync } = require('node:fs') as typeof import('node:fs');
  (globalThis as Record<string, unknown>).nodeData = { bytes: readFileSync(file), file };
}

// Runs in each of those runners when the computation closes.
function cleanup(): void {
  delete (globalThis as Record<string, unknown>).nodeData;
}

function compute(i: number): { alg: string; file: string; digest: string } {
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const algorithms = ['md5', 'sha1', 'sha256', 'sha512'];
  const alg = algorithms[i % algorithms.length]!;
  return { alg, file: nodeData.file, digest: createHash(alg).update(nodeData.bytes).digest('hex') };
}

/** One per node: its data file goes in `depends`, its name in `setupArgs`. */
class DataAllocate extends NodeAllocate {
  readonly data: Buffer;
  constructor(host: string, port: number, dataFile: string, data: Buffer) {
    super(host, port, 0, { depends: [dataFile], setupArgs: [basename(dataFile)] });
    this.data = data;
  }
  // Asked once the node answered: the CPUs to use there (0 or less: skip the node). The node's
  // name, CPUs, resources and platform are known here; a spec may change its depends and
  // setupArgs for the node before they are sent.
  override allocate(
    cluster: unknown,
    ipAddr: string,
    name: string,
    cpus: number,
    availInfo: AvailInfo | null = null,
    platform = '',
  ): number {
    const use = super.allocate(cluster, ipAddr, name, cpus, availInfo, platform);
    console.log(
      `node ${ipAddr} (${name}, ${platform}) offers ${cpus} of its CPUs, ${availInfo ? `${(availInfo.memory / 2 ** 20).toFixed(0)} MiB free` : 'resources unknown'}; using ${use}`,
    );
    return use;
  }
}

const { values } = parseArgs({
  options: { ...NODE_OPTIONS, jobs: { type: 'string', default: '8' }, size: { type: 'string', default: '1000000' } },
});
const where = await exampleNodes(values);
const dir = mkdtempSync(join(tmpdir(), 'dispyts-node-setup-'));
try {
  const specs = where.nodes.map(({ host, port }, k) => {
    const data = randomBytes(Number(values.size));
    const file = join(dir, `data-${k}.bin`);
    writeFileSync(file, data);
    return new DataAllocate(host, port, file, data);
  });
  const cluster = new JobCluster(compute, { nodes: specs, secret: where.secret, setup, cleanup });
  const jobs = Array.from({ length: Number(values.jobs) }, (_, i) => cluster.submit(i));
  let ok = 0;
  for (const job of jobs) {
    const { alg, file, digest } = await job.wait();
    const spec = specs.find((s) => s.host === job.ipAddr)!;
    const expected = createHash(alg).update(spec.data).digest('hex');
    if (digest === expected && file === spec.setupArgs[0]) ok++;
    console.log(
      `job ${String(job.id)} on ${job.ipAddr}: ${alg} of ${file} = ${digest.slice(0, 16)}... ${digest === expected ? 'matches' : 'DIFFERS from'} the client's copy`,
    );
  }
  console.log(`${ok} of ${jobs.length} digests match`);
  await cluster.close(); // cleanup runs on every node before this resolves
} finally {
  await where.stop();
  rmSync(dir, { recursive: true, force: true });
}
