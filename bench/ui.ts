/**
 * Browser benchmark of the Monitor page (Chromium via playwright-core), fed by the real
 * DispyHTTPServer from a synthetic cluster of 1,000 nodes (events as a JobCluster emits them; no
 * daemon, nothing leaves loopback):
 *   firstPaint   time from the snapshot's body being received to the first paint of the nodes
 *                table (median of fresh page loads)
 *   updates      10% of the nodes change each second, streamed over SSE: script time from a
 *                delta's arrival to the DOM being ready to paint (parse + apply + render), the
 *                latency to the frame after it, and Chrome's own ScriptDuration per update
 * Floors (issue 5): first paint <= 300 ms; <= 16 ms of script per update.
 */
import { EventEmitter } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyHTTPServer } from '../src/index.js';
import type { DispyCluster } from '../src/client/dispy-cluster.js';
import { DispyNode } from '../src/client/dispy-node.js';
import { NodeStatus } from '../src/client/status.js';
import { browserUnavailable, launchChromium } from '../test/helpers/browser.js';
import { log, median, round, summarize, type Summary } from './lib.js';

export interface UiBenchOptions {
  nodes?: number;
  /** Share of the nodes changed each second. */
  changeFraction?: number;
  /** Seconds of updates measured. */
  seconds?: number;
  /** Fresh page loads for the first-paint figure. */
  firstPaintRuns?: number;
}

export interface UiBenchResult {
  skipped?: string;
  nodes: number;
  chromium: string;
  viewport: string;
  firstPaint: {
    runsMs: number[];
    medianMs: number;
    minMs: number;
    /** CPU time of the page's main thread in the same interval (from a trace): the work itself, whatever else the machine runs. */
    cpuRunsMs: number[];
    cpuMedianMs: number;
    rowsInDom: number;
    snapshotBytes: number;
  };
  /** Load average of this machine at the start and the end (the bench shares it with whatever else runs). */
  loadavg: { start: number[]; end: number[] };
  updates: {
    changedPerSecond: number;
    messages: number;
    deltaBytesMedian: number;
    /** Arrival of the SSE message to the DOM updated (JSON.parse, apply, render). */
    scriptMs: Summary;
    /** Arrival to the task after the next frame (what the viewer waits for). */
    paintLatencyMs: Summary;
    /** Main-thread CPU time over the whole run divided by the messages (script, style, layout, paint, charts, GC: everything). */
    cpuPerUpdateMs: number;
    /** The script part of it (parse, apply, render, effects, charts): CPU time, so the machine's other load does not count. */
    scriptCpuPerUpdateMs: number;
    /** Chrome's ScriptDuration over the run divided by the messages (all script, effects and charts included). */
    chromeScriptPerUpdateMs: number;
    chromeLayoutPerUpdateMs: number;
    chromeStylePerUpdateMs: number;
    /** The page's totals agreed with the synthetic cluster at the end. */
    consistent: boolean;
  };
  note: string;
}

/** A stand-in cluster: what DispyHTTPServer needs (name, status events, status()). */
class SyntheticCluster extends EventEmitter {
  readonly name = 'bench';
  readonly nodes: DispyNode[] = [];

  constructor(n: number) {
    super();
    for (let i = 0; i < n; i++) {
      // Loopback-range strings: only ever shown, never connected to.
      const ip = `127.1.${i >> 8}.${i & 255}`;
      // Only the HTTP server reads it, through what it needs of a cluster (ViewedCluster).
      const node = new DispyNode(ip, 9701, `node-${String(i).padStart(4, '0')}`, this as unknown as DispyCluster);
      node.cpus = node.availCpus = node.machineCpus = 8;
      node.busy = i % 9;
      node.jobsDone = i * 3;
      node.jobTime = i * 7.5;
      node.cpuUsed = i * 6.1;
      node.tx = 1000 + i * 17;
      node.rx = 2000 + i * 13;
      node.availInfo = { cpu: 50 + (i % 50), memory: 8e9 + i * 1e6, disk: 1e11 + i * 1e7, swap: 100 };
      this.nodes.push(node);
    }
  }

