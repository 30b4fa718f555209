/**
 * Pipelined baseline: what one authenticated Channel carries when many small frames are in flight
 * (the product's Channel to bench/echo-server.ts in a child process, `ping` -> `reply`), in
 * messages (replies) per second. Two shapes, each run several times after an untimed warm-up:
 *   allAtOnce   every ping sent in one turn, then all replies awaited (the Channel batches what is
 *               queued in one turn into frames of up to 512 messages)
 *   window      at most `window` pings outstanding, a new one sent per reply
 * `messagesPerSec` is the higher of the two medians: what the wire carried at best, the ceiling
 * throughput is read against (`fractionOfPipelined`).
 */
import type { ClientMessage, NodeMessage } from '../src/protocol/messages.js';
import type { Channel } from '../src/protocol/channel.js';
import { connectEcho, startEchoServer } from './baseline.js';
import { checkDeadline, log, median, round } from './lib.js';

export interface PipelinedShape {
  runsMessagesPerSec: number[];
  medianMessagesPerSec: number;
}

export interface PipelinedResult {
  transport: string;
  host: string;
  messages: number;
  warmup: number;
  window: number;
  allAtOnce: PipelinedShape;
  windowed: PipelinedShape;
  messagesPerSec: number;
  /** The baseline section's sequential round trips/s of this run, and messagesPerSec over it. */
  bareRoundTripsPerSec: number | null;
  ratioToBareRoundTrips: number | null;
  note: string;
}

const TIME_BOUND_MS = 60_000;

/** Sends `count` pings with at most `window` outstanding; resolves with the wall time in ms. */
function pump(ch: Channel<NodeMessage, ClientMessage>, count: number, window: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let received = 0;
    const t0 = performance.now();
    const timer = setTimeout(() => finish(new Error(`pipelined: ${received}/${count} replies in ${TIME_BOUND_MS} ms`)), TIME_BOUND_MS);
    const onMessage = (msg: NodeMessage): void => {
      if (msg.t !== 'reply') finish(new Error(`pipelined: unexpected ${msg.t}`));
      else if (++received === count) finish(null);
      else if (sent < count) ch.send({ t: 'ping', rid: ++sent });
    };
    const onClose = (): void => finish(new Error(`pipelined: channel closed after ${received}/${count} replies`));
    function finish(err: Error | null): void {
      clearTimeout(timer);
      ch.off('message', onMessage);
      ch.off('close', onClose);
      if (err) reject(err);
      else resolve(performance.now() - t0);
    }
    ch.on('message', onMessage);
    ch.on('close', onClose);
    while (sent < Math.min(window, count)) ch.send({ t: 'ping', rid: ++sent });
  });
}

export async function runPipelined(opts: {
  host: string;
  messages: number;
  warmup: number;
  window: number;
  runs: number;
  bareRoundTripsPerSec?: number;
}): Promise<PipelinedResult> {
  const echo = await startEchoServer(opts.host);
  let ch: Channel<NodeMessage, ClientMessage> | null = null;
  try {
    ch = await connectEcho(echo);
    const start = performance.now();
    await pump(ch, opts.warmup, opts.messages);
    await pump(ch, opts.warmup, opts.window);
    const all: number[] = [];
    const windowed: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      all.push(round(opts.messages / ((await pump(ch, opts.messages, opts.messages)) / 1000), 0));
      windowed.push(round(opts.messages / ((await pump(ch, opts.messages, opts.window)) / 1000), 0));
      checkDeadline(start, 5 * TIME_BOUND_MS, 'pipelined runs');
    }
    const shape = (runs: number[]): PipelinedShape => ({ runsMessagesPerSec: runs, medianMessagesPerSec: round(median(runs), 0) });
    const a = shape(all);
    const w = shape(windowed);
    const best = Math.max(a.medianMessagesPerSec, w.medianMessagesPerSec);
    const bare = opts.bareRoundTripsPerSec !== undefined && Number.isFinite(opts.bareRoundTripsPerSec) ? opts.bareRoundTripsPerSec : null;
    log(`pipelined: all at once ${all.join(', ')} msg/s; window ${opts.window}: ${windowed.join(', ')} msg/s`);
    return {
      transport: 'authenticated Channel (connectChannel/acceptChannel), loopback TCP, ping -> reply, peer in a child process',
      host: opts.host,
      messages: opts.messages,
      warmup: opts.warmup,
      window: opts.window,
      allAtOnce: a,
      windowed: w,
      messagesPerSec: best,
      bareRoundTripsPerSec: bare,
      ratioToBareRoundTrips: bare ? round(best / bare, 2) : null,
      note: `each run: ${opts.messages} pings on one warm channel, timed from the first send to the last reply; messagesPerSec is the higher median of the two shapes`,
    };
  } finally {
    ch?.close();
    await echo.stop();
  }
}
