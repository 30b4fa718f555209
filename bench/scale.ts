/**
 * Scale benchmark (`npm run bench:scale`, not part of `npm run bench`): N real `dispyts node`
 * daemons (`--cpus 1`) on 127.0.x.y addresses (x >= 1, clear of the tests' 127.0.0.x) and one
 * client, for each N asked (default 100 and 200). Prints one JSON document on stdout, progress
 * on stderr:
 *   startup      spawn to ready of all daemons (started in batches)
 *   memory       RSS and PSS (/proc/PID/smaps_rollup) of each daemon and of each runner, idle
 *                (before any client) and after the jobs, as medians / p95 / max per process
 *   init         new JobCluster -> every node Initialized, with the CPU the client, the daemons
 *                and the runners used meanwhile (and the client's CPU profile with --profile)
 *   jobs         20,000 trivial jobs over all nodes: jobs/s, every node used, every result right
 *   clusterStatus  GET /cluster_status of a DispyHTTPServer on the cluster, from another process
 *   monitor      the Monitor page's first render of the N real nodes in Chromium
 *   breakdown    RSS of a bare Node process and after importing what a daemon loads, to explain
 *                the daemon's own memory
 *   targets      the issue's targets and whether each was met
 * It reads MemAvailable first and runs the largest N that fits at about 100 MB per node,
 * saying why when that is less than asked. Every process is stopped by PID at the end, on
 * errors too; the daemons also stop by themselves if this process dies (--parent-pid).
 *
 * Usage: npm run bench:scale [-- --nodes 100,200] [--jobs 20000] [--batch 10] [--no-browser] [--profile]
 */
import { readFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DispyHTTPServer, JobCluster, DispyNode, DispyJob, type ClusterStatusEvent } from '../src/index.js';
import { browserUnavailable, launchChromium } from '../test/helpers/browser.js';
import {
  BENCH_SECRET,
  ROOT,
  childPids,
  log,
  median,
  percentile,
  procCpuMs,
  round,
  sleep,
  spawnTracked,
  startNode,
  summarize,
  type BenchNode,
  type Summary,
} from './lib.js';
import { INSTRUMENT, mainThreadCpu, type PageBench } from './ui.js';

const MB = 1024 * 1024;
/** What one node (daemon + runner + the client's share) is budgeted in memory. */
const PER_NODE_MB = 100;
/**
 * Kept free besides the nodes: the client, the HTTP server and Chromium (a node takes about 30 MB
 * of PSS idle, so PER_NODE_MB already leaves ample room).
 */
const RESERVE_MB = 512;
const TARGETS = {
  daemonIdleRssMb: 50,
  /** Per-daemon memory at the largest N at most this share above the smallest N's. */
  flatWithin: 0.1,
  initMsAt200: 2000,
  clusterStatusP95MsAt200: 5,
};

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '100,200' },
    jobs: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '10' },
    'no-browser': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
  },
});
const ASKED = values.nodes!.split(',').map((s) => Number(s.trim()));
const JOBS = Number(values.jobs);
const BATCH = Number(values.batch);
if (ASKED.some((n) => !Number.isInteger(n) || n < 1 || n > 2000) || !(JOBS > 0) || !(BATCH > 0))
  throw new Error('usage: --nodes N[,N...] (1-2000) --jobs N --batch N');

/** The i-th node's address: 127.0.1.1 ... 127.0.1.250, 127.0.2.1 ... */
function hostOf(i: number): string {
  return `127.0.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`;
}

interface Smaps {
  rssMb: number;
  pssMb: number;
  pssAnonMb: number;
}

function smaps(pid: number): Smaps | null {
  try {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN);
    return { rssMb: round(kb('Rss') / 1024, 1), pssMb: round(kb('Pss') / 1024, 1), pssAnonMb: round(kb('Pss_Anon') / 1024, 1) };
  } catch {
    return null;
  }
}

interface MemStats {
  processes: number;
  rssMb: { median: number; p95: number; max: number };
  pssMb: { median: number; p95: number; max: number; total: number };
  pssAnonMbMedian: number;
}