  status(): { nodes: DispyNode[] } {
    return { nodes: this.nodes };
  }

  /** Changes `count` nodes (a rotating window) as a running cluster would, emitting their events. */
  change(count: number, round: number): void {
    const n = this.nodes.length;
    for (let k = 0; k < count; k++) {
      const node = this.nodes[(round * count + k) % n]!;
      node.jobsDone += 1;
      node.jobTime += 2.5;
      node.cpuUsed += 2.1;
      node.busy = (node.busy + 3) % (node.cpus + 1);
      node.tx += 300;
      node.rx += 200;
      node.updateTime = Date.now();
      node.availInfo = { cpu: (node.availInfo!.cpu + 37) % 100, memory: node.availInfo!.memory, disk: node.availInfo!.disk, swap: 100 };
      this.emit('status', { id: 0, status: NodeStatus.AvailInfo, node, job: null, cluster: this });
    }
  }

  totalDone(): number {
    return this.nodes.reduce((a, n) => a + n.jobsDone, 0);
  }
}

/** Installed in the page before its scripts: timestamps around the app's fetch and stream. */
export const INSTRUMENT = `(() => {
  const b = (window.__bench = { firstPaint: null, firstRows: 0, snapshotBytes: 0, updates: [] });
  const text = Response.prototype.text;
  Response.prototype.text = async function () {
    const body = await text.call(this);
    if (this.url.includes('cluster_updates') && b.firstPaint === null && b.snapshotBytes === 0) {
      const t0 = performance.now();
      b.snapshotBytes = body.length;
      const wait = () => requestAnimationFrame(() => {
        if (document.querySelectorAll('table.nodes tr.row').length === 0) return wait();
        setTimeout(() => {
          b.firstPaint = performance.now() - t0;
          b.firstRows = document.querySelectorAll('table.nodes tr.row').length;
          performance.mark('bench:t0', { startTime: t0 });
          performance.mark('bench:painted');
        }, 0);
      });
      wait();
    }
    return body;
  };
  const ES = window.EventSource;
  class TimedEventSource extends ES {
    set onmessage(fn) {
      super.onmessage = fn && ((ev) => {
        const t0 = performance.now();
        fn.call(this, ev);
        // Preact renders in a microtask queued during the handler: ours runs after it.
        queueMicrotask(() => queueMicrotask(() => {
          const script = performance.now() - t0;
          requestAnimationFrame(() => setTimeout(() => b.updates.push({ script, paint: performance.now() - t0, bytes: ev.data.length }), 0));
        }));
      });
    }
    get onmessage() { return super.onmessage; }
  }
  window.EventSource = TimedEventSource;
})();`;

/** Trace events that run page script (the outermost of nested ones is counted). */
const SCRIPT_EVENTS = new Set([
  'FunctionCall',
  'RunMicrotasks',
  'TimerFire',
  'FireAnimationFrame',
  'EvaluateScript',
  'EventDispatch',
  'v8.callFunction',
]);

/**
 * CPU time (ms) the renderer's main thread spent between the page's marks `from` and `until`,
 * from a Chrome trace: all tasks (`total`) and page script alone (`script`), each event's thread
 * time prorated when it straddles an end. Null when the trace lacks what is needed.
 */
