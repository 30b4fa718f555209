/**
 * dispy's obj_instances.py, ported: instances of a local class are the jobs' arguments and
 * results. The class travels in `depends`, so on the node an argument is a real `C` again (its
 * methods work) and the `C` that comes back is one here. Maps, Dates, BigInts, typed arrays and
 * cycles travel as they are.
 *
 *   npm run build:js && node --import tsx examples/object-instances.ts
 *
 * Options: --jobs N (default 6), --max-sec S (longest job; default 2), and those of
 * examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret).
 */
import { parseArgs } from 'node:util';
import { JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

class C {
  i: number;
  n: number;
  /** The nodes the object visited, with the time of each visit. */
  visits: Map<string, Date>;
  constructor(i: number, n: number) {
    this.i = i;
    this.n = n;
    this.visits = new Map();
  }
  show(): string {
    return `${this.i}: ${this.n.toFixed(2)}`;
  }
}

declare const dispyNodeName: string;

async function compute(obj: C): Promise<C> {
  // obj is an instance of C: its methods work here.
  await new Promise((resolve) => setTimeout(resolve, obj.n * 1000));
  console.log(obj.show()); // captured in job.stdout
  obj.n = 10 * obj.n;
  obj.visits.set(dispyNodeName, new Date());
  return obj;
}

const { values } = parseArgs({
  options: { ...NODE_OPTIONS, jobs: { type: 'string', default: '6' }, 'max-sec': { type: 'string', default: '2' } },
});
const where = await exampleNodes(values);
try {
  const cluster = new JobCluster(compute, { depends: [C], nodes: where.nodes, secret: where.secret });
  const jobs = [];
  for (let i = 0; i < Number(values.jobs); i++) {
    const c = new C(i, Math.round(Math.random() * Number(values['max-sec']) * 100) / 100);
    const job = cluster.submit(c);
    job.id = i;
    jobs.push({ job, sent: c });
  }
  for (const { job, sent } of jobs) {
    const result = await job.wait();
    const [node, when] = [...result.visits][0]!;
    console.log(
      `job ${String(job.id)}: stdout: ${job.stdout.trim()}, result: ${result.show()}, a C: ${result instanceof C},`,
      `n x 10: ${Math.abs(result.n - 10 * sent.n) < 1e-9}, visited ${node!} at a Date: ${when instanceof Date}`,
    );
  }
  await cluster.close();
} finally {
  await where.stop();
}
