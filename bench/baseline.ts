/**
 * (e) Baseline: sequential request -> reply round trips over the product's authenticated Channel
 * (connectChannel / acceptChannel, loopback TCP, the same secret handling and message schemas a
 * client and a node use: `ping` -> `reply`) between this process and bench/echo-server.ts in a
 * child process.
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { CLIENT_ID } from '../src/client/node-link.js';
import { connectChannel, type Channel } from '../src/protocol/channel.js';
import { nodeMessageSchema, type ClientMessage, type NodeMessage } from '../src/protocol/messages.js';
import { resolveSecret } from '../src/protocol/secret.js';
import { BENCH_SECRET, ROOT, checkDeadline, log, round, spawnTracked, stopChild, summarize, waitForLine } from './lib.js';

export interface BaselineResult {
  transport: string;
  host: string;
  warmup: number;
  roundTrips: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
  wallMs: number;
  roundTripsPerSec: number;
  /**
   * Diagnostic, not a floor: the same sequential round trips over a fork() IPC channel with
   * JSON serialization, the hop between a node daemon and its job runners.
   */
  ipc?: { roundTrips: number; p50Ms: number; p95Ms: number; roundTripsPerSec: number };
}

/** Sequential round trips to a forked child over IPC (JSON serialization, like the runners). */
export async function runIpcBaseline(count = 2000, warmup = 5000): Promise<NonNullable<BaselineResult['ipc']>> {
  const child = fork(join(ROOT, 'bench', 'ipc-echo.mjs'), [], {
    execArgv: [],
    serialization: 'json',
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  try {
    let waiting: (() => void) | null = null;
    child.on('message', () => {
      const w = waiting;
      waiting = null;
      w?.();
    });
    const exited = new Promise<never>((_, rej) => child.once('exit', (c) => rej(new Error(`IPC echo child exited (${c})`))));
    exited.catch(() => undefined);
    const next = (): Promise<void> => Promise.race([new Promise<void>((r) => (waiting = r)), exited]);
    await next(); // ready
    const msg = { cmd: 1, jobs: [{ uid: 1, computeId: 'bench', args: 'kQE=' }] };
    const start = performance.now();
    for (let i = 0; i < warmup; i++) {
      const p = next();
      child.send(msg);
      await p;
      checkDeadline(start, 30_000, 'IPC warm-up');
    }
    const samples: number[] = new Array(count);
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const s = performance.now();
      const p = next();
      child.send(msg);
      await p;
      samples[i] = performance.now() - s;
      checkDeadline(t0, 60_000, 'IPC round trips');
    }
    const wallMs = performance.now() - t0;
    const sum = summarize(samples);
    return { roundTrips: count, p50Ms: sum.p50Ms, p95Ms: sum.p95Ms, roundTripsPerSec: round(count / (wallMs / 1000), 0) };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }
}

export interface EchoServer {
  host: string;
  port: number;
  stop(): Promise<void>;
}

/** Starts bench/echo-server.ts on a loopback address (stopped by PID with `stop`). */
export async function startEchoServer(host: string): Promise<EchoServer> {
  const proc = spawnTracked(['--import', 'tsx', join(ROOT, 'bench', 'echo-server.ts'), host], {
    env: { DISPYTS_BENCH_SECRET: BENCH_SECRET },
  });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-10_000)));
  try {
    const m = await waitForLine(proc, /echo ready on [^\s]+:(\d+)/, 20_000, 'echo server', () => stderr);
    return { host, port: Number(m[1]), stop: () => stopChild(proc, 2000) };
  } catch (err) {
    await stopChild(proc, 1000).catch(() => undefined);
    throw err;
  }
}

/** An authenticated Channel to the echo server, as a client connects to a node. */
export function connectEcho(echo: EchoServer): Promise<Channel<NodeMessage, ClientMessage>> {
  return connectChannel<NodeMessage, ClientMessage>({
    host: echo.host,
    port: echo.port,
    secret: resolveSecret(BENCH_SECRET),
    clientId: CLIENT_ID,
    schema: nodeMessageSchema,
  });
}

export async function runBaseline(opts: { host: string; warmup?: number; roundTrips?: number }): Promise<BaselineResult> {
  const warmup = opts.warmup ?? 5000;
  const count = opts.roundTrips ?? 2000;
  const echo = await startEchoServer(opts.host);
  let ch: Channel<NodeMessage, ClientMessage> | null = null;
  try {
    ch = await connectEcho(echo);
    const channel = ch;
    let waiting: ((msg: NodeMessage) => void) | null = null;
    channel.on('message', (msg) => {
      const w = waiting;
      waiting = null;
      w?.(msg);
    });
    let closedReason: Error | null = null;
    channel.on('close', (reason) => {
      closedReason = reason ?? new Error('echo channel closed');
      const w = waiting;
      waiting = null;
      w?.({ t: 'closing', reason: String(closedReason.message) });
    });
    let rid = 0;
    const roundTrip = (): Promise<NodeMessage> =>
      new Promise((resolve) => {
        waiting = resolve;
        channel.send({ t: 'ping', rid: ++rid });
      });
    const start = performance.now();
    for (let i = 0; i < warmup; i++) {
      const reply = await roundTrip();
      if (reply.t !== 'reply') throw closedReason ?? new Error(`unexpected ${reply.t}`);
      checkDeadline(start, 30_000, 'baseline warm-up');
    }
    const samples: number[] = new Array(count);
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      const s = performance.now();
      const reply = await roundTrip();
      samples[i] = performance.now() - s;
      if (reply.t !== 'reply' || reply.rid !== rid) throw closedReason ?? new Error(`unexpected reply ${JSON.stringify(reply)}`);
      checkDeadline(t0, 60_000, 'baseline round trips');
    }
    const wallMs = performance.now() - t0;
    const sum = summarize(samples);
    const ipc = await runIpcBaseline();
    log(`baseline IPC (diagnostic): p50 ${ipc.p50Ms} ms, p95 ${ipc.p95Ms} ms`);
    log(`baseline: p50 ${sum.p50Ms} ms, p95 ${sum.p95Ms} ms, ${round(count / (wallMs / 1000), 0)} round trips/s`);
    return {
      transport:
        'authenticated Channel (connectChannel/acceptChannel), loopback TCP, ping -> reply with the product schemas, peer in a child process',
      host: opts.host,
      warmup,
      roundTrips: count,
      p50Ms: sum.p50Ms,
      p95Ms: sum.p95Ms,
      p99Ms: sum.p99Ms,
      meanMs: sum.meanMs,
      minMs: sum.minMs,
      maxMs: sum.maxMs,
      wallMs: round(wallMs, 1),
      roundTripsPerSec: round(count / (wallMs / 1000), 0),
      ipc,
    };
  } finally {
    ch?.close();
    await echo.stop();
  }
}
