/**
 * dispy's node_update.py, ported: runs a program once on every node (to install or update
 * software there), not once per CPU. A `clusterStatus` callback submits one job to each node as
 * it is initialized (`submitNode`); the program is examples/programs/node-update-script.mjs
 * (dispy's node_update_script.py), a script run with the node's Node.js, or one you name.
 *
 *   npm run build:js && node --import tsx examples/node-update.ts [--script PATH] [--num-nodes N]
 *
 * Options: --script PATH (default the script above; a .py script runs with ['python3', PATH]),
 * --num-nodes N (wait for N nodes; default all of --hosts), --min-sec / --max-sec (what the
 * script sleeps; default 2 and 4), and those of examples/local-nodes.ts.
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DispyJob, DispyNode, JobCluster, type DispyStatus } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    script: { type: 'string', default: fileURLToPath(new URL('./programs/node-update-script.mjs', import.meta.url)) },
    'num-nodes': { type: 'string' },
    'min-sec': { type: 'string', default: '2' },
    'max-sec': { type: 'string', default: '4' },
  },
});
const script = values.script;
if (!existsSync(script)) throw new Error(`no such script: ${script}`);

const where = await exampleNodes(values);
const numNodes = Number(values['num-nodes'] ?? where.nodes.length);
type Program = (...args: unknown[]) => number;
const nodes = new Set<string>();
let cluster: JobCluster<Program> | null = null;
const submitted: DispyJob[] = [];

// Called by the cluster as nodes and jobs change state.
function clusterStatus(status: DispyStatus, node: DispyNode | null, job: DispyJob | null): void {
  if (status === DispyNode.Initialized && node) {
    console.log(`Node ${node.ipAddr} with ${node.availCpus} CPUs available`);
    nodes.add(node.ipAddr);
    submitted.push(cluster!.submitNode(node, values['min-sec'], values['max-sec']));
  } else if (status === DispyJob.Finished && job) {
    if (job.stderr || job.exception) console.log(`Node ${job.ipAddr} failed: ${job.stderr} / ${job.exception}`);
    else console.log(`Node ${job.ipAddr} finished with ${job.stdout.trim()}`);
  } else if (status === DispyJob.Terminated && job) {
    console.log(`Node ${job.ipAddr} failed: ${job.stderr}${job.exception ?? ''}`);
  }
}

try {
  // A .py script needs its interpreter named; a .mjs/.js one runs with Node.js by default.
  const computation = extname(script) === '.py' ? ['python3', script] : script;
  cluster = new JobCluster<Program>(computation, { nodes: where.nodes, secret: where.secret, clusterStatus });
  // Wait for the nodes to be set up, looking for them again meanwhile (dispy: discover_nodes).
  for (let tries = 0; nodes.size < numNodes && tries < 60; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (nodes.size < numNodes) await cluster.discoverNodes(where.nodes);
  }
  // Jobs were submitted from the callback: wait until each has ended.
  await Promise.allSettled(submitted.map((j) => j.wait()));
  await cluster.wait();
  await cluster.close();
  cluster.printStatus();
} finally {
  await where.stop();
}
