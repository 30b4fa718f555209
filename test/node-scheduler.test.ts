/**
 * The node's job scheduler (src/node/node-scheduler.ts) against a fake pool: which runner takes
 * which job, caps, the CPU limit, look-ahead for short jobs, taking jobs back for an idle
 * runner, and the kills the daemon decides (cancel, maxRuntime, closing, shutdown). No process
 * is started: the fake runners report Started / Done / Dropped when a test says so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Comp } from '../src/node/computations.js';
import {
  KILLED,
  LOOKAHEAD,
  NodeScheduler,
  type NodeJob,
  type RunnerSlot,
  type RunnerSlots,
  type SchedulerHost,
  type Unstarted,
} from '../src/node/node-scheduler.js';
import { RunnerEvent, type RunnerDone } from '../src/node/runner-protocol.js';
import type { AssignedJob, KillReason } from '../src/node/runner.js';

class FakeRunner implements RunnerSlot {
  readonly jobs = new Map<number, AssignedJob>();
  usable = true;
  fresh = false;
  constructor(readonly name: string) {}
}

class FakePool implements RunnerSlots {
  readonly runners: FakeRunner[];
  readonly kills: { runner: string; uid: number; why: KillReason }[] = [];
  readonly terminated: { runner: string; why: KillReason }[] = [];
  readonly drops: { runner: string; uid: number }[] = [];
  fresh = 0;
  /** Whether a drop is answered at once (the job had not reached the runner's code). */
  dropInTime = true;
  constructor(n: number) {
    this.runners = Array.from({ length: n }, (_, i) => new FakeRunner(`r${i + 1}`));
  }
  fits(): boolean {
    return true;
  }
  ensureFresh(count: number): void {
    this.fresh = Math.max(this.fresh, count);
  }
  assign(runner: RunnerSlot, job: AssignedJob): void {
    (runner as FakeRunner).jobs.set(job.uid, job);
  }
  drop(runner: RunnerSlot, uid: number): void {
    const r = runner as FakeRunner;
    this.drops.push({ runner: r.name, uid });
    const job = r.jobs.get(uid);
    if (!this.dropInTime || !job || job.started) return;
    r.jobs.delete(uid);
    job.onEnd({ kind: 'dropped' });
  }
  kill(runner: RunnerSlot, uid: number, why: KillReason): void {
    this.kills.push({ runner: (runner as FakeRunner).name, uid, why });
  }
  terminate(runner: RunnerSlot, why: KillReason): void {
    this.terminated.push({ runner: (runner as FakeRunner).name, why });
  }
  /** Runner `name` reports job `uid` started. */
  start(name: string, uid: number): void {
    const job = this.#runner(name).jobs.get(uid)!;
    job.started = true;
    job.onStarted(Date.now());
  }
  /** Runner `name` reports job `uid` done after `ms`. */
  done(name: string, uid: number, ms = 100): void {
    const r = this.#runner(name);
    const job = r.jobs.get(uid)!;
    r.jobs.delete(uid);
    const d: RunnerDone = {
      ev: RunnerEvent.Done,
      uid,
      ok: true,
      result: null,
      exception: null,
      code: null,
      stdout: '',
      stderr: '',
      cpuTime: 0,
      endTime: Date.now() + ms,
    };
    job.onEnd({ kind: 'done', done: d });
  }
  /** Which runner holds which jobs. */
  layout(): Record<string, number[]> {
    return Object.fromEntries(this.runners.map((r) => [r.name, [...r.jobs.keys()]]));
  }
  #runner(name: string): FakeRunner {
    return this.runners.find((r) => r.name === name)!;
  }
}

class FakeHost implements SchedulerHost {
  readonly log = { info: () => undefined } as unknown as SchedulerHost['log'];
  cpuLimit = 8;
  stopping = false;
  draining = false;
  clientAway = false;
  readonly jobs = new Map<number, NodeJob>();
  readonly startedUids: number[] = [];
  readonly finishedUids: number[] = [];
  readonly left: [number, Unstarted][] = [];
  job(uid: number): NodeJob | undefined {
    return this.jobs.get(uid);
  }
  started(job: NodeJob): void {
    this.startedUids.push(job.uid);
  }
  provisional(): void {}
  finished(job: NodeJob): void {
    this.jobs.delete(job.uid);
    this.finishedUids.push(job.uid);
  }
  unstarted(job: NodeJob, why: Unstarted): void {
    this.jobs.delete(job.uid);
    this.left.push([job.uid, why]);
  }
}
function comp(id: string, over: Partial<Comp> = {}): Comp {
  return {
    id,
    cluster: id,
    computation: { kind: 'function', name: id, source: '' } as unknown as Comp['computation'],
    dir: '',
    program: 'p',
    isolate: false,
    terminating: false,
    cap: 8,
    running: 0,
    queued: 0,
    avgMs: Infinity,
    pulseInterval: 0,
    reconnectWindow: 0,
    recoverable: false,
    closing: false,
    closeWaiters: [],
    ...over,
  };
}

