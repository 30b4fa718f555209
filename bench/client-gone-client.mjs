/**
 * A client program for bench/client-gone.ts: plain JavaScript on dist/ (what a user's program
 * runs), default cluster options. Prints one JSON line per event.
 *   node bench/client-gone-client.mjs '{"mode":"victim"|"next","nodes":[{"host":...,"port":...}],"secret":...}'
 * Modes:
 *   victim  one 60 s job per node; prints `running` once every job runs, then waits (the bench
 *           interrupts it with SIGINT, as Ctrl-C does)
 *   next    the program run again: prints `initialized` with the time (ms since epoch) each node
 *           was set up for it, and `result` once a job pinned to each node returned; then closes
 * It dies with its parent (the bench) and gives up after 5 minutes.
 */
import { JobCluster, JobStatus } from '../dist/index.js';
import { exitWithParent } from './exit-with-parent.mjs';

const cfg = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

exitWithParent();
setTimeout(() => process.exit(4), 300_000).unref();

async function sleepJob(s) {
  await new Promise((r) => setTimeout(r, s * 1000));
  return s;
}

async function victim() {
  let running = 0;
  const cluster = new JobCluster(sleepJob, {
    nodes: cfg.nodes,
    secret: cfg.secret,
    clusterStatus: (status) => {
      if (status === JobStatus.Running && ++running === cfg.nodes.length) out({ event: 'running', at: Date.now() });
    },
  });
  const jobs = cfg.nodes.map(() => cluster.submit(60));
  await Promise.all(jobs.map((j) => j.wait()));
  out({ event: 'finished' });
  await cluster.close();
}

async function next() {
  const start = Date.now();
  const cluster = new JobCluster((x) => x * 2, {
    nodes: cfg.nodes,
    secret: cfg.secret,
    clusterStatus: (status, node) => {
      if (status === 4 && node) out({ event: 'initialized', ip: node.ipAddr, at: Date.now() });
    },
  });
  cluster.on('error', (err) => process.stderr.write(`client-gone-client: ${err.code}: ${err.message}\n`));
  const results = await Promise.all(cfg.nodes.map((n, i) => cluster.submitNode(n.host, i).wait()));
  out({ event: 'result', at: Date.now(), results, start });
  await cluster.close();
}

await (cfg.mode === 'victim' ? victim() : next());
