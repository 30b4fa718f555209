/**
 * The kill arbiter of a job runner: a small worker thread that decides, atomically with the
 * runner's own job switches, whether a kill the daemon asked for still hits the job it was meant
 * for. The daemon can never tell from outside whether a runner has just finished job N and
 * started job N+1 (its reports may still be in the pipe), so it does not signal a runner to stop
 * a job; it writes the job's uid to the runner's kill pipe instead. The arbiter reads it on its
 * own thread (so it answers while the job's code keeps the main thread busy) and, only if that
 * job is still the running one, marks the runner doomed and signals the runner's process group:
 * SIGTERM, then SIGKILL after the grace period. A job that ended before the request is left
 * alone: its Done reaches the daemon, and the runner goes on with its next job.
 *
 * The main thread and the arbiter share one slot: 0 between jobs, uid + 1 while job uid runs,
 * DOOMED once the arbiter claimed the running job. Each side changes it with compareExchange,
 * so a job switch and a kill cannot both win.
 */
import { Worker } from 'node:worker_threads';

/** The slot's value once the arbiter claimed the running job for a kill. */
export const DOOMED = -1n;

const THREAD = `
const { workerData } = require('node:worker_threads');
const net = require('node:net');
const slot = new BigInt64Array(workerData.buffer);
const pipe = new net.Socket({ fd: workerData.fd, readable: true, writable: false });
let pending = '';
function kill(signal) {
  try { process.kill(-process.pid, signal); } catch {}
}
pipe.setEncoding('utf8');
pipe.on('data', (chunk) => {
  pending += chunk;
  for (let nl = pending.indexOf('\\n'); nl >= 0; nl = pending.indexOf('\\n')) {
    const line = pending.slice(0, nl);
    pending = pending.slice(nl + 1);
    if (!/^[0-9]{1,16}$/.test(line)) continue;
    const running = BigInt(line) + 1n;
    if (Atomics.compareExchange(slot, 0, running, ${DOOMED}n) !== running) continue;
    kill('SIGTERM');
    setTimeout(() => kill('SIGKILL'), workerData.graceMs);
  }
});
pipe.on('error', () => {});
`;

/** The runner's side of the slot: which job runs, and whether the arbiter claimed it. */
export class JobSlot {
  readonly #slot: BigInt64Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(8)) {
    this.#slot = new BigInt64Array(buffer);
  }

  get buffer(): SharedArrayBuffer {
    return this.#slot.buffer as SharedArrayBuffer;
  }

  /** Marks job `uid` running (before its Started is sent). False if the runner is doomed. */
  enter(uid: number): boolean {
    return Atomics.compareExchange(this.#slot, 0, 0n, BigInt(uid) + 1n) === 0n;
  }

  /** Marks job `uid` over. False if the arbiter claimed it first: the runner is being killed. */
  leave(uid: number): boolean {
    const running = BigInt(uid) + 1n;
    return Atomics.compareExchange(this.#slot, 0, running, 0n) === running;
  }

  /** Blocks this thread until the kill the arbiter sent ends the process. */
  awaitKill(): never {
    for (;;) Atomics.wait(this.#slot, 0, DOOMED);
  }
}

/**
 * Starts the arbiter on the kill pipe `fd` (the daemon writes one uid per line). It does not
 * keep the process alive.
 */
export function startArbiter(slot: JobSlot, fd: number, graceMs: number): Worker {
  const worker = new Worker(THREAD, { eval: true, workerData: { buffer: slot.buffer, fd, graceMs }, stdout: false, stderr: false });
  worker.unref();
  return worker;
}
