/**
 * dispyts benchmark: prints one JSON document on stdout (progress on stderr) with
 *   baseline    (e) bare authenticated-Channel round trips to a child process
 *   pipelined   20,000 pings in flight on one authenticated Channel (all at once, and a window of 256),
 *               messages/s: what the wire carries, beside the baseline's sequential round trips/s
 *   throughput  (a) 20,000 trivial jobs on one `--cpus 2` node, 3 runs, vs bare round trips/s
 *   throughputCold  20,000 trivial jobs from a fresh client process, no warm-up batch, 3 runs (each a
 *               new process) on the running node, beside the warm figure (throughput), as ratios to
 *               bare round trips/s and fractions of the pipelined messages/s
 *   moduleThroughput  the same from a module computation (bench/double.ts bundled by esbuild)
 *   programThroughput 2,000 jobs of a trivial shell script (a process spawned per job)
 *   isolateThroughput 200 trivial jobs with `isolate: 'job'` (a fresh runner process per job), beside the
 *               throughput section's figure (runners shared by the program's jobs)
 *   latency     (b) 500 sequential submit-and-wait jobs, vs the bare round-trip p50
 *   latencyCold 500 sequential submit-and-wait jobs after only 200 warm-up jobs, in a fresh client
 *               process, beside latency's figure (3,000 warm-up jobs), both vs the bare round-trip p50
 *   sleep       (c) 200 jobs sleeping 100 ms on 2 CPUs, efficiency vs the ideal 10 s
 *   startup     (d) new JobCluster -> first result, warm daemon and cold daemon start
 *   newProgram  (U) a fresh client process (plain node on dist/, imports before timing): new JobCluster ->
 *               first result of one trivial job, 5 samples against a daemon that served nobody (a new
 *               one each) and 5 against one that served another program just before; beside a bare
 *               connectChannel (connect + handshake) from a fresh process, as ratioToBareConnect
 *   clientGone  a program interrupted (SIGINT, as Ctrl-C) mid-job on two `--cpus 1` nodes with default
 *               options, run again at once: ms until both nodes serve it, 3 runs (bench/client-gone.ts)
 *   multiHost   20,000 trivial jobs across 3 hosts (`--cpus 1` each) on the network-namespace harness
 *               (test/netns/harness.ts), client on a 4th host, 3 runs; beside the same client against
 *               one of those nodes, and the throughput section's loopback figure when it ran too
 *               ({ skipped: reason } where namespaces cannot be created; needs root)
 *   httpd       DispyHTTPServer with 1,000 nodes and 10,000 running jobs fed through real events:
 *               /cluster_status p50 and bytes vs JSON.stringify, a 10-node ?since= delta, SSE to 50 viewers
 *   ui          the Monitor page in Chromium (bench/ui.ts): first paint of 1,000 nodes, script time per
 *               SSE delta when 10% of them change each second
 *   scheduler   20,000 trivial jobs through `dispyts scheduler` from two client programs (SharedJobCluster,
 *               one process each, submitted at once) to one `--cpus 2` node, 3 runs, beside the direct
 *               JobCluster figure of this run (the throughput section's median) and their ratio
 *   soak        one million jobs with at most 2,000 pending, client heap sampled (only with --soak)
 *   floors      the targets and whether each was met
 *
 * Usage: npm run bench            (everything but the soak)
 *        npm run bench:soak       (everything and the soak; node --expose-gc)
 *        node --import tsx bench/run.ts [--soak] [--only=baseline,pipelined,throughput,throughputCold,moduleThroughput,programThroughput,isolateThroughput,latency,latencyCold,sleep,startup,newProgram,clientGone,multiHost,httpd,ui,scheduler,soak]
 * Environment: BENCH_SOAK=1 (same as --soak), BENCH_SOAK_JOBS (default 1000000),
 *   BENCH_SOAK_MAX_S (time bound of the soak, default 1200).
 * Only loopback addresses are used: nodes on 127.0.0.2 (cold starts on 127.0.0.3), the echo
 * server on 127.0.0.4 (the pipelined section's on 127.0.0.13), newProgram's daemons that served
 * nobody on 127.0.0.6, the one that served before on 127.0.0.7 and its echo server on 127.0.0.8,
 * the scheduler section's node and scheduler on 127.0.0.248 and 127.0.0.249, clientGone's nodes on
 * 127.0.0.128 and 127.0.0.129; multiHost uses 10.77.0.1-4, which exist only inside the namespaces it creates
 * (and deletes). Every process started is stopped by PID at the end, also on errors.
 */
