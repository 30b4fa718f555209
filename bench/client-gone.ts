/**
 * clientGone: how long a program's nodes stay taken after the program died. Two `--cpus 1`
 * nodes with default options; a client program (bench/client-gone-client.mjs) runs one long job
 * on each and gets SIGINT mid-job (Ctrl-C); the same program is run again at once. Measured
 * from the SIGINT: until every node was set up for the new program (`servedMs`) and until a job
 * on each returned (`firstResultsMs`). Runs `runs` times on the same nodes; a run not served
 * within `maxWaitMs` is reported as such (today's nodes keep a vanished client for their zombie
 * interval, 3600 s, unless it is recoverable).
 *   node --import tsx bench/client-gone.ts [--runs=3] [--max-wait-ms=60000]   (one JSON document on stdout)
 * Loopback only: nodes on 127.0.0.128 and 127.0.0.129.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { BENCH_SECRET, log, median, ROOT, round, spawnTracked, startNode, stopChild, type BenchNode } from './lib.js';

export const CLIENT_GONE_HOSTS = ['127.0.0.128', '127.0.0.129'];
const CLIENT = join(ROOT, 'bench', 'client-gone-client.mjs');

export interface ClientGoneRun {
  /** SIGINT to every node set up for the next program, ms (null: not within maxWaitMs). */
  servedMs: number | null;
  /** SIGINT to a result from every node, ms (null: not within maxWaitMs). */
  firstResultsMs: number | null;
}

export interface ClientGoneResult {
  runs: ClientGoneRun[];
  servedMsMedian: number | null;
  servedMsMax: number | null;
  maxWaitMs: number;
  targetMs: number;
  note: string;
}

function lines(proc: ChildProcess, onLine: (o: Record<string, unknown>) => void): void {
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        onLine(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not ours
      }
    }
  });
}

function client(mode: 'victim' | 'next', nodes: BenchNode[]): ChildProcess {
  const cfg = { mode, secret: BENCH_SECRET, nodes: nodes.map((n) => ({ host: n.host, port: n.port })) };
  return spawnTracked([CLIENT, JSON.stringify(cfg)]);
}

async function oneRun(nodes: BenchNode[], maxWaitMs: number): Promise<ClientGoneRun> {
  const victim = client('victim', nodes);
  let victimErr = '';
  victim.stderr!.setEncoding('utf8').on('data', (d: string) => (victimErr += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the first program's jobs did not start in 60 s: ${victimErr}`)), 60_000);
    lines(victim, (o) => {
      if (o.event === 'running') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  // Mid-job, as Ctrl-C does.
  const t0 = Date.now();
  const exited = new Promise<void>((r) => victim.once('exit', () => r()));
  process.kill(victim.pid!, 'SIGINT');
  const next = client('next', nodes);
  next.stderr!.resume();
  const initialized = new Map<string, number>();
  const run: ClientGoneRun = { servedMs: null, firstResultsMs: null };
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, maxWaitMs);
    lines(next, (o) => {
      if (o.event === 'initialized') {
        initialized.set(o.ip as string, o.at as number);
        if (initialized.size === nodes.length) run.servedMs = Math.max(...initialized.values()) - t0;
      } else if (o.event === 'result') {
        run.firstResultsMs = (o.at as number) - t0;
        clearTimeout(timer);
        resolve();
      }
    });
    next.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  await exited;
  await stopChild(next, 2000);
  return run;
}

export async function runClientGone(opts: { runs?: number; maxWaitMs?: number } = {}): Promise<ClientGoneResult> {
  const runs = opts.runs ?? 3;
  const maxWaitMs = opts.maxWaitMs ?? 60_000;
  const nodes = await Promise.all(CLIENT_GONE_HOSTS.map((host) => startNode({ host, cpus: 1 })));
  const out: ClientGoneRun[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const r = await oneRun(nodes, maxWaitMs);
      log(`clientGone run ${i + 1}: served ${r.servedMs ?? `not within ${maxWaitMs}`} ms, results ${r.firstResultsMs ?? '-'} ms`);
      out.push(r);
      // A run that timed out leaves the nodes taken: later runs would measure nothing new.
      if (r.servedMs === null) break;
    }
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
  const served = out.map((r) => r.servedMs).filter((v): v is number => v !== null);
  return {
    runs: out,
    servedMsMedian: served.length === out.length ? round(median(served), 0) : null,
    servedMsMax: served.length === out.length ? Math.max(...served) : null,
    maxWaitMs,
    targetMs: 15_000,
    note: 'SIGINT (Ctrl-C) to a program with a 60 s job on each of two nodes, default options; the program run again at once',
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string): number | undefined => {
    const a = process.argv.find((x) => x.startsWith(`--${name}=`));
    return a ? Number(a.split('=')[1]) : undefined;
  };
  const result = await runClientGone({ runs: arg('runs'), maxWaitMs: arg('max-wait-ms') });
  process.stdout.write(`${JSON.stringify({ clientGone: result }, null, 2)}\n`);
  process.exit(0);
}
