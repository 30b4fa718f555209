/**
 * Entry of a job runner process. The daemon forks it (leading its own process group) and hands
 * it jobs over IPC; it evaluates computations, runs its queued jobs one at a time with their
 * output captured, and exits as soon as its IPC channel closes, so it never outlives the daemon.
 * A runner serves the computations of one client program; the daemon retires it when that
 * program is done with the node. What its jobs start carries its tag (host/process-tag.ts) and goes
 * with it; a watchdog thread takes everything down even while a job keeps the main thread busy.
 *
 * The reporting rule: before a job's code is called, the daemon has that job's Started and the
 * Done of every job before it (in the pipe, not in this process's buffers), so a crash, a
 * cancel or a time limit always concerns the job the daemon believes is running.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { writeSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { DispyError, type DispyErrorCode, jobException } from '../errors.js';
import { DEFAULT_MAX_FRAME } from '../protocol/constants.js';
import type { Computation } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import { nextAvgMs } from '../protocol/running-average.js';
import { childrenCpuSeconds } from './child-cpu.js';
import { loadComputation } from './computation-loader.js';
import { formatException, freeVariableOf, type LoadedComputation } from './function-loader.js';
import { TAG_ENV, currentParentPid, killTagged } from '../host/process-tag.js';
import { JobSlot, startArbiter } from './runner-arbiter.js';
import { jobBegins, jobEnds } from './runner-abort.js';
import type { ExtToRunner } from './runner-extensions.js';
import { installRunnerExtras, onExtCommand, setupArguments } from './runner-extras.js';
import {
  KILL_PIPE_FD,
  RunnerCommand,
  RunnerEvent,
  TERMINATE_GRACE,
  type FromRunner,
  type RunnerItem,
  type RunnerJob,
  type ToRunner,
} from './runner-protocol.js';
import { makeSendFiles } from './send-file.js';

/** Bytes of stdout and of stderr kept per job. */
const OUTPUT_LIMIT = Number(process.env.DISPYTS_OUTPUT_LIMIT) || 1024 * 1024;
/** Jobs shorter than this (ms, on average) skip reading their children's CPU time (~10 us). */
const SHORT_MS = 1;
/** This runner's tag (set by the daemon); each job's processes carry `<tag>/j<uid>`. */
const RUNNER_TAG = process.env[TAG_ENV] ?? '';
/** The node's --max-message-size: a larger result or provisional result is refused here. */
const MAX_MESSAGE = Number(process.env.DISPYTS_MAX_MESSAGE_SIZE) || DEFAULT_MAX_FRAME;
/** The daemon, our parent while it lives. */
const DAEMON_PID = currentParentPid();
/** How often (ms) the watchdog thread checks that the daemon is still there. */
const WATCHDOG_MS = 500;

interface Loaded extends LoadedComputation {
  codec: PayloadCodec;
  /** Running average of job wall time (ms). */
  avgMs: number;
  /** The computation's directory: its jobs' working directory and `dispyJobPath`. */
  dir: string;
  /** setup's arguments, which cleanup gets too (as in dispy). */
  setupArgs: unknown[];
}

