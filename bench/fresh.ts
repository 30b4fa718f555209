/**
 * What a user's program lives: each sample is a fresh client process (bench/fresh-client.mjs, plain
 * node on dist/, its imports loaded before timing starts), reporting its own timings.
 *   newProgram      new JobCluster -> first result of one trivial job, against a daemon that has
 *                   served nobody (a fresh one per sample) and against one that served another
 *                   program just before; beside a bare Channel connect + handshake from a fresh
 *                   process to the echo server
 *   latencyCold     sequential submit-and-wait after a short warm-up, in a fresh process
 *   throughputCold  trivial jobs submitted right after new JobCluster, no warm-up, in a fresh process
 */
import { join } from 'node:path';
import { startEchoServer, type EchoServer } from './baseline.js';
import {
  BENCH_SECRET,
  ROOT,
  log,
  median,
  round,
  sleep,
  spawnTracked,
  startNode,
  stopChild,
  summarize,
  type BenchNode,
  type Summary,
} from './lib.js';

const FRESH_CLIENT = join(ROOT, 'bench', 'fresh-client.mjs');

/** The result line of a fresh client; `sinceStartMs`: process start (time origin) to timing. */
interface ResultLine {
  event: 'result';
  sinceStartMs: number;
  ms?: number;
  samplesMs?: number[];
  wallMs?: number;
  firstResultMs?: number | null;
  clientCpuMs?: number;
}

/** Runs one fresh client program to its exit; resolves with its result line. */
function runFreshClient(config: Record<string, unknown>, timeoutMs: number): Promise<ResultLine> {
  const proc = spawnTracked([FRESH_CLIENT, JSON.stringify({ secret: BENCH_SECRET, ...config })]);
  let stderr = '';
  let stdout = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-10_000);
  });
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`fresh client ${String(config.mode)}: not done in ${timeoutMs} ms: ${stderr}`));
      stopChild(proc, 1000).catch(() => undefined);
    }, timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      const lines = stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { event: string });
      const result = lines.find((l) => l.event === 'result') as ResultLine | undefined;
      if (code === 0 && result) resolve(result);
      else
        reject(new Error(`fresh client ${String(config.mode)} exited (code ${code}, signal ${signal}): ${stdout.slice(-2000)} ${stderr}`));
    });
  });
}

const ms = (v: number | undefined): number => round(v ?? NaN, 2);

export interface FreshSample {
  /** new JobCluster (or connectChannel) -> first result (or authenticated channel). */
  ms: number;
  /** Process start to the start of timing (node's bootstrap and the imports), untimed. */
  sinceStartMs: number;
}

export interface NewProgramSeries {
  host: string;
  samples: FreshSample[];
  runsMs: number[];
  medianMs: number;
}

export interface NewProgramResult {
  repetitions: number;
  job: string;
  servedNobody: NewProgramSeries & { settleMs: number };
  servedBefore: NewProgramSeries & { primingRunsMs: number[] };
  bareConnect: NewProgramSeries & { peer: string };
  ratioToBareConnect: { servedNobody: number; servedBefore: number };
  note: string;
}

function series<T extends object>(host: string, samples: FreshSample[], extra: T): NewProgramSeries & T {
  const runsMs = samples.map((s) => s.ms);
  return { host, samples, runsMs, medianMs: round(median(runsMs), 2), ...extra };
}

/**
 * U: each repetition takes one sample of each kind in turn (bare connect, a daemon that served
 * nobody, a daemon that served another program), so the three see the same machine noise.
 */
