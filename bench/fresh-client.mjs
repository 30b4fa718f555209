/**
 * A fresh client program for bench/fresh.ts: plain JavaScript on dist/ (what a user's program
 * runs; no TypeScript loader), started once per sample. Its imports are static, so they are all
 * loaded and evaluated before any timing starts. Prints one JSON line per event and exits.
 *   node bench/fresh-client.mjs '{"mode":...,"host":...,"port":...,"secret":...}'
 * Modes:
 *   first       new JobCluster -> the first result of one job `x => x * 2` (then closes the cluster)
 *   connect     connectChannel alone: TCP connect + authenticated handshake to bench/echo-server.ts
 * Every line carries `sinceStartMs`: performance.now() when timing began, i.e. the time from the
 * process's start (its time origin) through the imports to the timed part (not timed itself).
 * It dies with its parent (the bench).
 */
import { randomBytes } from 'node:crypto';
import { JobCluster } from '../dist/index.js';
import { connectChannel } from '../dist/protocol/channel.js';
import { nodeMessageSchema } from '../dist/protocol/messages.js';
import { resolveSecret } from '../dist/protocol/secret.js';

const cfg = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const parent = process.ppid;
setInterval(() => {
  try {
    process.kill(parent, 0);
  } catch {
    process.exit(3);
  }
}, 500).unref();

const double = (x) => x * 2;

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

const modes = { first, connect };

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