let nextUid = 1;
function job(c: Comp, maxRuntime = 0): NodeJob {
  let end!: () => void;
  const ended = new Promise<void>((r) => (end = r));
  return {
    uid: nextUid++,
    comp: c,
    args: new Uint8Array(0),
    // The scheduler never touches a job's connection (the outbox does).
    channel: undefined as unknown as NodeJob['channel'],
    state: 'queued',
    runner: null,
    startTime: 0,
    cancelRequested: false,
    rebalancing: false,
    maxRuntime,
    timer: null,
    tag: undefined,
    ended,
    end,
  };
}

function setup(runners: number, hostOver: Partial<FakeHost> = {}) {
  const pool = new FakePool(runners);
  const host = Object.assign(new FakeHost(), hostOver);
  const scheduler = new NodeScheduler(pool, host);
  const submit = (j: NodeJob): NodeJob => {
    host.jobs.set(j.uid, j);
    scheduler.submit(j);
    return j;
  };
  return { pool, host, scheduler, submit };
}

test('node scheduler: empty runners first, one job behind each running long job, the rest waits here', () => {
  const { pool, scheduler, submit } = setup(2);
  const c = comp('long');
  const jobs = [1, 2, 3, 4, 5].map(() => submit(job(c)));
  const [a, b, x, y, z] = jobs.map((j) => j.uid);
  assert.deepEqual(pool.layout(), { r1: [a, x], r2: [b, y] });
  assert.equal(scheduler.running, 4);
  assert.equal(scheduler.queued, 1);
  assert.deepEqual([c.running, c.queued], [4, 1]);
  assert.equal(jobs[4]!.state, 'queued');
  // r1's first job ends: its queued job runs there, and the waiting one queues behind it.
  pool.start('r1', a!);
  pool.done('r1', a!);
  assert.deepEqual(pool.layout(), { r1: [x, z], r2: [b, y] });
  assert.equal(scheduler.queued, 0);
});

test('node scheduler: short jobs are queued up to LOOKAHEAD in one runner; the cap counts runners', () => {
  const { pool, submit } = setup(2);
  const c = comp('short', { avgMs: 0.5, cap: 1 });
  for (let i = 0; i < LOOKAHEAD + 3; i++) submit(job(c));
  const layout = pool.layout();
  assert.equal(layout.r1!.length, LOOKAHEAD, 'one runner holds LOOKAHEAD jobs');
  assert.equal(layout.r2!.length, 0, 'the cap of 1 keeps the second runner empty');
});

test('node scheduler: the CPU limit bounds busy runners; raising it starts waiting jobs', () => {
  const { pool, host, scheduler, submit } = setup(3, { cpuLimit: 1 });
  const c = comp('c', { avgMs: 100 });
  for (let i = 0; i < 3; i++) submit(job(c));
  assert.equal(scheduler.busyRunners(), 1);
  host.cpuLimit = 3;
  scheduler.schedule();
  assert.equal(scheduler.busyRunners(), 3);
  assert.equal(Object.values(pool.layout()).flat().length, 3);
});

test('node scheduler: nothing starts while the node drains or stops, or its client is away', () => {
  for (const state of ['draining', 'stopping', 'clientAway'] as const) {
    const { pool, host, scheduler, submit } = setup(2, { [state]: true });
    submit(job(comp('c')));
    assert.equal(scheduler.queued, 1, state);
    assert.equal(Object.values(pool.layout()).flat().length, 0, state);
    host[state] = false;
    scheduler.schedule();
    assert.equal(scheduler.queued, 0, state);
  }
});

test('node scheduler: cancel leaves a queued job at once, drops an assigned one, kills a running one', () => {
  const { pool, host, scheduler, submit } = setup(1);
  const c = comp('c');
  const running = submit(job(c));
  const assigned = submit(job(c));
  const queued = submit(job(c));
  pool.start('r1', running.uid);
  assert.deepEqual(host.startedUids, [running.uid]);
  assert.deepEqual([running.state, assigned.state, queued.state], ['running', 'assigned', 'queued']);
  scheduler.cancel(queued);
  assert.deepEqual(host.left, [[queued.uid, 'cancelled']]);
  scheduler.cancel(assigned);
  assert.deepEqual(pool.drops, [{ runner: 'r1', uid: assigned.uid }]);
  assert.deepEqual(host.left.at(-1), [assigned.uid, 'cancelled'], 'dropped in time: it ends Cancelled');
  scheduler.cancel(running);
  scheduler.cancel(running);
  assert.deepEqual(pool.kills, [{ runner: 'r1', uid: running.uid, why: KILLED.cancel }], 'one kill, through the runner');
  assert.deepEqual([c.running, c.queued], [1, 0]);
});

test('node scheduler: a job cancelled on its way to start is killed as it starts', () => {
  const { pool, scheduler, submit } = setup(1);
  pool.dropInTime = false;
  const j = submit(job(comp('c')));
  scheduler.cancel(j);
  assert.equal(pool.kills.length, 0);
  pool.start('r1', j.uid);
  assert.deepEqual(pool.kills, [{ runner: 'r1', uid: j.uid, why: KILLED.cancel }]);
});

