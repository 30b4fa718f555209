/**
 * Client of the multi-host throughput benchmark (bench/multi-host.ts). Runs inside a network
 * namespace of the harness (test/netns/harness.ts):
 *   ip netns exec NS node --import tsx bench/netns-throughput-client.ts '<json config>'
 *
 * Config: { secret, targets: { <mode>: [{ host, port }] }, schedule: [{ mode, run }], jobs, warmup,
 *           readyTimeoutMs, warmupTimeoutSec, batchTimeoutSec, maxSeconds }.
 * For each schedule entry, in order: a fresh JobCluster of `(x) => x * 2` over that mode's nodes,
 * waits until every one of them is set up, runs `warmup` untimed jobs, prints
 *   { phase: 'timed', mode, run }
 * then submits `jobs` jobs at once, waits for all, checks every result and prints
 *   { phase: 'result', mode, run, nodesReadyMs, wallMs, jobsPerSec, perNode: { ip: jobs }, clientCpuMs }
 * and closes the cluster. Ends with { phase: 'done' }. Any failure prints { fatal } and exits 1.
 * Bounded: every wait has a time-out, and the whole program one of `maxSeconds`.
 */
import { JobCluster, JobStatus } from '../src/index.js';
import { double } from './double.js';

interface Target {
  host: string;
  port: number;
}

interface Config {
  secret: string;
  targets: Record<string, Target[]>;
  schedule: { mode: string; run: number }[];
  jobs: number;
  warmup: number;
  readyTimeoutMs: number;
  warmupTimeoutSec: number;
  batchTimeoutSec: number;
  maxSeconds: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as Config;
const out = (v: unknown): void => void process.stdout.write(`${JSON.stringify(v)}\n`);

setTimeout(() => {
  out({ fatal: `client exceeded its time bound of ${cfg.maxSeconds} s` });
  process.exit(1);
}, cfg.maxSeconds * 1000).unref();

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

async function waitForNodes(cluster: JobCluster<typeof double>, want: number, timeoutMs: number): Promise<void> {
  const start = performance.now();
  while (cluster.status().nodes.length < want) {
    if (performance.now() - start > timeoutMs)
      throw new Error(`only ${cluster.status().nodes.length} of ${want} nodes set up after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Submits `count` jobs at once, waits for all, checks them; returns the jobs per node address. */
async function batch(cluster: JobCluster<typeof double>, count: number, timeoutSec: number, base: number): Promise<Record<string, number>> {
  const jobs = new Array<ReturnType<typeof cluster.submit>>(count);
  for (let i = 0; i < count; i++) jobs[i] = cluster.submit(base + i);
  const idle = await cluster.wait(timeoutSec);
  if (!idle) throw new Error(`${count} jobs not done in ${timeoutSec} s (pending ${cluster.status().jobsPending})`);
  const perNode: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const j = jobs[i]!;
    if (j.status !== JobStatus.Finished || j.result !== (base + i) * 2) {
      throw new Error(`job ${i}: status ${j.status}, result ${String(j.result)}, exception ${String(j.exception)}`);
    }
    const ip = j.ipAddr ?? 'unknown';
    perNode[ip] = (perNode[ip] ?? 0) + 1;
  }
  return perNode;
}

async function runOnce(mode: string, run: number): Promise<void> {
  const targets = cfg.targets[mode];
  if (!targets?.length) throw new Error(`no targets for mode ${mode}`);
  let cluster: JobCluster<typeof double> | null = null;
  try {
    const t0 = performance.now();
    cluster = new JobCluster<typeof double>(double, { nodes: targets, secret: cfg.secret });
    cluster.on('error', (err) => {
      out({ fatal: `unexpected error event ${err.code}: ${err.message}` });
      process.exit(1);
    });
    // Short jobs would all go to whichever node is set up first: wait for every one.
    await waitForNodes(cluster, targets.length, cfg.readyTimeoutMs);
    const nodesReadyMs = performance.now() - t0;
    await batch(cluster, cfg.warmup, cfg.warmupTimeoutSec, 1_000_000);
    out({ phase: 'timed', mode, run });
    const cpu0 = process.cpuUsage();
    const s = performance.now();
    const perNode = await batch(cluster, cfg.jobs, cfg.batchTimeoutSec, 0);
    const wallMs = performance.now() - s;
    const cpu = process.cpuUsage(cpu0);
    out({
      phase: 'result',
      mode,
      run,
      nodesReadyMs: round(nodesReadyMs),
      wallMs: round(wallMs),
      jobsPerSec: Math.round(cfg.jobs / (wallMs / 1000)),
      perNode,
      clientCpuMs: Math.round((cpu.user + cpu.system) / 1000),
    });
  } finally {
    if (cluster && !cluster.closed) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([cluster.close({ timeout: 5, terminate: true }), new Promise<void>((r) => (timer = setTimeout(r, 15_000)))]);
      clearTimeout(timer);
    }
  }
}

async function main(): Promise<void> {
  for (const { mode, run } of cfg.schedule) await runOnce(mode, run);
  out({ phase: 'done' });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    out({ fatal: String((err as Error)?.stack ?? err) });
    process.exit(1);
  },
);