import os from 'node:os';
import { runBaseline, type BaselineResult } from './baseline.js';
import { runClientGone, type ClientGoneResult } from './client-gone.js';
import {
  runLatencyCold,
  runNewProgram,
  runThroughputCold,
  type LatencyColdResult,
  type NewProgramResult,
  type ThroughputColdResult,
} from './fresh.js';
import { runPipelined, type PipelinedResult } from './pipelined.js';
import { runHttpd, type HttpdResult } from './httpd.js';
import { runLatency, type LatencyResult } from './latency.js';
import { runMultiHost, type MultiHostResult } from './multi-host.js';
import { log, median, round, startNode, type BenchNode } from './lib.js';
import { runSleep, type SleepResult } from './sleep.js';
import { runSoak, type SoakResult } from './soak.js';
import { runStartup, type StartupResult } from './startup.js';
import { DOUBLE_MODULE, runThroughputOnce, type ThroughputRun } from './throughput.js';
import { runProgramThroughput, type ProgramThroughputResult } from './program.js';
import { runIsolateThroughput, type IsolateThroughputResult } from './isolate.js';
import { runUi, type UiBenchResult } from './ui.js';
import { runSchedulerThroughput, type SchedulerResult } from './scheduler.js';

const NODE_HOST = '127.0.0.2';
const COLD_HOST = '127.0.0.3';
const ECHO_HOST = '127.0.0.4';
const PIPELINED_ECHO_HOST = '127.0.0.13';
const NEW_PROGRAM_NOBODY_HOST = '127.0.0.6';
const NEW_PROGRAM_SERVED_HOST = '127.0.0.7';
const NEW_PROGRAM_ECHO_HOST = '127.0.0.8';
const SCHED_NODE_HOST = '127.0.0.248';
const SCHED_HOST = '127.0.0.249';
const CPUS = 2;

const FLOORS = {
  throughputJobsPerSec: 10_000,
  latencyP50Ms: 0.5,
  sleepEfficiency: 0.98,
  warmStartupMs: 25,
  httpdStatusP50Ms: 5,
  httpdDelta10Bytes: 5000,
};

const SECTIONS = [
  'baseline',
  'pipelined',
  'throughput',
  'throughputCold',
  'moduleThroughput',
  'programThroughput',
  'isolateThroughput',
  'latency',
  'latencyCold',
  'sleep',
  'startup',
  'newProgram',
  'clientGone',
  'multiHost',
  'httpd',
  'ui',
  'scheduler',
  'soak',
] as const;
type Section = (typeof SECTIONS)[number];

function parseArgs(argv: string[]): Set<Section> {
  const soak = argv.includes('--soak') || ['1', 'true', 'yes'].includes((process.env.BENCH_SOAK ?? '').toLowerCase());
  const only = argv.find((a) => a.startsWith('--only='));
  for (const a of argv) {
    if (a !== '--soak' && !a.startsWith('--only=')) throw new Error(`unknown argument ${a} (use --soak, --only=${SECTIONS.join(',')})`);
  }
  if (only) {
    const list = only.slice('--only='.length).split(',').filter(Boolean);
    for (const s of list) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`unknown section ${s}`);
    return new Set(list as Section[]);
  }
  return new Set(SECTIONS.filter((s) => s !== 'soak' || soak));
}

function positiveEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}

async function section<T>(name: string, errors: Record<string, string>, fn: () => Promise<T>): Promise<T | undefined> {
  log(`--- ${name}`);
  try {
    return await fn();
  } catch (err) {
    const msg = (err as Error).stack ?? String(err);
    log(`${name} failed: ${msg}`);
    errors[name] = (err as Error).message;
    return undefined;
  }
}

