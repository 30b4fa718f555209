/**
 * A client program for bench/profile.ts: plain JavaScript on the `dist/` of the tree named in its
 * argument (so one harness profiles two builds), its imports loaded before timing. Prints one JSON
 * line with the timed window in microseconds of the monotonic clock (process.hrtime, the clock
 * V8's CPU profiles use), so the harness can cut every process's profile to that window.
 *   node bench/profile-client.mjs '{"root":...,"mode":"first"|"latency","host":...,"port":...,"secret":...}'
 * Modes: first (new JobCluster -> first result of `x => x * 2`), latency (`warmup` then `jobs`
 * sequential submit-and-wait jobs; the window is the timed jobs). It dies with its parent.
 */
import { pathToFileURL } from 'node:url';
import { exitWithParent } from './exit-with-parent.mjs';

const cfg = JSON.parse(process.argv[2]);
const { JobCluster } = await import(pathToFileURL(`${cfg.root}/dist/index.js`).href);
const us = () => Number(process.hrtime.bigint() / 1000n);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const MAX_MS = 120_000;

exitWithParent();

const double = (x) => x * 2;
const started = performance.now();
const bounded = (what) => {
  if (performance.now() - started > MAX_MS) throw new Error(`${what}: exceeded ${MAX_MS} ms`);
};

async function main() {
  if (cfg.mode === 'first') {
    const t0 = us();
    const cluster = new JobCluster(double, { nodes: [{ host: cfg.host, port: cfg.port }], secret: cfg.secret });
    const r = await cluster.submit(21).wait();
    const t1 = us();
    if (r !== 42) throw new Error(`wrong result ${r}`);
    out({ event: 'result', t0, t1, ms: (t1 - t0) / 1000 });
    await cluster.close();
    return;
  }
  const cluster = new JobCluster(double, { nodes: [{ host: cfg.host, port: cfg.port }], secret: cfg.secret });
  for (let i = 0; i < cfg.warmup; i++) {
    if ((await cluster.submit(i).wait()) !== i * 2) throw new Error('wrong warm-up result');
    bounded('warm-up');
  }
  const samples = [];
  const t0 = us();
  for (let i = 0; i < cfg.jobs; i++) {
    const s = performance.now();
    if ((await cluster.submit(i).wait()) !== i * 2) throw new Error('wrong result');
    samples.push(performance.now() - s);
    bounded('jobs');
  }
  const t1 = us();
  samples.sort((a, b) => a - b);
  out({
    event: 'result',
    t0,
    t1,
    p50Ms: samples[Math.floor(samples.length / 2)],
    p95Ms: samples[Math.floor(samples.length * 0.95)],
  });
  await cluster.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    out({ event: 'fatal', message: err.message });
    process.exit(1);
  },
);