export function mainThreadCpu(path: string, from = 'bench:t0', until = 'bench:painted'): { total: number; script: number } | null {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as { traceEvents?: TraceEvent[] } | TraceEvent[];
  const events = Array.isArray(raw) ? raw : (raw.traceEvents ?? []);
  const t0 = events.find((e) => e.name === from);
  const t1 = events.find((e) => e.name === until);
  if (!t0 || !t1) return null;
  const main = events.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === t1.pid && e.args?.name === 'CrRendererMain');
  const tid = main?.tid ?? t1.tid;
  const share = (e: TraceEvent): number => {
    const a = Math.max(e.ts, t0.ts);
    const b = Math.min(e.ts + e.dur!, t1.ts);
    return b > a ? (e.tdur! * (b - a)) / e.dur! : 0;
  };
  let total = 0;
  let script = 0;
  let scriptEnd = -Infinity;
  const onMain = events
    .filter((e) => e.pid === t1.pid && e.tid === tid && e.ph === 'X' && e.dur && e.tdur !== undefined)
    .sort((a, b) => a.ts - b.ts);
  for (const e of onMain) {
    if (e.name === 'RunTask') total += share(e);
    else if (SCRIPT_EVENTS.has(e.name) && e.ts >= scriptEnd) {
      script += share(e);
      scriptEnd = e.ts + e.dur!;
    }
  }
  return { total: total / 1000, script: script / 1000 };
}

interface TraceEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  tdur?: number;
  args?: { name?: string };
}

export interface PageBench {
  firstPaint: number | null;
  firstRows: number;
  snapshotBytes: number;
  updates: Array<{ script: number; paint: number; bytes: number }>;
}