function memStats(samples: Smaps[]): MemStats {
  const pick = (f: (s: Smaps) => number) => samples.map(f).sort((a, b) => a - b);
  const rss = pick((s) => s.rssMb);
  const pss = pick((s) => s.pssMb);
  return {
    processes: samples.length,
    rssMb: { median: round(median(rss), 1), p95: round(percentile(rss, 95), 1), max: rss.at(-1) ?? NaN },
    pssMb: {
      median: round(median(pss), 1),
      p95: round(percentile(pss, 95), 1),
      max: pss.at(-1) ?? NaN,
      total: round(
        pss.reduce((a, b) => a + b, 0),
        0,
      ),
    },
    pssAnonMbMedian: round(median(pick((s) => s.pssAnonMb)), 1),
  };
}

/** Memory of every daemon and of every runner (a daemon's children), read now. */
function memory(nodes: BenchNode[]): { daemon: MemStats; runner: MemStats; runnersPerDaemon: number } {
  const d: Smaps[] = [];
  const r: Smaps[] = [];
  for (const n of nodes) {
    const m = smaps(n.pid);
    if (m) d.push(m);
    for (const c of childPids(n.pid)) {
      const cm = smaps(c);
      if (cm) r.push(cm);
    }
  }
  return { daemon: memStats(d), runner: memStats(r), runnersPerDaemon: round(r.length / Math.max(1, d.length), 2) };
}

function memAvailableMb(): number {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) / 1024 : os.freemem() / MB;
}

/** CPU ms of the daemons and of their runners so far. */
function nodesCpu(nodes: BenchNode[]): { daemons: number; runners: number } {
  let daemons = 0;
  let runners = 0;
  for (const n of nodes) {
    daemons += procCpuMs(n.pid) ?? 0;
    for (const c of childPids(n.pid)) runners += procCpuMs(c) ?? 0;
  }
  return { daemons, runners };
}

async function startAll(n: number): Promise<{ nodes: BenchNode[]; ms: number }> {
  const nodes: BenchNode[] = [];
  const t0 = performance.now();
  try {
    for (let i = 0; i < n; i += BATCH) {
      const batch = Array.from({ length: Math.min(BATCH, n - i) }, (_, k) =>
        // A machine shared with other work may be slow to start 10 processes at once.
        startNode({ host: hostOf(i + k), cpus: 1, logLevel: 'warn', args: ['--parent-pid', String(process.pid)], readyTimeoutMs: 120_000 }),
      );
      const settled = await Promise.allSettled(batch);
      for (const s of settled) if (s.status === 'fulfilled') nodes.push(s.value);
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      if ((i / BATCH) % 5 === 4) log(`scale: ${nodes.length} of ${n} daemons ready (${round((performance.now() - t0) / 1000, 1)} s)`);
    }
  } catch (err) {
    await stopAll(nodes);
    throw err;
  }
  return { nodes, ms: performance.now() - t0 };
}

/** Stops every daemon by PID (SIGTERM, SIGKILL after 5 s), 20 at a time; says whether any runner outlived its daemon. */
async function stopAll(nodes: BenchNode[]): Promise<{ leftoverRunners: number }> {
  const runners = nodes.flatMap((n) => childPids(n.pid));
  for (let i = 0; i < nodes.length; i += 20) await Promise.all(nodes.slice(i, i + 20).map((n) => n.stop().catch(() => undefined)));
  await sleep(500);
  const left = runners.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  for (const pid of left) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  return { leftoverRunners: left.length };
}

/** Waits until every daemon has its pre-spawned runner (bounded). */
async function runnersUp(nodes: BenchNode[], timeoutMs = 60_000): Promise<void> {
  const t0 = performance.now();
  while (nodes.some((n) => childPids(n.pid).length < 1)) {
    if (performance.now() - t0 > timeoutMs) throw new Error('runners not spawned in time');
    await sleep(200);
  }
}

async function httpLoop(port: number, path: string, count: number, warmup: number): Promise<{ samplesMs: number[]; bytes: number }> {
  const proc = spawnTracked([join(ROOT, 'bench', 'http-get-loop.mjs'), String(port), path, String(count), String(warmup)]);
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => proc.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((r) => proc.once('close', r));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`HTTP client exited with ${code}: ${err}`);
  return JSON.parse(out);
}

