/**
 * A fresh client program for bench/fresh.ts: plain JavaScript on dist/ (what a user's program
 * runs; no TypeScript loader), started once per sample. Its imports are static, so they are all
 * loaded and evaluated before any timing starts. Prints one JSON line per event and exits.
 *   node bench/fresh-client.mjs '{"mode":...,"host":...,"port":...,"secret":...}'
 * Modes:
 *   first       new JobCluster -> the first result of one job `x => x * 2` (then closes the cluster)
 *   connect     connectChannel alone: TCP connect + authenticated handshake to bench/echo-server.ts
 *   latency     `warmup` then `jobs` sequential submit-and-wait jobs on one new cluster (samples in ms)
 *   throughput  `jobs` jobs submitted right after new JobCluster (no warm-up), timed to the last result
 * Every line carries `sinceStartMs`: performance.now() when timing began, i.e. the time from the
 * process's start (its time origin) through the imports to the timed part (not timed itself).
 * It dies with its parent (the bench).
 */
import { randomBytes } from 'node:crypto';
import { JobCluster, JobStatus } from '../dist/index.js';
import { connectChannel } from '../dist/protocol/channel.js';
import { nodeMessageSchema } from '../dist/protocol/messages.js';
import { resolveSecret } from '../dist/protocol/secret.js';
import { exitWithParent } from './exit-with-parent.mjs';

const cfg = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const MAX_MS = 120_000;

exitWithParent();

const double = (x) => x * 2;

function checkDeadline(start, what) {
  if (performance.now() - start > MAX_MS) throw new Error(`${what}: exceeded its time bound of ${MAX_MS} ms`);
}

function newCluster() {
  const cluster = new JobCluster(double, { nodes: [{ host: cfg.host, port: cfg.port }], secret: cfg.secret });
  cluster.on('error', (err) => process.stderr.write(`fresh-client: cluster error ${err.code}: ${err.message}\n`));
  return cluster;
}

async function first() {
  const t0 = performance.now();
  const cluster = newCluster();
  const r = await cluster.submit(21).wait();
  const ms = performance.now() - t0;
  if (r !== 42) throw new Error(`first job: wrong result ${String(r)}`);
  out({ event: 'result', ms, sinceStartMs: t0 });
  await cluster.close();
}

async function connect() {
  const t0 = performance.now();
  const ch = await connectChannel({
    host: cfg.host,
    port: cfg.port,
    secret: resolveSecret(cfg.secret),
    clientId: randomBytes(12).toString('hex'),
    schema: nodeMessageSchema,
  });
  const ms = performance.now() - t0;
  if (!ch.authenticated) throw new Error('channel not authenticated');
  out({ event: 'result', ms, sinceStartMs: t0 });
  ch.close();
}

async function latency() {
  const t0 = performance.now();
  const cluster = newCluster();
  const start = performance.now();
  while (cluster.status().nodes.length === 0) {
    checkDeadline(start, 'waiting for the node');
    await new Promise((r) => setTimeout(r, 2));
  }
  for (let i = 0; i < cfg.warmup; i++) {
    if ((await cluster.submit(i).wait()) !== i * 2) throw new Error(`warm-up job ${i}: wrong result`);
    checkDeadline(start, 'latency warm-up');
  }
  const samplesMs = new Array(cfg.jobs);
  const t1 = performance.now();
  for (let i = 0; i < cfg.jobs; i++) {
    const s = performance.now();
    const r = await cluster.submit(i).wait();
    samplesMs[i] = performance.now() - s;
    if (r !== i * 2) throw new Error(`job ${i}: wrong result ${String(r)}`);
    checkDeadline(t1, 'latency jobs');
  }
  out({ event: 'result', samplesMs, sinceStartMs: t0 });
  await cluster.close();
}

async function throughput() {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const cluster = newCluster();
  const jobs = new Array(cfg.jobs);
  for (let i = 0; i < cfg.jobs; i++) jobs[i] = cluster.submit(i);
  let firstResultMs = null;
  jobs[0].wait().then(
    () => (firstResultMs = performance.now() - t0),
    () => undefined,
  );
  const idle = await cluster.wait(MAX_MS / 1000);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (!idle) throw new Error(`${cfg.jobs} jobs not done in ${MAX_MS} ms`);
  for (let i = 0; i < cfg.jobs; i++) {
    const j = jobs[i];
    if (j.status !== JobStatus.Finished || j.result !== i * 2) throw new Error(`job ${i}: status ${j.status}, result ${String(j.result)}`);
  }
  out({ event: 'result', wallMs, firstResultMs, clientCpuMs: (cpu.user + cpu.system) / 1000, sinceStartMs: t0 });
  await cluster.close();
}

const modes = { first, connect, latency, throughput };

if (!Object.hasOwn(modes, cfg.mode)) {
  out({ event: 'fatal', message: `unknown mode ${cfg.mode}` });
  process.exit(2);
}
modes[cfg.mode]().then(
  () => process.exit(0),
  (err) => {
    out({ event: 'fatal', message: err.message, code: err.code });
    process.exit(1);
  },
);
