/**
 * Entry of a job runner process. The daemon forks it (its own process group) and feeds it one
 * job at a time over IPC; it evaluates computations, runs jobs with their output captured, and
 * exits as soon as its IPC channel closes, so it never outlives the daemon.
 */
import { PayloadCodec } from '../protocol/payload.js';
import { formatException, loadFunctionComputation, type LoadedComputation } from './function-loader.js';
import { RunnerCommand, RunnerEvent, type FromRunner, type ToRunner } from './runner-protocol.js';

/** Default bytes of stdout and of stderr kept per job. */
const OUTPUT_LIMIT = Number(process.env.DISPYTS_OUTPUT_LIMIT) || 1024 * 1024;

interface Loaded extends LoadedComputation {
  codec: PayloadCodec;
}

interface Current {
  uid: number;
  codec: PayloadCodec;
  out: OutputBuffer;
  err: OutputBuffer;
  finished: boolean;
  resolveFailure: (e: unknown) => void;
}

class OutputBuffer {
  #parts: string[] = [];
  #bytes = 0;
  #truncated = false;
  add(chunk: unknown, encoding?: unknown): void {
    if (this.#truncated) return;
    let s = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString(typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
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

const computations = new Map<string, Loaded>();
let current: Current | null = null;

function send(msg: FromRunner): void {
  process.send?.(msg);
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

function provisional(value: unknown): void {
  if (!current || current.finished) return;
  send({ ev: RunnerEvent.Provisional, uid: current.uid, result: current.codec.encode(value) });
}

async function run(uid: number, computeId: string, args: Uint8Array): Promise<void> {
  const comp = computations.get(computeId);
  const cpu0 = process.cpuUsage();
  if (!comp) {
    send({ ev: RunnerEvent.Done, uid, ok: false, result: null, exception: `DispyError: computation ${computeId} is not loaded in this runner`, code: 'DISPY_ERR_UNKNOWN_COMPUTATION', stdout: '', stderr: '', cpuTime: 0 });
    return;
  }
  let failWith!: (e: unknown) => void;
  const failure = new Promise<never>((_, reject) => {
    failWith = reject;
  });
  const job: Current = { uid, codec: comp.codec, out: new OutputBuffer(), err: new OutputBuffer(), finished: false, resolveFailure: failWith };
  current = job;
  let ok = true;
  let result: Uint8Array | null = null;
  let exception: string | null = null;
  let code: string | null = null;
  try {
    const decoded = comp.codec.decode(args);
    const list = Array.isArray(decoded) ? decoded : [decoded];
    const value = await Promise.race([Promise.resolve(comp.fn(...list)), failure]);
    result = comp.codec.encode(value);
  } catch (err) {
    ok = false;
    exception = formatException(err);
    if (err instanceof ReferenceError && /is not defined/.test(err.message)) code = 'DISPY_ERR_FREE_VARIABLE';
    else if (err && typeof err === 'object' && 'code' in err && err.code === 'DISPY_ERR_SERIALIZE') code = 'DISPY_ERR_SERIALIZE';
  }
  job.finished = true;
  current = null;
  const used = process.cpuUsage(cpu0);
  send({ ev: RunnerEvent.Done, uid, ok, result, exception, code, stdout: job.out.text(), stderr: job.err.text(), cpuTime: (used.user + used.system) / 1e6 });
}

function load(msg: Extract<ToRunner, { cmd: RunnerCommand.Load }>): void {
  try {
    if (!computations.has(msg.computeId)) {
      (globalThis as Record<string, unknown>).dispyNodeName = msg.nodeName;
      (globalThis as Record<string, unknown>).dispyNodeIpAddr = msg.nodeIpAddr;
      (globalThis as Record<string, unknown>).dispyJobPath = msg.dir;
      const c = msg.computation;
      const loaded = loadFunctionComputation(c, { dir: msg.dir, provisional });
      computations.set(msg.computeId, { ...loaded, codec: new PayloadCodec(loaded.classes) });
    }
    send({ ev: RunnerEvent.Loaded, computeId: msg.computeId, error: null });
  } catch (err) {
    send({ ev: RunnerEvent.Loaded, computeId: msg.computeId, error: { code: 'DISPY_ERR_COMPUTATION', message: formatException(err) } });
  }
}

// An error thrown asynchronously by job code fails that job instead of the runner.
function onStray(err: unknown): void {
  if (current && !current.finished) current.resolveFailure(err);
}
process.on('uncaughtException', onStray);
process.on('unhandledRejection', onStray);
process.on('disconnect', () => process.exit(0));

let chain: Promise<void> = Promise.resolve();
process.on('message', (msg: ToRunner) => {
  chain = chain.then(async () => {
    switch (msg.cmd) {
      case RunnerCommand.Load:
        load(msg);
        break;
      case RunnerCommand.Run:
        await run(msg.uid, msg.computeId, msg.args);
        break;
      case RunnerCommand.Unload:
        computations.delete(msg.computeId);
        break;
    }
  });
});

send({ ev: RunnerEvent.Ready, pid: process.pid });
