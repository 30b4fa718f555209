/**
 * Scheduler throughput: trivial jobs (`x -> x * 2`) through `dispyts scheduler` from two client
 * programs (SharedJobCluster, each in its own process: test/fixtures/shared-client.mjs on dist/),
 * to one `--cpus 2` node, beside the direct JobCluster figure of the same run (the throughput
 * section's median, or one direct run on this node when that section did not run). Each run:
 * fresh clients, an untimed warm-up batch each, then both submit all their jobs at once (told
 * together on stdin); timed from the first submit to the last result of either. Floor: the
 * scheduler keeps at least half the direct throughput.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_SECRET, ROOT, log, median, round, schedulerArgs, spawnTracked, startNode, stopChild, waitForLine } from './lib.js';
import { runThroughputOnce } from './throughput.js';

const CLIENT = join(ROOT, 'test', 'fixtures', 'shared-client.mjs');

export interface SchedulerRun {
  wallMs: number;
  jobsPerSec: number;
  /** Each client's own figure (its jobs over its own first submit to last result). */
  perClientJobsPerSec: number[];
}

export interface SchedulerResult {
  jobs: number;
  clients: number;
  warmupJobsPerClient: number;
  node: string;
  runs: SchedulerRun[];
  medianJobsPerSec: number;
  directMedianJobsPerSec: number;
  directSource: string;
  ratioToDirect: number;
  floor: { floor: string; met: boolean };
  note: string;
}

interface Line {
  event: string;
  [k: string]: unknown;
}

/** A client program: its JSON lines, waited for one by one. */
function startClient(config: Record<string, unknown>): {
  proc: ChildProcess;
  next(event: string, timeoutMs: number): Promise<Line>;
  stderr(): string;
} {
  const proc = spawn(process.execPath, [CLIENT, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT });
  const kill = (): void => {
    if (proc.exitCode === null && proc.signalCode === null && proc.pid) process.kill(proc.pid, 'SIGKILL');
  };
  process.once('exit', kill);
  proc.once('exit', () => process.off('exit', kill));
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err = (err + d).slice(-10_000);
  });
  const lines: Line[] = [];
  const waiters: { event: string; resolve: (l: Line) => void }[] = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = JSON.parse(buf.slice(0, i)) as Line;
      buf = buf.slice(i + 1);
      const w = waiters.findIndex((x) => x.event === l.event);
      if (w >= 0) waiters.splice(w, 1)[0]!.resolve(l);
      else lines.push(l);
    }
  });
  return {
    proc,
    stderr: () => err,
    next(event, timeoutMs) {
      const i = lines.findIndex((l) => l.event === event || l.event === 'fatal');
      if (i >= 0) {
        const l = lines.splice(i, 1)[0]!;
        return l.event === 'fatal' ? Promise.reject(new Error(`client failed: ${JSON.stringify(l)}`)) : Promise.resolve(l);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`client: no ${event} in ${timeoutMs} ms: ${err}`)), timeoutMs);
        const w = {
          event,
          resolve: (l: Line) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        waiters.push(w);
        proc.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`client exited (${code}) before ${event}: ${err} ${JSON.stringify(lines).slice(0, 1000)}`));
        });
      });
    },
  };
}

export async function runSchedulerThroughput(opts: {
  nodeHost: string;
  schedulerHost: string;
  cpus: number;
  jobs: number;
  warmup: number;
  runs: number;
  /** The throughput section's median, when it ran. */
  directMedianJobsPerSec?: number;
}): Promise<SchedulerResult> {
  const node = await startNode({ host: opts.nodeHost, cpus: opts.cpus, logLevel: 'warn' });
  let scheduler: ChildProcess | null = null;
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-bench-scheduler-'));
  try {
    let direct = opts.directMedianJobsPerSec;
    let directSource = 'the throughput section of this run (median of its runs)';
    if (direct === undefined || !Number.isFinite(direct)) {
      const r = await runThroughputOnce(node, { jobs: opts.jobs, warmup: opts.warmup, bareRoundTripsPerSec: NaN });
      direct = r.jobsPerSec;
      directSource = `one direct JobCluster run on this section's node (${opts.jobs} jobs), as the throughput section did not run`;
      log(`scheduler: direct JobCluster ${direct} jobs/s`);
    }
    const args = schedulerArgs(opts.schedulerHost, `${node.host}:${node.port}`, prefix);
    scheduler = spawnTracked(args);
    let schedErr = '';
    scheduler.stderr!.setEncoding('utf8').on('data', (d: string) => {
      schedErr = (schedErr + d).slice(-20_000);
    });
    const m = await waitForLine(scheduler, /dispyts scheduler ready on [^\s]+:(\d+)/, 20_000, 'scheduler', () => schedErr);
    const port = Number(m[1]);
    const perClient = Math.floor(opts.jobs / 2);
    const runs: SchedulerRun[] = [];
    for (let r = 0; r < opts.runs; r++) {
      const clients = ['a', 'b'].map((name) =>
        startClient({
          schedulerHost: opts.schedulerHost,
          schedulerPort: port,
          secret: BENCH_SECRET,
          name: `bench-${name}`,
          jobs: perClient,
          ms: 0,
          fn: 'double',
          quiet: true,
          waitForGo: true,
          warmup: opts.warmup,
        }),
      );
      try {
        await Promise.all(clients.map((c) => c.next('waiting', 60_000)));
        for (const c of clients) c.proc.stdin!.write('go\n');
        const sums = await Promise.all(clients.map((c) => c.next('summary', 120_000)));
        for (const s of sums) {
          const done = (s.byStatus as Record<string, number>)['11'] ?? 0;
          if (done !== perClient || s.wrong !== 0) throw new Error(`a client's jobs failed: ${JSON.stringify(s)}`);
        }
        const wallMs = Math.max(...sums.map((s) => s.doneAt as number)) - Math.min(...sums.map((s) => s.startAt as number));
        const run: SchedulerRun = {
          wallMs,
          jobsPerSec: round((perClient * 2) / (wallMs / 1000), 0),
          perClientJobsPerSec: sums.map((s) => round(perClient / ((s.wallMs as number) / 1000), 0)),
        };
        log(`scheduler run ${r + 1}: ${run.jobsPerSec} jobs/s (${wallMs} ms; per client ${run.perClientJobsPerSec.join(', ')})`);
        runs.push(run);
        await Promise.all(clients.map((c) => c.next('closed', 30_000)));
      } finally {
        for (const c of clients) await stopChild(c.proc, 2000).catch(() => undefined);
      }
    }
    const med = median(runs.map((x) => x.jobsPerSec));
    const ratio = round(med / direct, 3);
    return {
      jobs: perClient * 2,
      clients: 2,
      warmupJobsPerClient: opts.warmup,
      node: `${node.host} --cpus ${opts.cpus}`,
      runs,
      medianJobsPerSec: round(med, 0),
      directMedianJobsPerSec: round(direct, 0),
      directSource,
      ratioToDirect: ratio,
      floor: { floor: 'through the scheduler >= 0.5 x direct JobCluster throughput', met: ratio >= 0.5 },
      note: 'each run: two fresh client processes (SharedJobCluster), each with an untimed warm-up batch, then both submit half the jobs at once; timed from the first submit to the last result of either',
    };
  } finally {
    if (scheduler) await stopChild(scheduler).catch(() => undefined);
    await node.stop();
    rmSync(prefix, { recursive: true, force: true });
  }
}
