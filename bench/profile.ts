/**
 * CPU profiles of the rows that are about first use (U, cold L) and of the scheduler row: every
 * process involved (client, node daemon, its job runners, the scheduler) runs with `--cpu-prof`,
 * and each profile is cut to the timed window (monotonic microseconds, the clock of V8's
 * profiles) and summarised: busy time, self time by area (module loading, zod, msgpackr, crypto,
 * GC, each dispyts file) and the top functions. `--root` profiles another tree's `dist/` with the
 * same harness, so two builds compare side by side.
 *
 *   node --import tsx bench/profile.ts --row=newProgram|newProgramServed|latencyCold|scheduler
 *        [--root=/path/to/tree] [--out=DIR] [--interval=100] [--reps=3] [--json]
 *
 * newProgram: a daemon that served nobody (a new one per repetition, idle 1 s after its ready
 * line), one fresh client: new JobCluster -> first result. newProgramServed: the same against a
 * daemon that served another program just before. latencyCold: a fresh client, 200 warm-up jobs,
 * the window is 500 sequential jobs. scheduler: two SharedJobCluster programs through
 * `dispyts scheduler` to one `--cpus 2` node, 10,000 jobs each after 1,000 warm-up jobs.
 * Loopback only: 127.0.0.95 (node), 127.0.0.97 (scheduler). Processes are stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { BENCH_SECRET, ROOT, log, schedulerArgs, sleep, stopChild, waitForLine } from './lib.js';

const NODE_HOST = '127.0.0.95';
const SCHED_HOST = '127.0.0.97';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface Profile {
  nodes: { id: number; callFrame: CallFrame }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`bad argument ${a}`);
    return [m[1], m[2] ?? 'true'];
  }),
) as Record<string, string>;
const row = args.row ?? 'newProgram';
const root = resolve(args.root ?? ROOT);
const outDir = args.out ?? mkdtempSync(join(tmpdir(), 'dispyts-profile-'));
const interval = Number(args.interval ?? 100);
const reps = Number(args.reps ?? 3);
const cli = join(root, 'dist', 'cli', 'main.js');
const us = (): number => Number(process.hrtime.bigint() / 1000n);

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
});

function start(argv: string[], dir: string): ChildProcess {
  mkdirSync(dir, { recursive: true });
  // Node takes --cpu-prof only on its command line; a daemon passes it to its runners through
  // DISPYTS_RUNNER_EXEC_ARGV (runner.ts).
  const flags = [`--cpu-prof`, `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${interval}`];
  const p = spawn(process.execPath, [...flags, ...argv], {
    stdio: ['pipe', 'pipe', 'pipe'],
    cwd: root,
    env: { ...process.env, DISPYTS_RUNNER_EXEC_ARGV: flags.join(' ') },
  });
  children.add(p);
  p.once('exit', () => children.delete(p));
  return p;
}

function tail(p: ChildProcess): () => string {
  let s = '';
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (s = (s + d).slice(-8000)));
  return () => s;
}

async function startDaemon(dir: string, cpus = 2): Promise<{ proc: ChildProcess; port: number; prefix: string }> {
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-prof-node-'));
  const proc = start(
    [cli, 'node', '--host', NODE_HOST, '--port', '0', '--cpus', String(cpus), '--secret', BENCH_SECRET, '--dest-path-prefix', prefix],
    dir,
  );
  const err = tail(proc);
  const m = await waitForLine(proc, /ready on [^\s]+:(\d+)/, 30_000, 'node', err);
  return { proc, port: Number(m[1]), prefix };
}

async function runClient(
  config: Record<string, unknown>,
  dir: string,
): Promise<{ t0: number; t1: number; pid: number } & Record<string, unknown>> {
  const p = start([join(ROOT, 'bench', 'profile-client.mjs'), JSON.stringify({ root, secret: BENCH_SECRET, ...config })], dir);
  const err = tail(p);
  let out = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  const line = out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l.event === 'result');
  if (code !== 0 || !line) throw new Error(`client failed (${code}): ${out} ${err()}`);
  return { ...(line as { t0: number; t1: number }), pid: p.pid! };
}

// ---- summaries ----

function area(cf: CallFrame): string {
  const { url, functionName } = cf;
  if (!url) return functionName.startsWith('(') ? functionName : `(native) ${functionName || 'anonymous'}`;
  if (url.startsWith('node:internal/modules') || url.startsWith('node:internal/vm')) return 'node: module loading';
  if (url.startsWith('node:internal/crypto') || url === 'node:crypto') return 'node: crypto';
  if (url.startsWith('node:internal/child_process') || url === 'node:child_process') return 'node: child_process/IPC';
  if (url.startsWith('node:'))
    return `node: ${
      url
        .slice(5)
        .replace(/^internal\//, '')
        .split('/')[0]
    }`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `npm: ${nm[1]}`;
  const d = /\/dist\/(.+)\.js$/.exec(url);
  if (d) return `dispyts: ${d[1]}`;
  if (url.includes('/bench/')) return 'bench client';
  return 'other: computation code';
}

interface Summary {
  process: string;
  file: string;
  windowMs: number;
  busyMs: number;
  areas: [string, number][];
  top: [string, number][];
}

function summarize(file: string, label: string, t0: number, t1: number): Summary | null {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  let t = p.startTime;
  let busy = 0;
  let inWindow = 0;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    const next = p.timeDeltas[i + 1] ?? 0;
    if (t < t0 || t > t1) continue;
    inWindow++;
    const cf = byId.get(p.samples[i]!)!;
    if (cf.functionName === '(idle)' || cf.functionName === '(root)') continue;
    busy += next;
    const a = area(cf);
    areas.set(a, (areas.get(a) ?? 0) + next);
    const name = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
    fns.set(name, (fns.get(name) ?? 0) + next);
  }
  if (inWindow === 0) return null;
  const ms = (v: number): number => Math.round(v / 10) / 100;
  const sorted = (m: Map<string, number>, n: number): [string, number][] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => [k, ms(v)]);
  return { process: label, file, windowMs: ms(t1 - t0), busyMs: ms(busy), areas: sorted(areas, 14), top: sorted(fns, 14) };
}

/** Profiles in `dir` written by `pid` (names: CPU.<date>.<pid>.<tid>.<seq>.cpuprofile). */
function profilesOf(dir: string): { file: string; pid: number; tid: number }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => {
      const parts = f.split('.');
      return { file: join(dir, f), pid: Number(parts[3]), tid: Number(parts[4]) };
    });
}

