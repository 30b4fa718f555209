/**
 * A scripted stand-in for `dispyts scheduler` in this process, speaking the client side of
 * src/protocol/scheduler-messages.ts: it accepts SharedJobCluster connections, answers the
 * set-up, and lets a test decide what happens to each job (or drop the connection), so the
 * client's handling of every message and fault is tested exactly.
 */
import net from 'node:net';
import { acceptChannel, type Channel } from '../../src/protocol/channel.js';
import { toSchedulerSchema, type FromScheduler, type NodeView, type ToScheduler } from '../../src/protocol/scheduler-messages.js';

export type Job = Extract<ToScheduler, { t: 'job' }>;
export type Conn = Channel<ToScheduler, FromScheduler>;

export interface FakeSchedulerOptions {
  host: string;
  secret: string;
  /** @default 'scheduler' */
  role?: 'scheduler' | 'node';
  /** @default 1 */
  pulseInterval?: number;
  /** Send `pulse` every pulseInterval. @default true */
  pulses?: boolean;
  /** Answer `schedule` at once. @default true */
  admit?: boolean;
  /**
   * Give computations a resume key and answer `resume` (the jobs it lists that this fake never
   * got are named unknown), so a client reconnects rather than failing. @default false
   */
  resumable?: boolean;
  /** Called with each job message (after it is recorded). */
  onJob?: (conn: Conn, job: Job) => void;
  /** Answers a node-op (default: ok, value 0). Return null to leave it unanswered. */
  onNodeOp?: (conn: Conn, msg: Extract<ToScheduler, { t: 'node-op' }>) => Partial<Extract<FromScheduler, { t: 'reply' }>> | null;
}

export class FakeScheduler {
  readonly server: net.Server;
  readonly conns: Conn[] = [];
  readonly received: ToScheduler[] = [];
  readonly jobs: Job[] = [];
  /** Rids of `schedule` requests not answered yet (admit: false). */
  readonly pendingSchedules: { conn: Conn; rid: number }[] = [];
  port = 0;
  readonly host: string;
  readonly #opts: FakeSchedulerOptions;
  #timers: NodeJS.Timeout[] = [];
  #computes = 0;

  constructor(opts: FakeSchedulerOptions) {
    this.#opts = opts;
    this.host = opts.host;
    this.server = net.createServer((socket) => void this.#accept(socket));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, this.#opts.host, resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  async #accept(socket: net.Socket): Promise<void> {
    let conn: Conn;
    try {
      conn = await acceptChannel<ToScheduler, FromScheduler>(socket, {
        secret: Buffer.from(this.#opts.secret),
        schema: toSchedulerSchema,
        role: this.#opts.role ?? 'scheduler',
      });
    } catch {
      return;
    }
    this.conns.push(conn);
    const pulse = this.#opts.pulseInterval ?? 1;
    conn.send({ t: 'sched-info', schedulerId: 'fake', name: 'fake-scheduler', policy: 'fsfs', cooperative: false, pulseInterval: pulse });
    if (this.#opts.pulses !== false) {
      const t = setInterval(() => conn.send({ t: 'pulse' }), pulse * 1000);
      t.unref();
      this.#timers.push(t);
      conn.on('close', () => clearInterval(t));
    }
    conn.on('message', (msg) => this.#onMessage(conn, msg));
  }

  #onMessage(conn: Conn, msg: ToScheduler): void {
    this.received.push(msg);
    switch (msg.t) {
      case 'compute':
        conn.send({
          t: 'reply',
          rid: msg.rid,
          ok: true,
          computeId: `fake-${++this.#computes}`,
          name: `${msg.name} @ fake`,
          ...(this.#opts.resumable ? { resumeKey: 'fake-resume-key-0123456789' } : {}),
        });
        return;
      case 'resume': {
        const got = new Set(this.jobs.map((j) => j.uid));
        conn.send({ t: 'reply', rid: msg.rid, ok: true, computeId: msg.computeId, unknown: msg.uids.filter((u) => !got.has(u)) });
        return;
      }
      case 'file-begin':
        conn.send({ t: 'reply', rid: msg.rid, ok: true, offset: 0 });
        return;
      case 'file-chunk':
        conn.send({ t: 'reply', rid: msg.rid, ok: true, offset: msg.offset + msg.data.length });
        return;
      case 'schedule':
        if (this.#opts.admit === false) this.pendingSchedules.push({ conn, rid: msg.rid });
        else conn.send({ t: 'reply', rid: msg.rid, ok: true });
        return;
      case 'job':
        this.jobs.push(msg);
        this.#opts.onJob?.(conn, msg);
        return;
      case 'node-op': {
        const r = this.#opts.onNodeOp ? this.#opts.onNodeOp(conn, msg) : { ok: true, value: 0 };
        if (r) conn.send({ t: 'reply', rid: msg.rid, ok: true, ...r });
        return;
      }
      case 'close':
        conn.send({ t: 'reply', rid: msg.rid, ok: true });
        return;
      default:
        return;
    }
  }

  /** Admits the clusters waiting in `schedule`. */
  admitAll(): void {
    for (const { conn, rid } of this.pendingSchedules.splice(0)) conn.send({ t: 'reply', rid, ok: true });
  }

  /** Closes the server and every connection (as a killed scheduler would). */
  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A node as the scheduler describes it to a cluster. */
export function nodeView(ip: string, over: Partial<NodeView> = {}): NodeView {
  return {
    ipAddr: ip,
    port: 9701,
    name: `node-${ip}`,
    cpus: 2,
    availCpus: 2,
    machineCpus: 4,
    platform: 'linux',
    busy: 0,
    jobsDone: 0,
    jobTime: 0,
    cpuUsed: 0,
    tx: 0,
    rx: 0,
    availInfo: null,
    updateTime: Date.now(),
    ...over,
  };
}
