/**
 * dispy's longrun.py, ported: jobs search for a value close to 1 until they are cancelled,
 * sending their best so far as provisional results. The client cancels every job when the user
 * types "quit" (or presses Ctrl-C), or when a provisional result is close enough; the cancel is
 * polite (a grace of 5 s): each job sees its `dispyAbortSignal` fire, where dispy's job
 * catches KeyboardInterrupt, and returns its best value, ending Finished.
 *
 *   npm run build:js && node --import tsx examples/longrun.ts
 *
 * Options: --run-sec S (quit by itself S seconds after every job sent a first provisional
 * result; default: wait for "quit"),
 * --step-sec S (one search step; default 2), --update-sec S (between provisional results;
 * default 10), and those of examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret).
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { DispyJob, DispyNode, JobCluster, NodeAllocate, type AvailInfo } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

declare const dispyAbortSignal: AbortSignal;
declare function dispyProvisionalResult(value: unknown): void;

// Runs until cancelled and returns its best value then.
async function compute(stepSec: number, updateSec: number): Promise<number> {
  let best = 0;
  let updated = 0; // when the last provisional result went to the client
  // When the job is cancelled with a grace, its abort signal fires and it has that long to
  // return; in dispy a KeyboardInterrupt is raised in the job.
  while (!dispyAbortSignal.aborted) {
    const v = Math.random();
    if (v > best) {
      best = v;
      // Alternately, save the current state in a file and send it (dispySendFile) to resume later.
      if (Date.now() - updated > updateSec * 1000) {
        dispyProvisionalResult(best);
        updated = Date.now();
      }
    }
    // Simulate computation; the signal ends the wait early.
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        dispyAbortSignal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, stepSec * 1000);
      dispyAbortSignal.addEventListener('abort', done);
    });
  }
  return best;
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    'run-sec': { type: 'string' },
    'step-sec': { type: 'string', default: '2' },
    'update-sec': { type: 'string', default: '10' },
  },
});

// Although not required here, NodeAllocate is used to allocate at most 2 CPUs per node.
class LongrunAllocate extends NodeAllocate {
  override allocate(
    cluster: unknown,
    ipAddr: string,
    name: string,
    cpus: number,
    availInfo: AvailInfo | null = null,
    platform = '',
  ): number {
    console.log(`Allocate node for ${(cluster as JobCluster).name}: ${ipAddr} / ${name} / ${cpus}`);
    return Math.min(super.allocate(cluster, ipAddr, name, cpus, availInfo, platform), 2);
  }
}

const where = await exampleNodes(values);
const jobs = new Set<DispyJob<number>>();
let quit: () => void = () => undefined;
let quitted = false;
const quitting = new Promise<void>((resolve) => {
  quit = () => {
    quitted = true;
    resolve();
  };
});
/** For --run-sec: the nodes initialized and the jobs that reported so far. */
let initialized = 0;
const reported = new Set<DispyJob>();
let timer: NodeJS.Timeout | null = null;
try {
  const stepSec = Number(values['step-sec']);
  const updateSec = Number(values['update-sec']);
  const cluster: JobCluster<typeof compute> = new JobCluster(compute, {
    nodes: where.nodes.map(({ host, port }) => new LongrunAllocate(host, port)),
    secret: where.secret,
    cancelGrace: 5, // dispy terminates a cancelled job about 5 s after its KeyboardInterrupt
    clusterStatus(status, node, job) {
      if (status === DispyJob.ProvisionalResult && job) {
        if (1 - (job.result as number) < 1e-2) quit(); // enough accuracy, quit
        reported.add(job);
        const all = initialized === where.nodes.length && [...jobs].every((j) => reported.has(j));
        if (all && values['run-sec'] !== undefined && !timer) timer = setTimeout(quit, Number(values['run-sec']) * 1000);
      } else if (status === DispyNode.Initialized && node) {
        if (quitted) return;
        console.log(`node ${node.ipAddr} initialized with ${node.cpus} cpus`);
        initialized++;
        // Submit jobs on this node.
        for (let i = 0; i < node.cpus; i++) jobs.add(cluster.submitNode(node, stepSec, updateSec));
      } else if (status === DispyJob.Abandoned && job) {
        console.log(`${job.ipAddr} failed: ${job.exception}`);
        jobs.delete(job as DispyJob<number>);
      }
    },
  });
  const rl = createInterface({ input: process.stdin });
  if (values['run-sec'] === undefined) console.log('Enter "quit" or "exit" or Ctrl-C to terminate: ');
  rl.on('line', (line) => {
    if (['quit', 'exit'].includes(line.trim().toLowerCase())) quit();
  });
  rl.on('SIGINT', quit);
  process.once('SIGINT', quit);
  await quitting;
  if (timer) clearTimeout(timer);
  rl.close();

  // Cancel the jobs: each returns its best value within the grace.
  await Promise.all([...jobs].map((job) => cluster.cancel(job)));
  let best = 0;
  for (const job of jobs) {
    const result = await job.wait().catch(() => null);
    if (job.status === DispyJob.Finished && result !== null) {
      console.log(`job at ${job.ipAddr} computed ${result}`);
      if (result > best) best = result;
    } else console.log(`job at ${job.ipAddr} ended ${job.status}: ${job.exception}`);
  }
  console.log(`best estimate: ${best}`);
  cluster.printStatus();
  await cluster.close();
} finally {
  await where.stop();
}
