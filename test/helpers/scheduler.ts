/**
 * A real `dispyts scheduler` child process on a loopback address with an ephemeral port, and a
 * raw protocol client built on connectChannel and the scheduler messages (no SharedJobCluster),
 * for the scheduler's own tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Channel, connectChannel } from '../../src/protocol/channel.js';
import type { Computation } from '../../src/protocol/messages.js';
import { PayloadCodec } from '../../src/protocol/payload.js';
import { fromSchedulerSchema, type FromScheduler, type ToSchedulerInput } from '../../src/protocol/scheduler-messages.js';
import { CLI, TEST_SECRET } from './daemon.js';
import { killOnExit } from './procs.js';

/** Secret clients of test schedulers use unless a test says otherwise. */
export const CLUSTER_SECRET = 'dispyts-test-cluster-secret-9876543210';

export interface TestScheduler {
  host: string;
  port: number;
  pid: number;
  proc: ChildProcess;
  prefix: string;
  /** The monitor's URL with --httpd. */
  httpUrl: string | null;
  /** The same as httpUrl (the SharedJobCluster tests' name for it). */
  monitor: string | null;
  log(): string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartSchedulerOptions {
  host: string;
  /** `--node` values (host:port). */
  nodes: string[];
  /** More command-line arguments. */
  args?: string[];
  /** @default CLUSTER_SECRET */
  clusterSecret?: string;
  /** @default TEST_SECRET */
  nodeSecret?: string;
  /** A fixed port (to restart a scheduler at the same address). @default 0 */
  port?: number;
  /** @default 'debug' */
  logLevel?: string;
  /** `--policy`. @default the scheduler's (fsfs) */
  policy?: 'fsfs' | 'fair' | 'early';
  /** `--zombie-interval`. */
  zombieInterval?: number;
  /** `--pulse-interval`. */
  pulseInterval?: number;
  /** `--httpd HOST:0` when set. */
  httpdHost?: string;
}

export async function startScheduler(opts: StartSchedulerOptions): Promise<TestScheduler> {
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-test-sched-'));
  const args = [
    CLI,
    'scheduler',
    '--host',
    opts.host,
    '--port',
    String(opts.port ?? 0),
    '--cluster-secret',
    opts.clusterSecret ?? CLUSTER_SECRET,
    '--node-secret',
    opts.nodeSecret ?? TEST_SECRET,
    '--dest-path-prefix',
    prefix,
    '--log-level',
    opts.logLevel ?? 'debug',
    '--parent-pid',
    String(process.pid),
    ...opts.nodes.flatMap((n) => ['--node', n]),
    ...(opts.policy ? ['--policy', opts.policy] : []),
    ...(opts.zombieInterval !== undefined ? ['--zombie-interval', String(opts.zombieInterval)] : []),
    ...(opts.pulseInterval !== undefined ? ['--pulse-interval', String(opts.pulseInterval)] : []),
    ...(opts.httpdHost ? ['--httpd', `${opts.httpdHost}:0`] : []),
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(proc);
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => {
      rmSync(prefix, { recursive: true, force: true });
      resolve(code);
    });
  });
  const wantHttp = opts.httpdHost !== undefined || (opts.args ?? []).includes('--httpd');
  const { port, httpUrl } = await new Promise<{ port: number; httpUrl: string | null }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`scheduler on ${opts.host} not ready in 30 s: ${stderr}`)), 30_000);
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /scheduler ready on [^\s]+:(\d+)/.exec(out);
      const h = /monitor on (http\S+)/.exec(out);
      if (m && (!wantHttp || h)) {
        clearTimeout(timer);
        resolve({ port: Number(m[1]), httpUrl: h ? h[1]! : null });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`scheduler on ${opts.host} exited with ${code} before it was ready: ${stderr}`));
    });
  });
  return {
    host: opts.host,
    port,
    pid: proc.pid!,
    proc,
    prefix,
    httpUrl,
    monitor: httpUrl,
    log: () => stderr,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

type Reply = Extract<FromScheduler, { t: 'reply' }>;
type JobEnd = Extract<FromScheduler, { t: 'job-end' }>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Request = DistributiveOmit<Extract<ToSchedulerInput, { rid: number }>, 'rid'>;

/** The scheduler's side of the conversation, message by message. */
export class RawClient {
  readonly ch: Channel<FromScheduler, ToSchedulerInput>;
  readonly received: FromScheduler[] = [];
  readonly codec = new PayloadCodec();
  closed: Promise<unknown>;
  #rid = 0;
  #uid = 0;
  #waiters: { pred: (m: FromScheduler) => boolean; resolve: (m: FromScheduler) => void }[] = [];

  private constructor(ch: Channel<FromScheduler, ToSchedulerInput>) {
    this.ch = ch;
    ch.on('message', (m) => {
      this.received.push(m);
      for (const w of [...this.#waiters]) {
        if (w.pred(m)) {
          this.#waiters.splice(this.#waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    this.closed = new Promise((r) => ch.once('close', r));
  }

  static async connect(s: { host: string; port: number }, opts: { secret?: string; localAddress?: string } = {}): Promise<RawClient> {
    const ch = await connectChannel<FromScheduler, ToSchedulerInput>({
      host: s.host,
      port: s.port,
      secret: Buffer.from(opts.secret ?? CLUSTER_SECRET),
      clientId: randomBytes(12).toString('hex'),
      schema: fromSchedulerSchema,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    const c = new RawClient(ch);
    await c.waitFor((m) => m.t === 'sched-info', 5000);
    return c;
  }

  get info(): Extract<FromScheduler, { t: 'sched-info' }> {
    return this.received.find((m) => m.t === 'sched-info') as Extract<FromScheduler, { t: 'sched-info' }>;
  }

  /** The first message (already received or coming) that matches. */
  waitFor(pred: (m: FromScheduler) => boolean, timeoutMs = 15_000): Promise<FromScheduler> {
    const have = this.received.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (m: FromScheduler) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`no matching message in ${timeoutMs} ms; got ${this.received.map((m) => m.t).join(',')}`));
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  send(msg: ToSchedulerInput): void {
    this.ch.send(msg);
  }

  /** Sends a request and resolves with its reply (ok or not). */
  async request(msg: Request, timeoutMs = 15_000): Promise<Reply> {
    const rid = ++this.#rid;
    this.ch.send({ ...msg, rid } as ToSchedulerInput);
    return (await this.waitFor((m) => m.t === 'reply' && m.rid === rid, timeoutMs)) as Reply;
  }

  /** compute + schedule; resolves with the computeId and name. */
  async start(
    computation: Computation,
    extra: Partial<Extract<ToSchedulerInput, { t: 'compute' }>> = {},
  ): Promise<{ computeId: string; name: string }> {
    const r = await this.request({ t: 'compute', name: computation.name, computation, ...extra } as Request);
    if (!r.ok) throw new Error(`compute failed: ${r.error?.code}: ${r.error?.message}`);
    const s = await this.request({ t: 'schedule', computeId: r.computeId! });
    if (!s.ok) throw new Error(`schedule failed: ${s.error?.code}: ${s.error?.message}`);
    return { computeId: r.computeId!, name: r.name! };
  }

  /** Sends a job; returns its uid. */
  job(computeId: string, args: unknown[], extra: { tag?: string | number; node?: string; maxRuntime?: number } = {}): number {
    const uid = ++this.#uid;
    this.ch.send({ t: 'job', uid, computeId, args: this.codec.encode(args), ...extra });
    return uid;
  }

  jobEnd(uid: number, timeoutMs = 15_000): Promise<JobEnd> {
    return this.waitFor((m) => m.t === 'job-end' && m.uid === uid, timeoutMs) as Promise<JobEnd>;
  }

  /** The decoded result of a job-end. */
  result(end: JobEnd): unknown {
    return end.result ? this.codec.decode(end.result) : null;
  }

  close(): void {
    this.ch.close();
  }
}

/** A function computation from source text (nothing is evaluated here). */
export function fn(source: string, name = 'compute'): Computation {
  return { kind: 'function', name, source, depends: [] };
}