function report(
  title: string,
  window: { t0: number; t1: number },
  sets: { dir: string; label: (pid: number, tid: number) => string }[],
): Summary[] {
  const out: Summary[] = [];
  for (const s of sets) {
    for (const f of profilesOf(s.dir)) {
      const sum = summarize(f.file, s.label(f.pid, f.tid), window.t0, window.t1);
      if (sum && sum.busyMs > 0) out.push(sum);
    }
  }
  if (!args.json) {
    console.log(`\n=== ${title}: window ${((window.t1 - window.t0) / 1000).toFixed(2)} ms`);
    for (const s of out) {
      console.log(`--- ${s.process}: busy ${s.busyMs} ms of ${s.windowMs} ms`);
      for (const [k, v] of s.areas) console.log(`    ${String(v).padStart(8)}  ${k}`);
      console.log('    top functions (self):');
      for (const [k, v] of s.top) console.log(`    ${String(v).padStart(8)}  ${k}`);
    }
  }
  return out;
}

// ---- rows ----

async function newProgram(served: boolean): Promise<void> {
  for (let i = 0; i < reps; i++) {
    const dir = join(outDir, `${row}-${i}`);
    const d = await startDaemon(join(dir, 'daemon'));
    try {
      await sleep(1000);
      if (served) await runClient({ mode: 'first', host: NODE_HOST, port: d.port }, join(dir, 'priming'));
      if (served) await sleep(300);
      const r = await runClient({ mode: 'first', host: NODE_HOST, port: d.port }, join(dir, 'client'));
      log(`${row} ${i + 1}: ${r.ms} ms`);
      // Its runners retire once the program closed (writing their profiles); then the daemon stops.
      await sleep(500);
      await stopChild(d.proc);
      const daemonPid = d.proc.pid!;
      report(`${row} ${i + 1} (${root})`, r, [
        { dir: join(dir, 'client'), label: (pid, tid) => `client${tid ? ` thread ${tid}` : ''} ${pid}` },
        {
          dir: join(dir, 'daemon'),
          label: (pid, tid) => `${pid === daemonPid ? 'daemon' : 'runner'}${tid ? ` thread ${tid}` : ''} ${pid}`,
        },
      ]);
    } finally {
      await stopChild(d.proc).catch(() => undefined);
      rmSync(d.prefix, { recursive: true, force: true });
    }
  }
}