export async function runUi(opts: UiBenchOptions = {}): Promise<UiBenchResult | { skipped: string }> {
  const skipped = browserUnavailable();
  if (skipped) return { skipped };
  const nodes = opts.nodes ?? 1000;
  const perSecond = Math.round(nodes * (opts.changeFraction ?? 0.1));
  const seconds = opts.seconds ?? 15;
  const runs = opts.firstPaintRuns ?? 5;
  const loadStart = os.loadavg().map((v) => round(v, 2));
  const cluster = new SyntheticCluster(nodes);
  const server = new DispyHTTPServer(cluster, { host: '127.0.0.1', port: 0, pollSec: 1, logLevel: 'warn' });
  const { url } = await server.listening;
  const browser = await launchChromium();
  let timer: NodeJS.Timeout | null = null;
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await ctx.addInitScript(INSTRUMENT);
    const firstPaints: number[] = [];
    let rowsInDom = 0;
    let snapshotBytes = 0;
    const cpu: number[] = [];
    const tracePath = join(tmpdir(), `dispyts-ui-trace-${process.pid}.json`);
    for (let i = 0; i < runs; i++) {
      const page = await ctx.newPage();
      await browser.startTracing(page, {
        path: tracePath,
        categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink.user_timing'],
      });
      await page.goto(`${url}/`);
      const r = await page.waitForFunction(() => (window as unknown as { __bench: PageBench }).__bench.firstPaint, undefined, {
        timeout: 30_000,
      });
      const fp = (await r.jsonValue()) as number;
      const b = (await page.evaluate(() => (window as unknown as { __bench: PageBench }).__bench)) as PageBench;
      await browser.stopTracing();
      const cpuMs = mainThreadCpu(tracePath)?.total ?? null;
      rmSync(tracePath, { force: true });
      rowsInDom = b.firstRows;
      snapshotBytes = b.snapshotBytes;
      firstPaints.push(round(fp, 1));
      if (cpuMs !== null) cpu.push(round(cpuMs, 1));
      log(
        `ui first paint ${i + 1}: ${round(fp, 1)} ms, main-thread CPU ${cpuMs === null ? '?' : round(cpuMs, 1)} ms (${b.firstRows} rows in the DOM of ${nodes}, snapshot ${b.snapshotBytes} bytes)`,
      );
      if (i < runs - 1) await page.close();
    }
    // The last page stays open for the updates.
    const page = ctx.pages()[ctx.pages().length - 1]!;
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Performance.enable');
    await page.waitForTimeout(1500);
    const metrics = async () =>
      Object.fromEntries(
        ((await cdp.send('Performance.getMetrics')) as { metrics: { name: string; value: number }[] }).metrics.map((m) => [
          m.name,
          m.value,
        ]),
      );
    await browser.startTracing(page, {
      path: tracePath,
      categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink.user_timing'],
    });
    const before = await metrics();
    const startCount = (await page.evaluate(() => {
      performance.mark('bench:updates-start');
      return (window as unknown as { __bench: PageBench }).__bench.updates.length;
    })) as number;
    let round_ = 0;
    timer = setInterval(() => cluster.change(perSecond, round_++), 1000);
    await page.waitForTimeout(seconds * 1000 + 200);
    clearInterval(timer);
    timer = null;
    // Let the last change arrive.
    await page.waitForTimeout(1500);
    const after = await metrics();
    const b = (await page.evaluate(() => {
      performance.mark('bench:updates-end');
      return (window as unknown as { __bench: PageBench }).__bench;
    })) as PageBench;
    await browser.stopTracing();
    const updatesCpu = mainThreadCpu(tracePath, 'bench:updates-start', 'bench:updates-end');
    rmSync(tracePath, { force: true });
    const ups = b.updates.slice(startCount);
    const want = cluster.totalDone();
    const shown = Number(((await page.locator('[data-testid=total-done]').textContent()) ?? '').replace(/[^0-9]/g, ''));
    const per = (k: string) => (ups.length ? round(((after[k]! - before[k]!) * 1000) / ups.length, 3) : NaN);
    const result: UiBenchResult = {
      nodes,
      chromium: browser.version(),
      viewport: '1280x900',
      firstPaint: {
        runsMs: firstPaints,
        medianMs: round(median(firstPaints), 1),
        minMs: Math.min(...firstPaints),
        cpuRunsMs: cpu,
        cpuMedianMs: cpu.length ? round(median(cpu), 1) : NaN,
        rowsInDom,
        snapshotBytes,
      },
      loadavg: { start: loadStart, end: os.loadavg().map((v) => round(v, 2)) },
      updates: {
        changedPerSecond: perSecond,
        messages: ups.length,
        deltaBytesMedian: median(ups.map((u) => u.bytes)),
        scriptMs: summarize(ups.map((u) => u.script)),
        paintLatencyMs: summarize(ups.map((u) => u.paint)),
        cpuPerUpdateMs: updatesCpu === null || !ups.length ? NaN : round(updatesCpu.total / ups.length, 2),
        scriptCpuPerUpdateMs: updatesCpu === null || !ups.length ? NaN : round(updatesCpu.script / ups.length, 2),
        chromeScriptPerUpdateMs: per('ScriptDuration'),
        chromeLayoutPerUpdateMs: per('LayoutDuration'),
        chromeStylePerUpdateMs: per('RecalcStyleDuration'),
        consistent: shown === want,
      },
      note: `real DispyHTTPServer, synthetic cluster of ${nodes} nodes; SSE at 1 s; ${perSecond} nodes changed each second for ${seconds} s; windowed table (${rowsInDom} rows in the DOM)`,
    };
    log(
      `ui updates: ${ups.length} messages, script p50 ${result.updates.scriptMs.p50Ms} ms p95 ${result.updates.scriptMs.p95Ms} ms, main-thread CPU/update ${result.updates.cpuPerUpdateMs} ms (script ${result.updates.scriptCpuPerUpdateMs} ms), chrome script/update ${result.updates.chromeScriptPerUpdateMs} ms, totals consistent: ${result.updates.consistent} (${shown} vs ${want})`,
    );
    await ctx.close();
    return result;
  } finally {
    if (timer) clearInterval(timer);
    await browser.close().catch(() => undefined);
    await server.shutdown({ wait: false });
  }
}

// `node --import tsx bench/ui.ts` runs this section alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  runUi().then(
    (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
    (err: unknown) => {
      log(`ui bench failed: ${(err as Error).stack ?? String(err)}`);
      process.exitCode = 1;
    },
  );
}