async function monitorFirstRender(url: string, nodes: number, runs = 3): Promise<Record<string, unknown>> {
  const skipped = browserUnavailable();
  if (skipped) return { skipped };
  const browser = await launchChromium();
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await ctx.addInitScript(INSTRUMENT);
    const times: number[] = [];
    const cpu: number[] = [];
    let rows = 0;
    let bytes = 0;
    const trace = join(tmpdir(), `dispyts-scale-trace-${process.pid}.json`);
    for (let i = 0; i < runs; i++) {
      const page = await ctx.newPage();
      await browser.startTracing(page, {
        path: trace,
        categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink.user_timing'],
      });
      await page.goto(`${url}/`);
      const h = await page.waitForFunction(() => (window as unknown as { __bench: PageBench }).__bench.firstPaint, undefined, {
        timeout: 60_000,
      });
      times.push(round((await h.jsonValue()) as number, 1));
      const b = (await page.evaluate(() => (window as unknown as { __bench: PageBench }).__bench)) as PageBench;
      await browser.stopTracing();
      const c = mainThreadCpu(trace)?.total;
      rmSync(trace, { force: true });
      if (c !== undefined) cpu.push(round(c, 1));
      rows = b.firstRows;
      bytes = b.snapshotBytes;
      await page.close();
    }
    return {
      runsMs: times,
      medianMs: round(median(times), 1),
      cpuMedianMs: round(median(cpu), 1),
      rowsInDom: rows,
      nodes,
      snapshotBytes: bytes,
    };
  } finally {
    await browser.close();
  }
}