/** (a) 20,000 trivial jobs, 3 runs (each with a fresh cluster); the median and every run. */
async function measureThroughput(
  n: BenchNode,
  bare: number,
  name: string,
  computation?: Parameters<typeof runThroughputOnce>[1]['computation'],
): Promise<Record<string, unknown>> {
  const runs: ThroughputRun[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await runThroughputOnce(n, { jobs: 20_000, warmup: 1_000, bareRoundTripsPerSec: bare, computation });
    log(`${name} run ${i + 1}: ${r.jobsPerSec} jobs/s (${r.wallMs} ms), ratio ${r.ratioToBareRoundTrips}, cpu ${JSON.stringify(r.cpu)}`);
    runs.push(r);
  }
  const med = median(runs.map((r) => r.jobsPerSec));
  return {
    jobs: 20_000,
    warmupJobsPerRun: 1_000,
    node: `${n.host} --cpus ${CPUS}`,
    runs,
    medianJobsPerSec: round(med, 0),
    bareRoundTripsPerSec: bare,
    medianRatioToBareRoundTrips: round(med / bare, 3),
    note: 'each run: a fresh cluster, 1,000 untimed warm-up jobs, then all jobs submitted at once; timed first submit to last result. cpu: CPU time of each process during the timed part (share = of wall time)',
  };
}

/** Mean lateness (ms) of setTimeout(10) in this process: how noisy the machine is right now. */
async function timerLateness(n = 20): Promise<number> {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await new Promise((r) => setTimeout(r, 10));
    total += performance.now() - s - 10;
  }
  return round(total / n, 3);
}