test('node scheduler: maxRuntime kills a job that runs too long, with DISPY_ERR_MAX_RUNTIME', async () => {
  const { pool, submit } = setup(1);
  const j = submit(job(comp('c'), 0.05));
  const killed = new Promise<KillReason>((resolve) => {
    const kill = pool.kill.bind(pool);
    pool.kill = (r, uid, why) => {
      kill(r, uid, why);
      resolve(why);
    };
  });
  pool.start('r1', j.uid);
  const why = await Promise.race([killed, new Promise<null>((r) => setTimeout(() => r(null), 5000).unref())]);
  assert.equal(why?.code, 'DISPY_ERR_MAX_RUNTIME');
  assert.match(why!.exception, /maxRuntime of 0.05 s/);
});

test('node scheduler: a job that ends in time clears its maxRuntime timer', async () => {
  const { pool, submit } = setup(1);
  const j = submit(job(comp('c'), 0.05));
  pool.start('r1', j.uid);
  assert.ok(j.timer);
  pool.done('r1', j.uid);
  assert.equal(j.timer, null);
});

test('node scheduler: a long job waiting behind a busy runner moves to a runner that became empty', () => {
  const { pool, submit } = setup(2);
  const c = comp('long', { avgMs: 1000 });
  const a = submit(job(c));
  const b = submit(job(c));
  const x = submit(job(c));
  pool.start('r1', a.uid);
  pool.start('r2', b.uid);
  assert.deepEqual(pool.layout(), { r1: [a.uid, x.uid], r2: [b.uid] });
  pool.done('r2', b.uid);
  assert.deepEqual(pool.drops, [{ runner: 'r1', uid: x.uid }]);
  assert.deepEqual(pool.layout(), { r1: [a.uid], r2: [x.uid] }, 'taken back and run on the empty runner');
});

test('node scheduler: a dropped job goes back to the front of the queue', () => {
  const { pool, scheduler, submit } = setup(1);
  const c = comp('c');
  const a = submit(job(c));
  const b = submit(job(c));
  const w = submit(job(c));
  assert.equal(scheduler.queued, 1);
  // The runner dies before starting either job: both come back, ahead of the waiting one.
  const r = pool.runners[0]!;
  r.usable = false;
  for (const uid of [a.uid, b.uid]) {
    const aj = r.jobs.get(uid)!;
    r.jobs.delete(uid);
    aj.onEnd({ kind: 'dropped' });
  }
  assert.deepEqual([a.state, b.state, w.state], ['queued', 'queued', 'queued']);
  assert.deepEqual([c.running, c.queued], [0, 3]);
  r.usable = true;
  scheduler.schedule();
  assert.deepEqual(pool.layout(), { r1: [b.uid, a.uid] }, 'the last one dropped is first again');
});

test('node scheduler: closing a computation hands back waiting jobs, drops assigned ones, kills running ones only with terminate', () => {
  for (const terminate of [false, true]) {
    const { pool, host, scheduler, submit } = setup(1);
    const c = comp('c');
    const running = submit(job(c));
    const assigned = submit(job(c));
    const queued = submit(job(c));
    pool.start('r1', running.uid);
    c.closing = true;
    scheduler.close(c, host.jobs.values(), terminate);
    assert.deepEqual(host.left, [
      [queued.uid, 'closing'],
      [assigned.uid, 'closing'],
    ]);
    assert.deepEqual(
      pool.kills.map((k) => [k.uid, k.why]),
      terminate ? [[running.uid, KILLED.closed]] : [],
    );
  }
});

test('node scheduler: a job ends: its host hears it, its average is kept, close waiters go on once the computation settled', () => {
  const { pool, host, submit } = setup(1);
  const c = comp('c');
  const j = submit(job(c));
  let settled = false;
  c.closeWaiters.push(() => (settled = true));
  pool.start('r1', j.uid);
  pool.done('r1', j.uid, 40);
  assert.deepEqual(host.finishedUids, [j.uid]);
  assert.ok(c.avgMs >= 40 && c.avgMs < 1000, `average ${c.avgMs}`);
  assert.ok(settled);
});

test('node scheduler: isolated jobs get fresh runners spawned, as many as CPUs are free', () => {
  const { pool, host, submit } = setup(2, { cpuLimit: 3 });
  for (const r of pool.runners) r.usable = false;
  const c = comp('iso', { isolate: true });
  for (let i = 0; i < 5; i++) submit(job(c));
  assert.equal(pool.fresh, 3);
  void host;
});

test('node scheduler: shutdown terminates every runner holding a job, and nothing else', () => {
  const { pool, scheduler, submit } = setup(3);
  submit(job(comp('c')));
  const why = KILLED.shutdown('127.0.0.1', 'stopped');
  scheduler.terminateAll(why);
  assert.deepEqual(pool.terminated, [{ runner: 'r1', why }]);
  assert.equal(scheduler.takeQueued().length, 0);
});
