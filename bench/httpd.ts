/**
 * DispyHTTPServer at scale: 1,000 nodes and 10,000 running jobs fed through real events (real
 * DispyNode and DispyJob objects emitted on a real JobCluster's `status` stream, the path the
 * server subscribes to; no daemons, the cluster has no nodes of its own). Measures
 *   - feeding the events (the view updated incrementally),
 *   - `GET /cluster_status` over HTTP on 127.0.0.1: p50/p95 and bytes, unchanged between
 *     requests and with one node changing before each request, beside `JSON.stringify` of the
 *     same data in the same run,
 *   - the `?since=` delta after 10 nodes change (bytes),
 *   - SSE fan-out: 50 viewers on `/events`, rounds of 10 node changes; whether every viewer got
 *     every change, and how long the slowest took.
 */
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { DispyHTTPServer, DispyJob, DispyNode, JobCluster } from '../src/index.js';
import { nodeJson } from '../src/httpd/node-json.js';
import { BENCH_SECRET, log, round, spawnTracked, summarize, type Summary } from './lib.js';

const CLIENT = fileURLToPath(new URL('./http-get-loop.mjs', import.meta.url));

/** Timed GETs from a separate process (a browser's garbage is not the server's). */
async function clientLoop(port: number, path: string, count: number, warmup: number): Promise<{ samplesMs: number[]; bytes: number }> {
  const proc = spawnTracked([CLIENT, String(port), path, String(count), String(warmup)]);
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((r) => proc.once('exit', r));
  if (code !== 0) throw new Error(`HTTP client exited with ${code}: ${err}`);
  return JSON.parse(out);
}

export interface HttpdResult {
  note: string;
  nodes: number;
  runningJobs: number;
  feed: { events: number; ms: number; eventsPerSec: number };
  clusterStatus: { unchanged: Summary; changing: Summary & { changesDuringRun: number }; bytes: number; requests: number; client: string };
  jsonStringify: Summary & { bytes: number };
  delta10: { bytes: number; nodes: number; viaJobEvents: { bytes: number; nodes: number } };
  sse: {
    viewers: number;
    rounds: number;
    changesPerRound: number;
    allViewersGotEveryChange: boolean;
    snapshotBytes: number;
    deltaBytes: number;
    slowestViewerMs: number[];
    medianSlowestMs: number;
  };
}

class C {
  s: string;
  i: number;
  constructor(s: string, i: number) {
    this.s = s;
    this.i = i;
  }
  toString(): string {
    return `C(${this.s}, ${this.i.toFixed(4)})`;
  }
}

async function compute(obj: C, n = 5): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return n * obj.i;
}

/** A GET over a keep-alive agent; resolves with the body. */
function get(agent: http.Agent, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`${path}: ${res.statusCode}`)),
        );
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** One SSE viewer: applies every event's nodes to its own map of ip -> tx. */
class Viewer {
  readonly tx = new Map<string, number>();
  snapshotBytes = 0;
  deltaBytes = 0;
  events = 0;
  readonly #req: http.ClientRequest;
  readonly ready: Promise<void>;
  #onEvent: (() => void) | null = null;

  constructor(port: number) {
    let ready!: () => void;
    this.ready = new Promise((r) => (ready = r));
    this.#req = http.get({ host: '127.0.0.1', port, path: '/events?interval=0.05', agent: false }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('\n');
          if (!data) continue;
          const doc = JSON.parse(data);
          if (doc.resync) this.snapshotBytes = Buffer.byteLength(data);
          else this.deltaBytes = Math.max(this.deltaBytes, Buffer.byteLength(data));
          for (const c of doc.clusters) for (const n of c.nodes) this.tx.set(n.ip_addr, n.tx);
          this.events++;
          if (this.events === 1) ready();
          this.#onEvent?.();
        }
      });
    });
  }

  /** Resolves once `check` holds. */
  async until(check: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!check()) {
      if (performance.now() > deadline) return false;
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.#onEvent = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    return true;
  }

  close(): void {
    this.#req.destroy();
  }
}