/** RSS of a fresh Node process after importing each of `modules` (what the daemon's memory is made of). */
async function breakdown(): Promise<Record<string, { rssMb: number; anonMb: number }>> {
  const out: Record<string, { rssMb: number; anonMb: number }> = {};
  const steps: [string, string][] = [
    ['bare node', ''],
    ['zod', 'zod'],
    ['msgpackr', 'msgpackr'],
    ['pino', 'pino'],
    ['protocol messages (zod schemas)', join(ROOT, 'dist/protocol/messages.js')],
    ['node daemon module', join(ROOT, 'dist/node/node-daemon.js')],
    ['dispyts node command', join(ROOT, 'dist/cli/node-command.js')],
  ];
  for (const [name, mod] of steps) {
    const code = String.raw`import fs from 'node:fs';
      ${mod ? `await import(${JSON.stringify(mod)});` : ''}
      setTimeout(() => {
        const t = fs.readFileSync('/proc/self/smaps_rollup', 'utf8');
        const kb = (k) => Number(new RegExp('^' + k + ':\\s+(\\d+)', 'm').exec(t)[1]);
        process.stdout.write(JSON.stringify({ rss: kb('Rss'), anon: kb('Anonymous') }));
      }, 300);`;
    // Bare names resolve from the working directory: npm runs the bench at the repository root.
    const proc = spawnTracked(['--input-type=module', '-e', code]);
    let s = '';
    let err = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (s += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    // 'close', not 'exit': the output may still be on its way at exit.
    await new Promise((r) => proc.once('close', r));
    try {
      const m = JSON.parse(s) as { rss: number; anon: number };
      out[name] = { rssMb: round(m.rss / 1024, 1), anonMb: round(m.anon / 1024, 1) };
    } catch {
      log(`scale: breakdown of ${name} failed: ${err.slice(0, 300)}`);
      out[name] = { rssMb: NaN, anonMb: NaN };
    }
  }
  return out;
}

async function profileClient<T>(
  enabled: boolean,
  label: string,
  body: () => Promise<T>,
): Promise<{ value: T; top?: unknown; file?: string }> {
  if (!enabled) return { value: await body() };
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  let value: T;
  try {
    value = await body();
  } finally {
    const { profile } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
    session.disconnect();
    const dir = join(ROOT, 'test-results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `scale-${label}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    // Self time per function, top 12.
    const dt = new Map<number, number>();
    for (const [i, id] of profile.samples.entries()) dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
    const self = new Map<string, number>();
    for (const node of profile.nodes) {
      const f = node.callFrame;
      const key = `${f.functionName || '(anonymous)'} ${String(f.url).replace(/^.*\/(src|dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
      self.set(key, (self.get(key) ?? 0) + (dt.get(node.id) ?? 0));
    }
    const total = [...self.values()].reduce((a, b) => a + b, 0);
    (globalThis as Record<string, unknown>).__lastTop = [...self.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([k, v]) => ({ fn: k, selfMs: round(v / 1000, 1), share: round(v / total, 3) }));
    log(`scale: client CPU profile written to ${file}`);
  }
  return { value: value!, top: (globalThis as Record<string, unknown>).__lastTop, file: join('test-results', `scale-${label}.cpuprofile`) };
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples: number[];
  timeDeltas: number[];
}

interface RunResult {
  asked: number;
  nodes: number;
  reduced?: string;
  loadavg: { start: number[]; end: number[] };
  startup: { allReadyMs: number; batch: number };
  memory: { idle: ReturnType<typeof memory>; afterJobs: ReturnType<typeof memory> | null };
  init: Record<string, unknown> | null;
  jobs: Record<string, unknown> | null;
  clusterStatus: (Summary & { bytes: number; nodesListed: number; serverCpuMsPerRequest: number }) | null;
  monitor: Record<string, unknown> | null;
  stop: { leftoverRunners: number } | null;
  error?: string;
}

async function runOnce(asked: number): Promise<RunResult> {
  const availMb = memAvailableMb();
  const fits = Math.floor((availMb - RESERVE_MB) / PER_NODE_MB);
  const n = Math.min(asked, fits);
  const result: RunResult = {
    asked,
    nodes: n,
    loadavg: { start: os.loadavg().map((v) => round(v, 2)), end: [] },
    startup: { allReadyMs: NaN, batch: BATCH },
    memory: { idle: memory([]), afterJobs: null },
    init: null,
    jobs: null,
    clusterStatus: null,
    monitor: null,
    stop: null,
  };
  if (n < asked) {
    result.reduced = `MemAvailable is ${Math.round(availMb)} MB: ${RESERVE_MB} MB kept free and ${PER_NODE_MB} MB per node fit ${Math.max(0, fits)} nodes, not ${asked}`;
    log(`scale: ${result.reduced}`);
    if (n < 2) {
      result.error = 'not enough memory for 2 nodes';
      return result;
    }
  }
  log(
    `scale: N = ${n}: starting ${n} daemons (--cpus 1) on ${hostOf(0)} ... ${hostOf(n - 1)}, ${BATCH} at a time; MemAvailable ${Math.round(availMb)} MB, load ${result.loadavg.start.join(' ')}`,
  );
  let started: { nodes: BenchNode[]; ms: number };
  try {
    started = await startAll(n);
  } catch (err) {
    result.error = `starting the daemons: ${(err as Error).message}`;
    result.loadavg.end = os.loadavg().map((v) => round(v, 2));
    log(`scale: N = ${n} failed: ${result.error}`);
    return result;
  }
  const { nodes, ms } = started;
  result.startup.allReadyMs = round(ms, 0);
  log(`scale: all ${n} daemons ready in ${round(ms / 1000, 1)} s`);
  let cluster: JobCluster<(i: number) => number> | null = null;
  let server: DispyHTTPServer | null = null;
  try {
    await runnersUp(nodes);
    await sleep(2000);
    result.memory.idle = memory(nodes);
    log(
      `scale: idle daemon RSS median ${result.memory.idle.daemon.rssMb.median} MB (PSS ${result.memory.idle.daemon.pssMb.median}), runner RSS ${result.memory.idle.runner.rssMb.median} MB (PSS ${result.memory.idle.runner.pssMb.median})`,
    );

    // ---- init: new JobCluster -> all Initialized ----
    const initialized = new Set<string>();
    let allInit!: () => void;
    const allInitP = new Promise<void>((r) => (allInit = r));
    let firstMs = NaN;
    let halfMs = NaN;
    const cpu0 = { client: process.cpuUsage(), nodes: nodesCpu(nodes) };
    const t0 = performance.now();
    const prof = await profileClient(values.profile!, `init-${n}`, async () => {
      cluster = new JobCluster((i: number) => 2 * i + 1, {
        nodes: nodes.map((x) => ({ host: x.host, port: x.port })),
        secret: BENCH_SECRET,
        logLevel: 'warn',
      });
      cluster.on('status', (e: ClusterStatusEvent) => {
        if (e.status !== DispyNode.Initialized || !e.node) return;
        initialized.add(e.node.ipAddr);
        const at = performance.now() - t0;
        if (initialized.size === 1) firstMs = at;
        if (initialized.size === Math.ceil(n / 2)) halfMs = at;
        if (initialized.size === n) allInit();
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([allInitP, new Promise<void>((r) => (timer = setTimeout(r, 120_000)))]);
      clearTimeout(timer);
      return performance.now() - t0;
    });
    const initMs = prof.value;
    const cu = process.cpuUsage(cpu0.client);
    const nc = nodesCpu(nodes);
    result.init = {
      allInitializedMs: initialized.size === n ? round(initMs, 0) : null,
      initialized: initialized.size,
      firstMs: round(firstMs, 0),
      halfMs: round(halfMs, 0),
      cpuMsMeanwhile: {
        client: round((cu.user + cu.system) / 1000, 0),
        daemons: round(nc.daemons - cpu0.nodes.daemons, 0),
        runners: round(nc.runners - cpu0.nodes.runners, 0),
      },
      // All of it divided by 2 cores: the shortest init this CPU allows on an otherwise idle machine.
      cpuBoundMs: round(
        ((cu.user + cu.system) / 1000 + nc.daemons - cpu0.nodes.daemons + nc.runners - cpu0.nodes.runners) / os.cpus().length,
        0,
      ),
      ...(prof.top ? { clientProfileTop: prof.top, clientProfile: prof.file } : {}),
    };
    log(
      `scale: ${initialized.size} of ${n} nodes initialized in ${round(initMs, 0)} ms (first ${round(firstMs, 0)}, half ${round(halfMs, 0)})`,
    );
    if (initialized.size !== n) throw new Error(`only ${initialized.size} of ${n} nodes initialized in 120 s`);
    const c = cluster!;

    // ---- 20,000 trivial jobs ----
    const jcpu0 = { client: process.cpuUsage(), nodes: nodesCpu(nodes) };
    const js0 = performance.now();
    const jobs = Array.from({ length: JOBS }, (_, i) => c.submit(i));
    const idle = await c.wait(300);
    const jobsMs = performance.now() - js0;
    const jcu = process.cpuUsage(jcpu0.client);
    const jnc = nodesCpu(nodes);
    const perNode = new Map<string, number>();
    let right = 0;
    let finished = 0;
    for (const [i, j] of jobs.entries()) {
      if (j.status === DispyJob.Finished) finished++;
      if (j.status === DispyJob.Finished && j.result === 2 * i + 1) right++;
      if (j.ipAddr) perNode.set(j.ipAddr, (perNode.get(j.ipAddr) ?? 0) + 1);
    }
    const counts = [...perNode.values()].sort((a, b) => a - b);
    result.jobs = {
      jobs: JOBS,
      allSettled: idle,
      seconds: round(jobsMs / 1000, 2),
      jobsPerSec: round(JOBS / (jobsMs / 1000), 0),
      finished,
      resultsRight: right,
      nodesUsed: perNode.size,
      everyNodeUsed: perNode.size === n,
      perNode: { min: counts[0] ?? 0, median: median(counts), max: counts.at(-1) ?? 0 },
      nothingLost: idle && finished === JOBS && right === JOBS,
      cpuMsPerJob: {
        client: round((jcu.user + jcu.system) / 1000 / JOBS, 3),
        daemons: round((jnc.daemons - jcpu0.nodes.daemons) / JOBS, 3),
        runners: round((jnc.runners - jcpu0.nodes.runners) / JOBS, 3),
      },
    };
    log(
      `scale: ${JOBS} jobs in ${round(jobsMs / 1000, 2)} s (${result.jobs.jobsPerSec} jobs/s), ${right} right, ${perNode.size} of ${n} nodes used`,
    );
    await sleep(1000);
    result.memory.afterJobs = memory(nodes);

    // ---- /cluster_status with a DispyHTTPServer on this cluster ----
    server = new DispyHTTPServer(c, { host: '127.0.0.1', port: 0, pollSec: 1, logLevel: 'warn' });
    const { url } = await server.listening;
    const port = Number(new URL(url).port);
    // The server's CPU per request (this process: the cluster is idle meanwhile) does not depend
    // on what else the machine runs, unlike the latencies.
    const cpuBefore = process.cpuUsage();
    const loop = await httpLoop(port, '/cluster_status', 500, 50);
    const cpuLoop = process.cpuUsage(cpuBefore);
    const status = await fetch(`http://127.0.0.1:${port}/cluster_status`).then(
      (r) => r.json() as Promise<{ nodes?: unknown[] }[] | unknown>,
    );
    const listed = Array.isArray(status) ? ((status[0] as { nodes?: unknown[] })?.nodes?.length ?? 0) : 0;
    result.clusterStatus = {
      ...summarize(loop.samplesMs),
      bytes: loop.bytes,
      nodesListed: listed,
      serverCpuMsPerRequest: round((cpuLoop.user + cpuLoop.system) / 1000 / 550, 3),
    };
    log(
      `scale: /cluster_status p50 ${result.clusterStatus.p50Ms} ms, p95 ${result.clusterStatus.p95Ms} ms, ${loop.bytes} bytes, ${listed} nodes`,
    );

    // ---- the Monitor page in Chromium ----
    if (!values['no-browser']) {
      result.monitor = await monitorFirstRender(url, n);
      log(`scale: Monitor first render ${JSON.stringify(result.monitor)}`);
    } else result.monitor = { skipped: '--no-browser' };
  } catch (err) {
    result.error = (err as Error).stack ?? String(err);
    log(`scale: N = ${n} failed: ${(err as Error).message}`);
  } finally {
    if (server) await (server as DispyHTTPServer).shutdown({ wait: false }).catch(() => undefined);
    const cl = cluster as JobCluster<(i: number) => number> | null;
    if (cl && !cl.closed) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([cl.close({ timeout: 5, terminate: true }), new Promise<void>((r) => (t = setTimeout(r, 30_000)))]);
      clearTimeout(t);
    }
    result.stop = await stopAll(nodes);
    result.loadavg.end = os.loadavg().map((v) => round(v, 2));
  }
  return result;
}

const started = new Date().toISOString();
const runs: RunResult[] = [];
for (const n of ASKED) runs.push(await runOnce(n));
const parts = await breakdown();

const ok = runs.filter((r) => !r.error);
const largest = ok.at(-1);
const smallest = ok[0];
const at200 = ok.find((r) => r.nodes >= 200) ?? null;
const flat =
  smallest && largest && largest !== smallest
    ? {
        from: smallest.nodes,
        to: largest.nodes,
        daemonRssRatio: round(largest.memory.idle.daemon.rssMb.median / smallest.memory.idle.daemon.rssMb.median, 3),
        daemonPssRatio: round(largest.memory.idle.daemon.pssMb.median / smallest.memory.idle.daemon.pssMb.median, 3),
        runnerPssRatio: round(largest.memory.idle.runner.pssMb.median / smallest.memory.idle.runner.pssMb.median, 3),
      }
    : null;
const targets = {
  daemonIdleRssMb: {
    target: `<= ${TARGETS.daemonIdleRssMb}`,
    value: largest?.memory.idle.daemon.rssMb.median ?? null,
    met: largest ? largest.memory.idle.daemon.rssMb.median <= TARGETS.daemonIdleRssMb : null,
  },
  perDaemonMemoryFlat: {
    // Growth is what would not scale; a daemon idle longer (the largest N waits longest for the
    // others to start) gives memory back to V8's memory reducer and reads lower.
    target: `median daemon RSS and PSS grow at most ${TARGETS.flatWithin * 100}% from the smallest N to the largest`,
    value: flat,
    met: flat ? flat.daemonRssRatio - 1 <= TARGETS.flatWithin && flat.daemonPssRatio - 1 <= TARGETS.flatWithin : null,
  },
  initAt200Ms: {
    target: `<= ${TARGETS.initMsAt200}`,
    value: at200?.init?.allInitializedMs ?? null,
    met: at200 ? Number(at200.init?.allInitializedMs) <= TARGETS.initMsAt200 : null,
  },
  clusterStatusP95At200Ms: {
    target: `<= ${TARGETS.clusterStatusP95MsAt200}`,
    value: at200?.clusterStatus?.p95Ms ?? null,
    met: at200 ? Number(at200.clusterStatus?.p95Ms) <= TARGETS.clusterStatusP95MsAt200 : null,
  },
  nothingLost: {
    target: 'every job Finished with the right result, every node used',
    met: ok.every((r) => r.jobs?.nothingLost && r.jobs.everyNodeUsed),
  },
};
process.stdout.write(
  `${JSON.stringify(
    {
      bench: 'scale',
      started,
      machine: { cpus: os.cpus().length, memTotalMb: Math.round(os.totalmem() / MB), node: process.version },
      runs,
      breakdown: parts,
      targets,
    },
    null,
    2,
  )}\n`,
);
process.exitCode = runs.some((r) => r.error) ? 1 : 0;
