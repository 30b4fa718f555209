/**
 * A scripted stand-in for `dispyts node` in this process, speaking the node side of
 * src/protocol/messages.ts: it authenticates JobCluster connections, sends its info, answers
 * set-up, file, resume and close requests, records jobs, and lets a test decide what the node
 * says and when: go silent, refuse connections, or send replies a real node never would (a
 * stale `done` for an attempt the client gave up), so the client's guards are tested exactly.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { acceptChannel, type Channel } from '../../src/protocol/channel.js';
import { clientMessageSchema, type ClientMessage, type JobDone, type NodeMessage } from '../../src/protocol/messages.js';
import { PayloadCodec } from '../../src/protocol/payload.js';

export type NodeConn = Channel<ClientMessage, NodeMessage>;
export type JobMsg = Extract<ClientMessage, { t: 'job' }>;

export interface FakeNodeOptions {
  host: string;
  secret: string;
  /** @default 1 */
  cpus?: number;
  /** Seconds between pulses (the client's pulseInterval). @default 0.2 */
  pulseInterval?: number;
}

const codec = new PayloadCodec();

/** A result as a runner would encode it. */
export function encodeResult(value: unknown): Buffer {
  return codec.encode(value, 'result');
}

export class FakeNode {
  readonly server: net.Server;
  readonly conns: NodeConn[] = [];
  readonly jobs: JobMsg[] = [];
  /** Set-up requests answered, over all connections. */
  setups = 0;
  port = 0;
  readonly host: string;
  /** Random per "daemon start", as a real node's (a changed id means it restarted). */
  nodeId = randomBytes(8).toString('hex');
  /** Called with each job message (after it is recorded): the test answers it, or not. */
  onJob: ((conn: NodeConn, job: JobMsg) => void) | null = null;
  /** While set, pulses stop (the node looks dead) but the connection stays open. */
  silent = false;
  /** While set, connections are closed before the handshake (the node is unreachable). */
  refuse = false;
  readonly #opts: FakeNodeOptions;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(opts: FakeNodeOptions) {
    this.#opts = opts;
    this.host = opts.host;
    this.server = net.createServer((socket) => void this.#accept(socket));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, this.#opts.host, resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** The newest open connection. */
  get conn(): NodeConn | undefined {
    return this.conns.filter((c) => !c.closed).at(-1);
  }

  async #accept(socket: net.Socket): Promise<void> {
    if (this.refuse) {
      socket.destroy();
      return;
    }
    let conn: NodeConn;
    try {
      conn = await acceptChannel<ClientMessage, NodeMessage>(socket, {
        secret: Buffer.from(this.#opts.secret),
        schema: clientMessageSchema,
        role: 'node',
      });
    } catch {
      return;
    }
    this.conns.push(conn);
    const cpus = this.#opts.cpus ?? 1;
    conn.send({
      t: 'info',
      nodeId: this.nodeId,
      name: `fake-${this.host}`,
      ipAddr: this.host,
      port: this.port,
      machineCpus: cpus,
      cpus,
      platform: 'linux',
      availInfo: null,
      busy: false,
    });
    const t = setInterval(
      () => {
        if (!this.silent && !conn.closed) this.pulse(conn);
      },
      (this.#opts.pulseInterval ?? 0.2) * 1000,
    );
    t.unref();
    this.#timers.add(t);
    conn.on('close', () => {
      clearInterval(t);
      this.#timers.delete(t);
    });
    conn.on('message', (msg) => this.#onMessage(conn, msg));
  }

  /** Sends a pulse; `cpu` marks it, so a test can wait until the client handled what came before. */
  pulse(conn: NodeConn, cpu = 0): void {
    conn.send({ t: 'pulse', availInfo: { cpu, memory: 0, disk: 0, swap: 0 }, busy: 0, cpus: this.#opts.cpus ?? 1 });
  }

  /** Sends `done` for `uid` as a node whose job finished with `result` at `endTime`. */
  sendDone(conn: NodeConn, uid: number, result: unknown, over: Partial<JobDone> = {}): void {
    const now = Date.now();
    conn.send({
      t: 'done',
      uid,
      status: 'Finished',
      result: encodeResult(result),
      exception: null,
      code: null,
      stdout: '',
      stderr: '',
      startTime: now - 1,
      endTime: now,
      cpuTime: 0,
      ...over,
    });
  }

  #onMessage(conn: NodeConn, msg: ClientMessage): void {
    switch (msg.t) {
      case 'setup':
        this.setups++;
        conn.send({ t: 'reply', rid: msg.rid, ok: true, cpus: this.#opts.cpus ?? 1 });
        return;
      case 'file-begin':
        conn.send({ t: 'reply', rid: msg.rid, ok: true, offset: 0 });
        return;
      case 'file-chunk':
        conn.send({ t: 'reply', rid: msg.rid, ok: true, offset: msg.offset + msg.data.length });
        return;
      case 'resume':
        // It kept nothing and runs nothing for the client (a real node forgets on resume []).
        conn.send({ t: 'reply', rid: msg.rid, ok: true, uids: [], results: [] });
        return;
      case 'job':
        this.jobs.push(msg);
        this.onJob?.(conn, msg);
        return;
      case 'close':
      case 'set-cpus':
      case 'ping':
      case 'jobs':
      case 'recover':
        conn.send({ t: 'reply', rid: msg.rid, ok: true, ...(msg.t === 'jobs' ? { uids: [] } : {}) });
        return;
      default:
        return;
    }
  }

  /** Closes the server and every connection (as a killed node would). */
  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    for (const c of this.conns) c.socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