export async function runNewProgram(opts: {
  repetitions: number;
  nobodyHost: string;
  servedHost: string;
  echoHost: string;
  cpus: number;
  /** Idle time given a daemon after its ready line before the program starts. */
  settleMs: number;
}): Promise<NewProgramResult> {
  const first = async (node: { host: string; port: number }): Promise<FreshSample> => {
    const r = await runFreshClient({ mode: 'first', host: node.host, port: node.port }, 30_000);
    return { ms: ms(r.ms), sinceStartMs: ms(r.sinceStartMs) };
  };
  let echo: EchoServer | null = null;
  let served: BenchNode | null = null;
  try {
    echo = await startEchoServer(opts.echoHost);
    // Untimed: the echo server's own accept path runs once before the samples.
    await runFreshClient({ mode: 'connect', host: echo.host, port: echo.port }, 30_000);
    served = await startNode({ host: opts.servedHost, cpus: opts.cpus });
    await sleep(opts.settleMs);
    const connect: FreshSample[] = [];
    const nobody: FreshSample[] = [];
    const before: FreshSample[] = [];
    const priming: number[] = [];
    for (let i = 0; i < opts.repetitions; i++) {
      const c = await runFreshClient({ mode: 'connect', host: echo.host, port: echo.port }, 30_000);
      connect.push({ ms: ms(c.ms), sinceStartMs: ms(c.sinceStartMs) });
      let fresh: BenchNode | null = null;
      try {
        fresh = await startNode({ host: opts.nobodyHost, cpus: opts.cpus });
        await sleep(opts.settleMs);
        nobody.push(await first(fresh));
      } finally {
        await fresh?.stop();
      }
      // Another program first (it closes its cluster and exits), then the timed one.
      priming.push((await first(served)).ms);
      before.push(await first(served));
      log(
        `newProgram ${i + 1}: bare connect ${connect[i]!.ms} ms, served nobody ${nobody[i]!.ms} ms, served before ${before[i]!.ms} ms (priming program ${priming[i]} ms)`,
      );
    }
    const bare = series(echo.host, connect, { peer: 'bench/echo-server.ts (its accept path run once before, untimed)' });
    const n = series(opts.nobodyHost, nobody, { settleMs: opts.settleMs });
    const b = series(opts.servedHost, before, { primingRunsMs: priming });
    return {
      repetitions: opts.repetitions,
      job: 'x => x * 2',
      servedNobody: n,
      servedBefore: b,
      bareConnect: bare,
      ratioToBareConnect: { servedNobody: round(n.medianMs / bare.medianMs, 2), servedBefore: round(b.medianMs / bare.medianMs, 2) },
      note:
        'each sample a fresh process: plain node on bench/fresh-client.mjs (dist/), static imports loaded before timing (sinceStartMs: process start to timing, untimed). ' +
        'U = new JobCluster -> first result of one job; bare connect = connectChannel alone (TCP connect + authenticated handshake). ' +
        `servedNobody: a new \`dispyts node --cpus ${opts.cpus}\` per sample, idle ${opts.settleMs} ms after its ready line; ` +
        'servedBefore: one daemon, each sample preceded by another fresh program that got its first result, closed its cluster and exited',
    };
  } finally {
    await served?.stop();
    await echo?.stop();
  }
}

export interface LatencyColdResult extends Summary {
  jobs: number;
  warmup: number;
  sinceStartMs: number;
}

/** L cold: `warmup` then `jobs` sequential submit-and-wait jobs in a fresh client process. */
export async function runLatencyCold(node: BenchNode, opts: { jobs: number; warmup: number }): Promise<LatencyColdResult> {
  const r = await runFreshClient({ mode: 'latency', host: node.host, port: node.port, jobs: opts.jobs, warmup: opts.warmup }, 150_000);
  const samples = r.samplesMs ?? [];
  if (samples.length !== opts.jobs) throw new Error(`latencyCold: ${samples.length} samples, wanted ${opts.jobs}`);
  const sum = summarize(samples);
  log(`latencyCold: p50 ${sum.p50Ms} ms, p95 ${sum.p95Ms} ms (fresh process, ${opts.warmup} warm-up jobs)`);
  return { jobs: opts.jobs, warmup: opts.warmup, ...sum, sinceStartMs: ms(r.sinceStartMs) };
}

export interface ThroughputColdRun {
  /** new JobCluster (all jobs submitted right after it) -> last result. */
  wallMs: number;
  jobsPerSec: number;
  /** new JobCluster -> first result (connection and setup included). */
  firstResultMs: number | null;
  clientCpuMs: number;
  sinceStartMs: number;
}

export interface ThroughputColdResult {
  jobs: number;
  runs: ThroughputColdRun[];
  medianJobsPerSec: number;
}

/** T cold: `jobs` trivial jobs, no warm-up batch, each run a fresh client process. */
export async function runThroughputCold(node: BenchNode, opts: { jobs: number; runs: number }): Promise<ThroughputColdResult> {
  const runs: ThroughputColdRun[] = [];
  for (let i = 0; i < opts.runs; i++) {
    const r = await runFreshClient({ mode: 'throughput', host: node.host, port: node.port, jobs: opts.jobs }, 150_000);
    const wallMs = r.wallMs ?? NaN;
    const run = {
      wallMs: round(wallMs, 1),
      jobsPerSec: round(opts.jobs / (wallMs / 1000), 0),
      firstResultMs: r.firstResultMs === null || r.firstResultMs === undefined ? null : ms(r.firstResultMs),
      clientCpuMs: round(r.clientCpuMs ?? NaN, 0),
      sinceStartMs: ms(r.sinceStartMs),
    };
    log(`throughputCold run ${i + 1}: ${run.jobsPerSec} jobs/s (${run.wallMs} ms, first result at ${run.firstResultMs} ms)`);
    runs.push(run);
  }
  return { jobs: opts.jobs, runs, medianJobsPerSec: round(median(runs.map((r) => r.jobsPerSec)), 0) };
}