async function latencyCold(): Promise<void> {
  const dir = join(outDir, row);
  const d = await startDaemon(join(dir, 'daemon'));
  try {
    await sleep(1000);
    const r = await runClient({ mode: 'latency', host: NODE_HOST, port: d.port, warmup: 200, jobs: 500 }, join(dir, 'client'));
    log(`latencyCold: p50 ${r.p50Ms} ms, p95 ${r.p95Ms} ms`);
    await sleep(500);
    await stopChild(d.proc);
    const daemonPid = d.proc.pid!;
    report(`latencyCold (${root})`, r, [
      { dir: join(dir, 'client'), label: (pid, tid) => `client${tid ? ` thread ${tid}` : ''} ${pid}` },
      { dir: join(dir, 'daemon'), label: (pid, tid) => `${pid === daemonPid ? 'daemon' : 'runner'}${tid ? ` thread ${tid}` : ''} ${pid}` },
    ]);
  } finally {
    await stopChild(d.proc).catch(() => undefined);
    rmSync(d.prefix, { recursive: true, force: true });
  }
}

async function scheduler(): Promise<void> {
  const dir = join(outDir, row);
  const d = await startDaemon(join(dir, 'daemon'));
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-prof-sched-'));
  const sched = start(schedulerArgs(SCHED_HOST, `${NODE_HOST}:${d.port}`, prefix, cli), join(dir, 'scheduler'));
  try {
    const m = await waitForLine(sched, /scheduler ready on [^\s]+:(\d+)/, 30_000, 'scheduler', tail(sched));
    const port = Number(m[1]);
    const clients = ['a', 'b'].map((name) => {
      const p = start(
        [
          join(root, 'test', 'fixtures', 'shared-client.mjs'),
          JSON.stringify({
            schedulerHost: SCHED_HOST,
            schedulerPort: port,
            secret: BENCH_SECRET,
            name: `prof-${name}`,
            jobs: 10_000,
            ms: 0,
            fn: 'double',
            quiet: true,
            waitForGo: true,
            warmup: 1000,
          }),
        ],
        join(dir, `client-${name}`),
      );
      let buf = '';
      const seen: string[] = [];
      p.stdout!.setEncoding('utf8').on('data', (s: string) => {
        buf += s;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          seen.push((JSON.parse(buf.slice(0, i)) as { event: string }).event);
          buf = buf.slice(i + 1);
        }
      });
      const until = async (ev: string): Promise<void> => {
        const s = performance.now();
        while (!seen.includes(ev)) {
          if (seen.includes('fatal') || p.exitCode !== null) throw new Error(`client ${name} failed before ${ev}`);
          if (performance.now() - s > 120_000) throw new Error(`client ${name}: no ${ev}`);
          await sleep(5);
        }
      };
      return { p, until };
    });
    await Promise.all(clients.map((c) => c.until('waiting')));
    const t0 = us();
    for (const c of clients) c.p.stdin!.write('go\n');
    await Promise.all(clients.map((c) => c.until('summary')));
    const t1 = us();
    log(`scheduler: ${Math.round(20_000 / ((t1 - t0) / 1e6))} jobs/s`);
    await Promise.all(clients.map((c) => c.until('closed')));
    await Promise.all(clients.map((c) => new Promise((r) => (c.p.exitCode !== null ? r(null) : c.p.once('exit', r)))));
    await sleep(500);
    await stopChild(sched);
    await stopChild(d.proc);
    const daemonPid = d.proc.pid!;
    report(`scheduler (${root})`, { t0, t1 }, [
      { dir: join(dir, 'client-a'), label: (pid, tid) => `client a${tid ? ` thread ${tid}` : ''} ${pid}` },
      { dir: join(dir, 'client-b'), label: (pid, tid) => `client b${tid ? ` thread ${tid}` : ''} ${pid}` },
      { dir: join(dir, 'scheduler'), label: (pid, tid) => `scheduler${tid ? ` thread ${tid}` : ''} ${pid}` },
      { dir: join(dir, 'daemon'), label: (pid, tid) => `${pid === daemonPid ? 'daemon' : 'runner'}${tid ? ` thread ${tid}` : ''} ${pid}` },
    ]);
  } finally {
    await stopChild(sched).catch(() => undefined);
    await stopChild(d.proc).catch(() => undefined);
    rmSync(d.prefix, { recursive: true, force: true });
    rmSync(prefix, { recursive: true, force: true });
  }
}

log(`profiles in ${outDir}`);
if (row === 'newProgram' || row === 'newProgramServed') await newProgram(row === 'newProgramServed');
else if (row === 'latencyCold') await latencyCold();
else if (row === 'scheduler') await scheduler();
else throw new Error(`unknown row ${row}`);