async function main(): Promise<number> {
  const sections = parseArgs(process.argv.slice(2));
  const cpuInfo = os.cpus();
  const machine = {
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: cpuInfo.length,
    cpuModel: cpuInfo[0]?.model ?? null,
    totalMemMB: Math.round(os.totalmem() / 1024 / 1024),
    loadavgStart: os.loadavg().map((v) => round(v, 2)),
    loadavgEnd: null as number[] | null,
    gcExposed: typeof (globalThis as { gc?: unknown }).gc === 'function',
    /** Mean lateness of setTimeout(10) at start (a 100 ms sleeping job pays about this much). */
    timerLatenessMs: await timerLateness(),
    startedAt: new Date().toISOString(),
    wallS: 0,
  };
  const t0 = performance.now();
  const errors: Record<string, string> = {};
  const out: Record<string, unknown> = { machine };

  let baseline: BaselineResult | undefined;
  let pipelined: PipelinedResult | undefined;
  let throughputCold: Record<string, unknown> | undefined;
  let latencyCold: (LatencyColdResult & Record<string, unknown>) | undefined;
  let newProgram: NewProgramResult | undefined;
  let clientGone: ClientGoneResult | undefined;
  let throughput: Record<string, unknown> | undefined;
  let moduleThroughput: Record<string, unknown> | undefined;
  let programThroughput: (ProgramThroughputResult & { ratioToFunctionThroughput: number | null }) | undefined;
  let isolateThroughput: (IsolateThroughputResult & Record<string, unknown>) | undefined;
  let latency: (LatencyResult & Record<string, unknown>) | undefined;
  let sleepRes: SleepResult | undefined;
  let startup: StartupResult | undefined;
  let soak: SoakResult | undefined;
  let httpd: HttpdResult | undefined;
  let multiHost: MultiHostResult | { skipped: string } | undefined;
  let scheduler: SchedulerResult | undefined;

  // Every job benchmark needs the bare figures, so the baseline runs whenever one of them does.
  const needBaseline = ['baseline', 'pipelined', 'throughput', 'throughputCold', 'moduleThroughput', 'latency', 'latencyCold'].some((s) =>
    sections.has(s as Section),
  );
  if (needBaseline) baseline = await section('baseline', errors, () => runBaseline({ host: ECHO_HOST, warmup: 5000, roundTrips: 2000 }));
  // The cold throughput is read as a fraction of it, so it runs with that section too.
  if (sections.has('pipelined') || sections.has('throughputCold'))
    pipelined = await section('pipelined', errors, () =>
      runPipelined({
        host: PIPELINED_ECHO_HOST,
        messages: 20_000,
        warmup: 100_000,
        window: 256,
        runs: 5,
        ...(baseline ? { bareRoundTripsPerSec: baseline.roundTripsPerSec } : {}),
      }),
    );

  let node: BenchNode | null = null;
  try {
    const needNode = [
      'throughput',
      'throughputCold',
      'moduleThroughput',
      'programThroughput',
      'isolateThroughput',
      'latency',
      'latencyCold',
      'sleep',
      'startup',
      'soak',
    ].some((s) => sections.has(s as Section));
    if (needNode) {
      node = await startNode({ host: NODE_HOST, cpus: CPUS });
      log(`node ${node.host}:${node.port} (pid ${node.pid}) ready in ${round(node.readyAt - node.spawnedAt, 0)} ms`);
    }
    if (node && sections.has('throughput')) {
      const n = node;
      throughput = await section('throughput', errors, () => measureThroughput(n, baseline?.roundTripsPerSec ?? NaN, 'throughput'));
    }
    if (node && sections.has('throughputCold')) {
      const n = node;
      throughputCold = await section('throughputCold', errors, async () => {
        const r: ThroughputColdResult = await runThroughputCold(n, { jobs: 20_000, runs: 3 });
        const bare = baseline?.roundTripsPerSec ?? NaN;
        const pipe = pipelined?.messagesPerSec ?? NaN;
        const warm = throughput?.medianJobsPerSec as number | undefined;
        return {
          ...r,
          node: `${n.host} --cpus ${CPUS} (already running)`,
          bareRoundTripsPerSec: bare,
          medianRatioToBareRoundTrips: round(r.medianJobsPerSec / bare, 3),
          pipelinedMessagesPerSec: pipe,
          fractionOfPipelined: round(r.medianJobsPerSec / pipe, 3),
          warm:
            warm === undefined
              ? null
              : {
                  source: 'the throughput section of this run (median; 1,000 warm-up jobs per run, same client process)',
                  medianJobsPerSec: warm,
                  medianRatioToBareRoundTrips: round(warm / bare, 3),
                  fractionOfPipelined: round(warm / pipe, 3),
                },
          coldOverWarm: warm === undefined ? null : round(r.medianJobsPerSec / warm, 3),
          note: 'each run: a fresh client process (plain node on bench/fresh-client.mjs, imports before timing), all jobs submitted right after new JobCluster (no warm-up batch); timed new JobCluster -> last result, so connection and setup (firstResultMs) are included',
        };
      });
    }
    if (node && sections.has('moduleThroughput')) {
      const n = node;
      moduleThroughput = await section('moduleThroughput', errors, async () => {
        const r = await measureThroughput(n, baseline?.roundTripsPerSec ?? NaN, 'moduleThroughput', DOUBLE_MODULE);
        const fn = throughput?.medianJobsPerSec as number | undefined;
        return {
          ...r,
          computation: '{ module: bench/double.ts, export: double } (bundled at construction, untimed)',
          ratioToFunctionThroughput: fn ? round((r.medianJobsPerSec as number) / fn, 3) : null,
        };
      });
    }
    if (node && sections.has('programThroughput')) {
      const n = node;
      programThroughput = await section('programThroughput', errors, async () => {
        const r = await runProgramThroughput(n);
        const fn = throughput?.medianJobsPerSec as number | undefined;
        return { ...r, ratioToFunctionThroughput: fn ? round(r.jobsPerSec / fn, 4) : null };
      });
    }
    if (node && sections.has('isolateThroughput')) {
      const n = node;
      isolateThroughput = await section('isolateThroughput', errors, async () => {
        const r = await runIsolateThroughput(n, { jobs: 200, warmup: 10, cpus: CPUS });
        const fn = throughput?.medianJobsPerSec as number | undefined;
        return {
          ...r,
          node: `${n.host} --cpus ${CPUS}`,
          ratioToFunctionThroughput: fn ? round(r.jobsPerSec / fn, 5) : null,
          note: "isolate: 'job': each job in a fresh runner process (forked by the node, setup there, retired after its one job); all jobs submitted at once after 10 untimed warm-up jobs; timed first submit to last result",
        };
      });
    }
    if (node && sections.has('latency')) {
      const n = node;
      latency = await section('latency', errors, async () => {
        // Warm-up as long as the baseline's: V8 needs a few thousand passes over the job path
        // before it reaches steady state (200 gave a p50 three times higher).
        const r = await runLatency(n, { jobs: 500, warmup: 3000 });
        const bareP50 = baseline?.p50Ms ?? NaN;
        return { ...r, bareP50Ms: bareP50, p50xBareP50: round(r.p50Ms / bareP50, 2), p95xBareP50: round(r.p95Ms / bareP50, 2) };
      });
    }
    if (node && sections.has('latencyCold')) {
      const n = node;
      latencyCold = await section('latencyCold', errors, async () => {
        const r = await runLatencyCold(n, { jobs: 500, warmup: 200 });
        const bareP50 = baseline?.p50Ms ?? NaN;
        return {
          ...r,
          bareP50Ms: bareP50,
          p50xBareP50: round(r.p50Ms / bareP50, 2),
          p95xBareP50: round(r.p95Ms / bareP50, 2),
          warm: latency
            ? {
                source: 'the latency section of this run (same client process as the bench, 3,000 warm-up jobs)',
                warmup: latency.warmup,
                p50Ms: latency.p50Ms,
                p95Ms: latency.p95Ms,
                p50xBareP50: round(latency.p50Ms / bareP50, 2),
                p95xBareP50: round(latency.p95Ms / bareP50, 2),
              }
            : null,
          note: 'a fresh client process (plain node on bench/fresh-client.mjs, imports before timing) and cluster on the running node; 200 untimed warm-up jobs, then 500 sequential submit-and-wait jobs',
        };
      });
    }
    if (node && sections.has('sleep')) {
      const n = node;
      sleepRes = await section('sleep', errors, () => runSleep(n, { jobs: 200, ms: 100, cpus: CPUS }));
    }
    if (node && sections.has('startup')) {
      const n = node;
      startup = await section('startup', errors, () => runStartup(n, { warmReps: 5, coldReps: 3, coldHost: COLD_HOST, cpus: CPUS }));
    }
    if (node && sections.has('soak')) {
      const n = node;
      soak = await section('soak', errors, () =>
        runSoak(n, {
          jobs: positiveEnv('BENCH_SOAK_JOBS', 1_000_000),
          window: 2_000,
          every: 100_000,
          maxSeconds: positiveEnv('BENCH_SOAK_MAX_S', 1200),
        }),
      );
    }
  } catch (err) {
    errors.setup = (err as Error).message;
    log(`setup failed: ${(err as Error).stack ?? String(err)}`);
  } finally {
    if (node) {
      await node.stop();
      log(`node ${node.host} stopped`);
    }
  }

  // Its own daemons and echo server, after the loopback node stopped.
  if (sections.has('newProgram'))
    newProgram = await section('newProgram', errors, () =>
      runNewProgram({
        repetitions: 5,
        nobodyHost: NEW_PROGRAM_NOBODY_HOST,
        servedHost: NEW_PROGRAM_SERVED_HOST,
        echoHost: NEW_PROGRAM_ECHO_HOST,
        cpus: CPUS,
        settleMs: 1000,
      }),
    );
  // Its own two nodes and client programs.
  if (sections.has('clientGone')) clientGone = await section('clientGone', errors, () => runClientGone({ runs: 3, maxWaitMs: 60_000 }));
  // Its own node (same --cpus as the throughput node) and scheduler, beside the direct figure.
  if (sections.has('scheduler')) {
    const direct = throughput?.medianJobsPerSec as number | undefined;
    scheduler = await section('scheduler', errors, () =>
      runSchedulerThroughput({
        nodeHost: SCHED_NODE_HOST,
        schedulerHost: SCHED_HOST,
        cpus: CPUS,
        jobs: 20_000,
        warmup: 1_000,
        runs: 3,
        ...(direct !== undefined ? { directMedianJobsPerSec: direct } : {}),
      }),
    );
  }
  // After the loopback node stopped: its own daemons on hosts of the network-namespace harness.
  if (sections.has('multiHost')) {
    const loop = throughput?.medianJobsPerSec as number | undefined;
    multiHost = await section('multiHost', errors, () =>
      runMultiHost({
        hosts: 3,
        cpusPerHost: 1,
        jobs: 20_000,
        warmup: 1_000,
        runs: 3,
        ...(loop !== undefined ? { loopbackMedianJobsPerSec: loop } : {}),
      }),
    );
  }
  // No daemon needed: the HTTP server is fed real events in this process.
  if (sections.has('httpd'))
    httpd = await section('httpd', errors, () => runHttpd({ nodes: 1000, jobsPerNode: 10, requests: 300, viewers: 50, rounds: 5 }));
  // Chromium on the built pages (skipped, with the reason, without /usr/bin/chromium).
  let ui: UiBenchResult | { skipped: string } | undefined;
  if (sections.has('ui'))
    ui = await section('ui', errors, () => runUi({ nodes: 1000, changeFraction: 0.1, seconds: 15, firstPaintRuns: 5 }));
  const uiRun = ui && !('skipped' in ui && ui.skipped) ? (ui as UiBenchResult) : undefined;

  if (baseline) out.baseline = baseline;
  if (pipelined) out.pipelined = pipelined;
  if (throughput) out.throughput = throughput;
  if (throughputCold) out.throughputCold = throughputCold;
  if (moduleThroughput) out.moduleThroughput = moduleThroughput;
  if (programThroughput) out.programThroughput = programThroughput;
  if (isolateThroughput) out.isolateThroughput = isolateThroughput;
  if (latency) out.latency = latency;
  if (latencyCold) out.latencyCold = latencyCold;
  if (sleepRes) out.sleep = { ...sleepRes, note: 'timed from the first submit; the cluster had set up its node before' };
  if (startup) out.startup = startup;
  if (newProgram) out.newProgram = newProgram;
  if (clientGone) out.clientGone = clientGone;
  if (multiHost) out.multiHost = multiHost;
  if (httpd) out.httpd = httpd;
  if (ui) out.ui = ui;
  if (scheduler) out.scheduler = scheduler;

  const floor = (desc: string, value: number | undefined, met: (v: number) => boolean): Record<string, unknown> =>
    value === undefined || !Number.isFinite(value) ? { floor: desc, value: null, met: null } : { floor: desc, value, met: met(value) };
  out.floors = {
    throughput: floor(
      `median >= ${FLOORS.throughputJobsPerSec} jobs/s`,
      throughput?.medianJobsPerSec as number | undefined,
      (v) => v >= FLOORS.throughputJobsPerSec,
    ),
    latency: floor(`p50 <= ${FLOORS.latencyP50Ms} ms`, latency?.p50Ms, (v) => v <= FLOORS.latencyP50Ms),
    sleep: floor(`efficiency >= ${FLOORS.sleepEfficiency}`, sleepRes?.efficiency, (v) => v >= FLOORS.sleepEfficiency),
    startupWarm: floor(`warm median <= ${FLOORS.warmStartupMs} ms`, startup?.warm.medianMs, (v) => v <= FLOORS.warmStartupMs),
    httpdClusterStatus: floor(
      `/cluster_status p50 <= ${FLOORS.httpdStatusP50Ms} ms at 1,000 nodes (one node changing before each request)`,
      httpd?.clusterStatus.changing.p50Ms,
      (v) => v <= FLOORS.httpdStatusP50Ms,
    ),
    httpdDelta10: floor(
      `10-node ?since= delta <= ${FLOORS.httpdDelta10Bytes} bytes`,
      httpd?.delta10.bytes,
      (v) => v <= FLOORS.httpdDelta10Bytes,
    ),
    httpdSseFanOut: floor(
      'all 50 SSE viewers get every change (1 = yes)',
      httpd ? (httpd.sse.allViewersGotEveryChange ? 1 : 0) : undefined,
      (v) => v === 1,
    ),
    uiFirstPaint: floor(
      'Monitor: data received to first paint of 1,000 nodes, median <= 300 ms',
      uiRun?.firstPaint.medianMs,
      (v) => v <= 300,
    ),
    // A run never served (value null) misses the floor.
    clientGone: clientGone
      ? {
          floor: 'Ctrl-C mid-job to the nodes serving the program run again, slowest of 3 runs <= 15,000 ms',
          value: clientGone.servedMsMax,
          met: clientGone.servedMsMax !== null && clientGone.servedMsMax <= 15_000,
        }
      : floor('Ctrl-C mid-job to the nodes serving the program run again, slowest of 3 runs <= 15,000 ms', undefined, () => false),
    scheduler: floor(
      'through the scheduler (2 clients) >= 0.5 x direct JobCluster throughput (ratio)',
      scheduler?.ratioToDirect,
      (v) => v >= 0.5,
    ),
    uiUpdateScript: floor(
      'Monitor: script per delta (10% of 1,000 nodes each second), p95 <= 16 ms',
      uiRun?.updates.scriptMs.p95Ms,
      (v) => v <= 16,
    ),
  };
  if (soak) out.soak = soak;
  else
    out.soakHowTo =
      'not run; run `npm run bench:soak` (or `node --expose-gc --import tsx bench/run.ts --soak`; BENCH_SOAK_JOBS sets the job count)';
  if (Object.keys(errors).length) out.errors = errors;
  machine.loadavgEnd = os.loadavg().map((v) => round(v, 2));
  machine.wallS = round((performance.now() - t0) / 1000, 1);
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  if (!soak) log('the million-job soak was skipped; run it with `npm run bench:soak` (BENCH_SOAK_JOBS=N to change the count)');
  return Object.keys(errors).length ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    log(`fatal: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 2;
  },
);