class OutputBuffer {
  #parts: string[] = [];
  #bytes = 0;
  #truncated = false;
  add(chunk: unknown, encoding?: unknown): void {
    if (this.#truncated) return;
    let s =
      typeof chunk === 'string'
        ? chunk
        : Buffer.from(chunk as Uint8Array).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    const room = OUTPUT_LIMIT - this.#bytes;
    const len = Buffer.byteLength(s);
    if (len > room) {
      s = Buffer.from(s).subarray(0, room).toString('utf8');
      this.#truncated = true;
    }
    this.#parts.push(s);
    this.#bytes += Math.min(len, room);
  }
  text(): string {
    const s = this.#parts.join('');
    return this.#truncated ? `${s}\n[dispyts: output truncated at ${OUTPUT_LIMIT} bytes]\n` : s;
  }
}

interface Current {
  uid: number;
  codec: PayloadCodec;
  out: OutputBuffer;
  err: OutputBuffer;
  finished: boolean;
  fail: (e: unknown) => void;
}

const computations = new Map<string, Loaded>();
const loading = new Map<string, Promise<void>>();
const queue: RunnerJob[] = [];
let current: Current | null = null;
let looping = false;
/** Reports not sent yet: at most the Done of the job that just ended, waiting for the next Started. */
let outbox: RunnerItem[] = [];
/** Which job runs, shared with the kill arbiter. */
const slot = new JobSlot();
/** The computation and job whose code is running, through its callbacks and promises too. */
const jobContext = new AsyncLocalStorage<{ computeId: string; uid: number | null }>();

/**
 * Sends the queued reports. Resolves once they are written to the pipe to the daemon: a job's
 * code that then kills this process cannot take them along.
 */
function flush(): Promise<void> | undefined {
  if (outbox.length === 0) return undefined;
  const items = outbox;
  outbox = [];
  return new Promise((resolve) => {
    // The callback comes once the write completed (it may return false with the write queued).
    if (process.send) process.send({ ev: RunnerEvent.Batch, items } satisfies FromRunner, undefined, undefined, () => resolve());
    else resolve();
  });
}

/** Sends an event now (with a held Done before it, keeping their order). */
function report(item: RunnerItem): void {
  outbox.push(item);
  void flush();
}

// Job output goes to the running job's buffers; output with no job running is dropped.
function patch(stream: NodeJS.WriteStream, pick: (c: Current) => OutputBuffer): void {
  stream.write = ((chunk: unknown, encoding?: unknown, cb?: unknown) => {
    if (current && !current.finished) pick(current).add(chunk, encoding);
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  }) as typeof stream.write;
}
patch(process.stdout, (c) => c.out);
patch(process.stderr, (c) => c.err);

/** dispySendFile: a job's files, home before its Done (send-file.ts). */
const sendFiles = makeSendFiles({
  currentUid: () => (current && !current.finished ? current.uid : null),
  report,
  maxMessage: MAX_MESSAGE,
});

/** Refuses a value that would not fit in a message to the client (throws DISPY_ERR_MESSAGE_TOO_LARGE). */
function checkSize(bytes: Buffer, what: string): Buffer {
  if (bytes.length > MAX_MESSAGE) {
    throw new DispyError(
      'DISPY_ERR_MESSAGE_TOO_LARGE',
      `the job's ${what} encodes to ${bytes.length} bytes, more than the node's maximum message size of ${MAX_MESSAGE} bytes (--max-message-size)`,
    );
  }
  return bytes;
}

function provisional(value: unknown): void {
  if (!current || current.finished) return;
  const bytes = checkSize(current.codec.encode(value, 'the provisional result'), 'provisional result');
  report({ ev: RunnerEvent.Provisional, uid: current.uid, result: bytes.toString('base64') });
}

/**
 * Runners are shared by computations: each job runs with its computation's directory as the
 * working directory (so it opens its files by relative name) and as `dispyJobPath`. The
 * directory is entered when the computation changes (a path may be a new directory by now).
 */
let cwdOf = '';
function enterDir(dir: string, computeId: string): void {
  (globalThis as Record<string, unknown>).dispyJobPath = dir;
  if (cwdOf === computeId) return;
  try {
    process.chdir(dir);
    cwdOf = computeId;
  } catch {
    // The directory is gone (the computation is closing); the job runs where the runner is.
    cwdOf = '';
  }
}

async function run(job: RunnerJob): Promise<void> {
  if (!computations.has(job.computeId)) await loading.get(job.computeId);
  const comp = computations.get(job.computeId);
  // Claimed before Started goes out: a kill of this job the daemon sends after hearing of it
  // finds it running.
  if (!slot.enter(job.uid)) slot.awaitKill();
  const startTime = Date.now();
  const fast = comp !== undefined && comp.avgMs < SHORT_MS;
  outbox.push({ ev: RunnerEvent.Started, uid: job.uid, startTime });
  await flush();
  if (!comp) {
    if (!slot.leave(job.uid)) slot.awaitKill();
    outbox.push({
      ev: RunnerEvent.Done,
      uid: job.uid,
      ok: false,
      result: null,
      exception: jobException(`computation ${job.computeId} is not loaded in this runner`),
      code: 'DISPY_ERR_UNKNOWN_COMPUTATION',
      stdout: '',
      stderr: '',
      cpuTime: 0,
      endTime: Date.now(),
    });
    return;
  }
  let fail!: (e: unknown) => void;
  const failure = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failure.catch(() => undefined);
  const me: Current = { uid: job.uid, codec: comp.codec, out: new OutputBuffer(), err: new OutputBuffer(), finished: false, fail };
  current = me;
  jobBegins(job.uid);
  // Whatever the job starts is marked as the job's.
  if (RUNNER_TAG) process.env[TAG_ENV] = `${RUNNER_TAG}/j${job.uid}`;
  enterDir(comp.dir, job.computeId);
  // CPU of the programs the job ran (reaped children); not read for very short jobs (~10 us).
  const kids0 = fast ? 0 : childrenCpuSeconds();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let ok = true;
  let result: string | null = null;
  let exception: string | null = null;
  let code: DispyErrorCode | null = null;
  let value: unknown;
  try {
    const decoded = comp.codec.decode(Buffer.from(job.args, 'base64'));
    const list = Array.isArray(decoded) ? decoded : [decoded];
    // A job with depends of its own runs the computation rebuilt with them (job-depends.ts).
    const fn = job.depends?.length && comp.withDepends ? comp.withDepends(job.depends) : comp.fn;
    const out = jobContext.run({ computeId: job.computeId, uid: job.uid }, () => fn(...list));
    value = out instanceof Promise ? await Promise.race([out, failure]) : out;
  } catch (err) {
    ok = false;
    exception = formatException(err);
    if (freeVariableOf(err) !== null) code = 'DISPY_ERR_FREE_VARIABLE';
    else if (err && typeof err === 'object' && 'code' in err && err.code === 'DISPY_ERR_SERIALIZE') code = 'DISPY_ERR_SERIALIZE';
    else if (err instanceof DispyError && err.code === 'DISPY_ERR_MESSAGE_TOO_LARGE') code = err.code;
  }
  // Files the job sends home arrive before its final status (no wait for a job that sent none).
  const sending = sendFiles.settle(job.uid);
  if (sending !== undefined) await sending;
  if (ok) {
    try {
      result = checkSize(comp.codec.encode(value, 'the result'), 'result').toString('base64');
    } catch (err) {
      // What cannot travel is named (where in the result, and what it is, or its size), never dropped.
      ok = false;
      exception = `${(err as Error).name}: ${(err as Error).message}`;
      code = err instanceof DispyError && err.code === 'DISPY_ERR_MESSAGE_TOO_LARGE' ? err.code : 'DISPY_ERR_SERIALIZE';
    }
  }
  me.finished = true;
  current = null;
  jobEnds();
  if (RUNNER_TAG) process.env[TAG_ENV] = RUNNER_TAG;
  if (!slot.leave(job.uid)) slot.awaitKill();
  const ms = performance.now() - t0;
  comp.avgMs = nextAvgMs(comp.avgMs, ms);
  const used = process.cpuUsage(cpu0);
  const kids = fast ? 0 : Math.max(0, childrenCpuSeconds() - kids0);
  // Goes out with the next job's Started (see loop), or at once.
  outbox.push({
    ev: RunnerEvent.Done,
    uid: job.uid,
    ok,
    result,
    exception,
    code,
    stdout: me.out.text(),
    stderr: me.err.text(),
    cpuTime: (used.user + used.system) / 1e6 + kids,
    endTime: Date.now(),
  });
}

async function loop(): Promise<void> {
  if (looping) return;
  looping = true;
  try {
    for (let job = queue.shift(); job; job = queue.shift()) {
      await run(job);
      // A Done waits only for a Started that follows at once; never across a wait for anything.
      const next = queue[0];
      if (!next || !computations.has(next.computeId)) void flush();
    }
  } finally {
    looping = false;
    void flush();
  }
}

async function load(msg: Extract<ToRunner, { cmd: RunnerCommand.Load }>): Promise<void> {
  try {
    if (!computations.has(msg.computeId)) {
      const g = globalThis as Record<string, unknown>;
      g.dispyNodeName = msg.nodeName;
      g.dispyNodeIpAddr = msg.nodeIpAddr;
      // setup runs in the computation's directory too (unless a job of another one is running).
      if (!current || current.finished) enterDir(msg.dir, msg.computeId);
      const context = { computeId: msg.computeId, uid: null };
      const loaded = await jobContext.run(context, () =>
        loadComputation(msg.computation, { dir: msg.dir, provisional }, { setup: msg.setup, cleanup: msg.cleanup }),
      );
      const codec = new PayloadCodec(loaded.classes);
      // cleanup gets setup's arguments too.
      const decoded = msg.setupArgs && (loaded.setup || loaded.cleanup) ? codec.decode(Buffer.from(msg.setupArgs, 'base64')) : [];
      const args = Array.isArray(decoded) ? decoded : [decoded];
      if (loaded.setup) {
        // setup runs once per runner, before any job of the computation here.
        const setup = loaded.setup;
        try {
          await jobContext.run(context, () => setup(...setupArguments(msg.nodeValue, codec, args)));
        } catch (err) {
          report({
            ev: RunnerEvent.Loaded,
            computeId: msg.computeId,
            error: { code: 'DISPY_ERR_SETUP', message: `setup failed: ${formatException(err)}` },
          });
          return;
        }
      }
      computations.set(msg.computeId, { ...loaded, codec, avgMs: Infinity, dir: msg.dir, setupArgs: args });
    }
    report({ ev: RunnerEvent.Loaded, computeId: msg.computeId, error: null });
  } catch (err) {
    report({ ev: RunnerEvent.Loaded, computeId: msg.computeId, error: { code: 'DISPY_ERR_COMPUTATION', message: formatException(err) } });
  }
}

/** Runs the computation's cleanup (if this runner set it up) and forgets it. */
async function unload(computeId: string): Promise<void> {
  await loading.get(computeId);
  const comp = computations.get(computeId);
  computations.delete(computeId);
  let error: string | null = null;
  if (comp && (!current || current.finished)) enterDir(comp.dir, computeId);
  const cleanup = comp?.cleanup;
  if (cleanup) {
    try {
      await jobContext.run({ computeId, uid: null }, () => cleanup(...(comp?.setupArgs ?? [])));
    } catch (err) {
      error = formatException(err);
    }
  }
  // Set up again under the same id (resetupNode), it gets a new directory: enter that one.
  if (cwdOf === computeId) cwdOf = '';
  report({ ev: RunnerEvent.Unloaded, computeId, error });
}

/** The daemon is done with this runner: every computation still here runs its cleanup, then it exits. */
async function retire(): Promise<void> {
  await Promise.all([...loading.values()]);
  for (const computeId of [...computations.keys()]) await unload(computeId);
  await flush();
  process.exit(0);
}

// An error thrown asynchronously by a job's code fails that job if it still runs; anything else
// (left behind by a job that ended, or by setup) is reported for the daemon's log and fails no
// job: no other job's status is about it.
function onStray(err: unknown): void {
  const from = jobContext.getStore();
  if (from?.uid != null && current && !current.finished && current.uid === from.uid) {
    current.fail(err);
    return;
  }
  report({ ev: RunnerEvent.Stray, computeId: from?.computeId ?? null, uid: from?.uid ?? null, error: formatException(err) });
}
process.on('uncaughtException', onStray);
process.on('unhandledRejection', onStray);
process.on('disconnect', () => {
  // Nothing the jobs started stays. With the daemon gone nobody else kills our group: we do,
  // ourselves included; otherwise the daemon kills the group once we exited.
  if (RUNNER_TAG) {
    const gone = currentParentPid() !== DAEMON_PID;
    killTagged(RUNNER_TAG, 'SIGKILL', gone ? { groups: [process.pid], ownGroup: true } : {});
    if (gone) process.kill(process.pid, 'SIGKILL');
  }
  process.exit(0);
});

// The watchdog thread fires while a job loops (this thread then never sees `disconnect`).
if (RUNNER_TAG && process.send) {
  const watchdog = new Worker(new URL('./runner-watchdog.js', import.meta.url), {
    workerData: { ppid: DAEMON_PID, tag: RUNNER_TAG, intervalMs: WATCHDOG_MS },
    stdout: true,
    stderr: true,
  });
  watchdog.unref();
  watchdog.on('error', (err) => {
    // Without it a looping job would outlive a dead daemon: say so on the daemon's stderr (fd 2,
    // not the patched stream that captures job output).
    writeSync(2, `dispyts runner ${process.pid}: watchdog thread failed: ${(err as Error).message}\n`);
  });
}
// Module and program computations reach it as a global; functions also get it as a parameter.
(globalThis as Record<string, unknown>).dispyProvisionalResult = provisional;
// A job sends files home with dispySendFile(path) (send-file.ts).
(globalThis as Record<string, unknown>).dispySendFile = sendFiles.sendFile;
// Per-node setup, dispyNodeShared and polite cancels (runner-extras.ts).
installRunnerExtras({
  report: (item) => report(item as unknown as RunnerItem),
  context: jobContext,
  enterDir: (dir, computeId) => {
    if (!current || current.finished) enterDir(dir, computeId);
  },
  provisional,
});

process.on('message', (msg: ToRunner) => {
  switch (msg.cmd) {
    case RunnerCommand.Load: {
      // Loading may be asynchronous (a module import); jobs of it wait for it in run().
      const p = load(msg).finally(() => loading.delete(msg.computeId));
      loading.set(msg.computeId, p);
      break;
    }
    case RunnerCommand.Run:
      queue.push(...msg.jobs);
      void loop();
      break;
    case RunnerCommand.Unload:
      // After the jobs queued before it (the daemon closes a computation once they ended).
      void unload(msg.computeId);
      break;
    case RunnerCommand.Drop: {
      const i = queue.findIndex((j) => j.uid === msg.uid);
      if (i >= 0) {
        queue.splice(i, 1);
        report({ ev: RunnerEvent.Dropped, uid: msg.uid });
      }
      break;
    }
    case RunnerCommand.Retire:
      void retire();
      break;
    case RunnerCommand.FileAck:
      sendFiles.onAck(msg);
      break;
    default:
      onExtCommand(msg as unknown as ExtToRunner);
  }
});

process.send?.({ ev: RunnerEvent.Ready, pid: process.pid } satisfies FromRunner);

// A runner serves one program, so each program's first computation and jobs run in a runner
// that has run nothing yet: what they take the first time (compiling a shipped function, its
// require, the job context's promise hooks, the payload codec, output capture, CPU accounting)
// runs here while the runner waits for its program, and leaves nothing behind.
setImmediate(() => {
  void warmUp().catch((err: unknown) =>
    report({ ev: RunnerEvent.Stray, computeId: null, uid: null, error: `runner warm-up failed: ${formatException(err)}` }),
  );
});

async function warmUp(): Promise<void> {
  const ctx = { dir: process.cwd(), provisional: () => undefined };
  const source: Computation = { kind: 'function', name: 'warm', source: '(x) => x * 2', depends: [] };
  const hooks = { setup: '() => 0', cleanup: null };
  for (let i = 0; i < 3; i++) {
    const loaded = await jobContext.run({ computeId: '', uid: null }, () => loadComputation(source, ctx, hooks));
    const codec = new PayloadCodec(loaded.classes);
    for (let j = 0; j < 100; j++) {
      const args = codec.decode(Buffer.from(codec.encode([j, { a: 'x', b: [1.5, null] }], 'warm-up').toString('base64'), 'base64'));
      const out = jobContext.run({ computeId: '', uid: j }, () => loaded.fn(...(args as unknown[])));
      codec.encode(out instanceof Promise ? await out : out, 'warm-up').toString('base64');
    }
    const buffers = [new OutputBuffer(), new OutputBuffer()];
    for (const b of buffers) b.add('warm-up');
    buffers.map((b) => b.text());
    process.cpuUsage(process.cpuUsage());
    childrenCpuSeconds();
    formatException(new Error('warm-up'));
  }
}

// The kill arbiter answers the daemon's kill requests while a job keeps this thread busy. It
// starts while the runner waits for its first job (a runner that runs a single job, for
// `isolate: 'job'`, is killed directly and does not use it).
startArbiter(slot, KILL_PIPE_FD, TERMINATE_GRACE * 1000).on('error', (err) =>
  report({ ev: RunnerEvent.Stray, computeId: null, uid: null, error: `the runner's kill arbiter failed: ${formatException(err)}` }),
);