export async function runHttpd(opts: {
  nodes: number;
  jobsPerNode: number;
  requests: number;
  viewers: number;
  rounds: number;
}): Promise<HttpdResult> {
  const cluster = new JobCluster(compute, { depends: [C], nodes: [], secret: BENCH_SECRET, name: 'bench' });
  const server = new DispyHTTPServer(cluster, { host: '127.0.0.1', port: 0, pollSec: 1, logLevel: 'warn' });
  const { port } = await server.listening;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const viewers: Viewer[] = [];
  let id = 0;
  const emit = (status: number, node: DispyNode | null, job: DispyJob | null): void => {
    cluster.emit('status', { id: ++id, status: status as never, node, job, cluster });
  };
  try {
    // ---- feed: nodes come up, jobs are created and start running ----
    const nodes: DispyNode[] = [];
    const t0 = performance.now();
    for (let i = 0; i < opts.nodes; i++) {
      // Labels only (never contacted): loopback-looking addresses.
      const n = new DispyNode(`127.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, 9701, `node-${String(i).padStart(4, '0')}`, cluster);
      n.cpus = n.availCpus = n.machineCpus = 16;
      n.platform = 'linux x64 Node v20';
      n.availInfo = { cpu: 87.5, memory: 24_885_354_496, disk: 84_764_405_760, swap: 100 };
      n.updateTime = Date.now();
      nodes.push(n);
      emit(DispyNode.Initialized, n, null);
    }
    const jobs: DispyJob[] = [];
    let uid = 1_000_000;
    for (const n of nodes) {
      for (let k = 0; k < opts.jobsPerNode; k++) {
        const job = new DispyJob(++uid, jobs.length, [new C(String(jobs.length), 1 + (k % 8)), 5 + (k % 15)], cluster);
        jobs.push(job);
        emit(DispyJob.Created, null, job);
        job.status = DispyJob.Running;
        job.startTime = Date.now();
        job.ipAddr = n.ipAddr;
        n.busy++;
        n.tx += 900;
        n.updateTime = Date.now();
        emit(DispyJob.Running, n, job);
      }
    }
    const feedMs = performance.now() - t0;
    const events = id;
    log(`httpd: fed ${events} events in ${round(feedMs, 1)} ms`);

    // ---- GET /cluster_status ----
    const first = JSON.parse(await get(agent, port, '/cluster_status'));
    if (first[0].nodes.length !== opts.nodes || first[0].jobs.running !== jobs.length)
      throw new Error(`view has ${first[0].nodes.length} nodes, ${first[0].jobs.running} running`);
    const still = await clientLoop(port, '/cluster_status', opts.requests, 50);
    const unchanged = still.samplesMs;
    const bytes = still.bytes;
    // A node changes every millisecond meanwhile: most requests find a new state to assemble.
    let changes = 0;
    const churn = setInterval(() => {
      const n = nodes[changes % nodes.length]!;
      n.availInfo = { cpu: 50 + (changes % 50), memory: 24_885_354_496 - changes, disk: 84_764_405_760, swap: 100 };
      n.updateTime = Date.now();
      emit(DispyNode.AvailInfo, n, null);
      changes++;
    }, 1);
    let changing: number[];
    try {
      changing = (await clientLoop(port, '/cluster_status', opts.requests, 50)).samplesMs;
    } finally {
      clearInterval(churn);
    }
    // The same data as plain objects, serialized by JSON.stringify in this run.
    const plain = [{ name: 'bench', jobs: first[0].jobs, nodes: nodes.map(nodeJson) }];
    const stringify: number[] = [];
    let plainBytes = 0;
    for (let i = 0; i < 50; i++) JSON.stringify(plain);
    for (let i = 0; i < opts.requests; i++) {
      const s = performance.now();
      const text = JSON.stringify(plain);
      stringify.push(performance.now() - s);
      plainBytes = text.length;
    }
    const cs = {
      unchanged: summarize(unchanged),
      changing: { ...summarize(changing), changesDuringRun: changes },
      bytes,
      requests: opts.requests,
      client: 'a separate Node process (bench/http-get-loop.mjs), sequential GETs over one keep-alive connection after 50 untimed',
    };
    log(
      `httpd: /cluster_status p50 ${cs.unchanged.p50Ms} ms unchanged, ${cs.changing.p50Ms} ms changing, ${bytes} bytes; JSON.stringify p50 ${summarize(stringify).p50Ms} ms`,
    );

    // ---- ?since= delta after 10 nodes change ----
    const base = JSON.parse(await get(agent, port, '/cluster_updates?since=0'));
    for (let i = 0; i < 10; i++) {
      const n = nodes[i * 97]!;
      n.tx += 1;
      n.updateTime = Date.now();
      emit(DispyNode.AvailInfo, n, null);
    }
    const deltaText = await get(agent, port, `/cluster_updates?since=${base.cursor}&epoch=${base.epoch}`);
    const delta = JSON.parse(deltaText);
    // The same through job events: one job ends on each of 10 nodes.
    const cursor2 = delta.cursor;
    for (let i = 0; i < 10; i++) {
      const n = nodes[i * 89 + 5]!;
      const job = jobs.find((j) => j.ipAddr === n.ipAddr && j.status === DispyJob.Running)!;
      n.busy--;
      n.jobsDone++;
      n.jobTime += 5;
      n.updateTime = Date.now();
      job._settle(DispyJob.Finished);
      emit(DispyJob.Finished, n, job);
    }
    const jobDeltaText = await get(agent, port, `/cluster_updates?since=${cursor2}&epoch=${base.epoch}`);
    const jobDelta = JSON.parse(jobDeltaText);
    const delta10 = {
      bytes: Buffer.byteLength(deltaText),
      nodes: delta.clusters[0]?.nodes.length ?? 0,
      viaJobEvents: { bytes: Buffer.byteLength(jobDeltaText), nodes: jobDelta.clusters[0]?.nodes.length ?? 0 },
    };
    log(`httpd: 10-node delta ${delta10.bytes} bytes (${delta10.nodes} nodes); via job events ${delta10.viaJobEvents.bytes} bytes`);

    // ---- SSE fan-out ----
    for (let i = 0; i < opts.viewers; i++) viewers.push(new Viewer(port));
    await Promise.all(viewers.map((v) => v.ready));
    const slowest: number[] = [];
    let everyChange = true;
    for (let r = 0; r < opts.rounds; r++) {
      const changed: DispyNode[] = [];
      for (let i = 0; i < 10; i++) {
        const n = nodes[(r * 131 + i * 53) % nodes.length]!;
        n.tx = 1_000_000 + r * 100 + i;
        n.updateTime = Date.now();
        emit(DispyNode.AvailInfo, n, null);
        changed.push(n);
      }
      const s = performance.now();
      const got = await Promise.all(viewers.map((v) => v.until(() => changed.every((n) => v.tx.get(n.ipAddr) === n.tx), 10_000)));
      slowest.push(round(performance.now() - s, 1));
      if (!got.every(Boolean)) everyChange = false;
    }
    const sse = {
      viewers: opts.viewers,
      rounds: opts.rounds,
      changesPerRound: 10,
      allViewersGotEveryChange: everyChange,
      snapshotBytes: Math.max(...viewers.map((v) => v.snapshotBytes)),
      deltaBytes: Math.max(...viewers.map((v) => v.deltaBytes)),
      slowestViewerMs: slowest,
      medianSlowestMs: round([...slowest].sort((a, b) => a - b)[Math.floor(slowest.length / 2)]!, 1),
    };
    log(
      `httpd: SSE ${opts.viewers} viewers, every change: ${everyChange}, slowest viewer per round ${slowest.join(', ')} ms (interval 50 ms)`,
    );

    return {
      note: "fed through real events: real DispyNode and DispyJob objects emitted on a real JobCluster's status stream (the server's subscription path), not 1,000 daemons; HTTP on 127.0.0.1 with a keep-alive client; SSE viewers ask for a 50 ms interval",
      nodes: opts.nodes,
      runningJobs: jobs.length,
      feed: { events, ms: round(feedMs, 1), eventsPerSec: round(events / (feedMs / 1000), 0) },
      clusterStatus: cs,
      jsonStringify: { ...summarize(stringify), bytes: plainBytes },
      delta10,
      sse,
    };
  } finally {
    for (const v of viewers) v.close();
    agent.destroy();
    await server.shutdown({ wait: false });
    await cluster.close();
  }
}
