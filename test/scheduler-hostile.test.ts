/**
 * The scheduler against mistaken and hostile clients: unknown or foreign computations, files
 * too large or missing, names that try to leave the scheduler's directory, malformed messages.
 * Each gets a clear error (or costs only its own connection, with a logged reason); nothing is
 * lost for anyone else. Cluster names stay unique for two clients on one address.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { JobStatus } from '../src/client/status.js';
import { startNode, until, type TestNode } from './helpers/daemon.js';
import { RawClient, fn, startScheduler, type TestScheduler } from './helpers/scheduler.js';

let node: TestNode;
let sched: TestScheduler;
let good: RawClient;
let goodId: string;

before(async () => {
  node = await startNode({ host: '127.0.0.212', cpus: 2 });
  sched = await startScheduler({ host: '127.0.0.213', nodes: [`${node.host}:${node.port}`], args: ['--max-file-size', '1k'] });
  good = await RawClient.connect(sched);
  goodId = (await good.start(fn('function compute(x) { return x + 1; }'))).computeId;
});

after(async () => {
  good?.close();
  await sched?.stop();
  await node?.stop();
});

/** The well-behaved client still gets its jobs done. */
async function goodStillWorks(): Promise<void> {
  const uid = good.job(goodId, [41]);
  assert.equal(good.result(await good.jobEnd(uid)), 42);
}

test('unknown and foreign computations get DISPY_ERR_UNKNOWN_COMPUTATION; the connection stays', async () => {
  const c = await RawClient.connect(sched);
  for (const computeId of ['no-such-computation', goodId]) {
    for (const req of [
      { t: 'schedule', computeId },
      { t: 'close', computeId, terminate: true },
      { t: 'node-op', computeId, op: 'discover' },
      { t: 'file-begin', computeId, name: 'x.txt', size: 3, mtime: Date.now(), mode: 0o644 },
    ] as const) {
      const r = await c.request(req);
      assert.equal(r.ok, false, `${req.t} on ${computeId}`);
      assert.equal(r.error?.code, 'DISPY_ERR_UNKNOWN_COMPUTATION', `${req.t}: ${r.error?.message}`);
    }
    const end = await c.jobEnd(c.job(computeId, [1]));
    assert.equal(end.status, JobStatus.Cancelled);
    assert.equal(end.code, 'DISPY_ERR_UNKNOWN_COMPUTATION');
  }
  // Nodes that are not the scheduler's, and files announced but never sent.
  const far = await c.request({
    t: 'compute',
    name: 'far',
    computation: fn('function compute() {}'),
    nodes: ['10.1.2.3', { host: '127.0.0.99', port: 9 }],
  });
  assert.equal(far.ok, false);
  assert.equal(far.error?.code, 'DISPY_ERR_NODE_UNKNOWN');
  const r = await c.request({ t: 'compute', name: 'missing', computation: fn('function compute() {}'), files: ['data.bin'] });
  assert.equal(r.ok, true);
  const s = await c.request({ t: 'schedule', computeId: r.computeId! });
  assert.equal(s.ok, false);
  assert.equal(s.error?.code, 'DISPY_ERR_BAD_REQUEST');
  assert.match(s.error?.message ?? '', /data\.bin/);
  // The same connection goes on working.
  const { computeId } = await c.start(fn('function compute(x) { return -x; }'));
  assert.equal(c.result(await c.jobEnd(c.job(computeId, [5]))), -5);
  c.close();
  await goodStillWorks();
});

test('files: too large, chunks beyond the size, and the file a computation ships', async () => {
  const c = await RawClient.connect(sched);
  const r = await c.request({
    t: 'compute',
    name: 'files',
    computation: fn('function compute(n) { return require("node:fs").readFileSync(n, "utf8"); }'),
    files: ['in.txt'],
  });
  const computeId = r.computeId!;
  const big = await c.request({ t: 'file-begin', computeId, name: 'big.bin', size: 4096, mtime: Date.now(), mode: 0o644 });
  assert.equal(big.ok, false);
  assert.equal(big.error?.code, 'DISPY_ERR_FILE_TOO_LARGE');
  assert.match(big.error?.message ?? '', /scheduler's --max-file-size of 1024 bytes/);
  const mtime = Date.now();
  assert.equal((await c.request({ t: 'file-begin', computeId, name: 'in.txt', size: 5, mtime, mode: 0o644 })).offset, 0);
  const over = await c.request({ t: 'file-chunk', computeId, name: 'in.txt', offset: 0, data: Buffer.from('toolong') });
  assert.equal(over.ok, false);
  assert.equal(over.error?.code, 'DISPY_ERR_BAD_REQUEST');
  const chunk = await c.request({ t: 'file-chunk', computeId, name: 'in.txt', offset: 0, data: Buffer.from('hello') });
  assert.equal(chunk.offset, 5);
  const s = await c.request({ t: 'schedule', computeId });
  assert.equal(s.ok, true, s.error?.message);
  const end = await c.jobEnd(c.job(computeId, ['in.txt']));
  assert.equal(end.status, JobStatus.Finished, end.exception ?? '');
  assert.equal(c.result(end), 'hello');
  await c.request({ t: 'close', computeId, terminate: true });
  // Its files went with it.
  await until(
    () => !readdirSync(join(sched.prefix, sched.host, 'computations')).some((d) => d.includes(computeId)),
    5000,
    'the computation directory removed',
  );
  c.close();
});

test('malformed messages and names that leave the directory cost only that connection', async () => {
  const hostile = [
    { t: 'file-begin', rid: 1, computeId: goodId, name: '../../escape.txt', size: 3, mtime: Date.now(), mode: 0o644 },
    { t: 'file-begin', rid: 1, computeId: goodId, name: '/etc/passwd', size: 3, mtime: Date.now(), mode: 0o644 },
    { t: 'schedule', rid: 1, computeId: '' },
    { t: 'schedule', rid: 1, computeId: 'x'.repeat(500) },
    { t: 'job', uid: -1, computeId: goodId, args: Buffer.from([0x90]) },
    { t: 'no-such-message', rid: 1 },
  ];
  for (const msg of hostile) {
    const c = await RawClient.connect(sched);
    c.ch.send(msg as never);
    await c.closed;
    c.close();
  }
  await until(
    () => (sched.log().match(/client connection closed/g) ?? []).length >= hostile.length,
    5000,
    'every hostile connection logged',
  );
  assert.match(sched.log(), /invalid message/);
  assert.equal(existsSync(join(sched.prefix, sched.host, 'escape.txt')), false);
  assert.equal(existsSync(join(sched.prefix, 'escape.txt')), false);
  await goodStillWorks();
});

test('resume takes a computation only with its key; with it, from a live connection too (which is closed)', async () => {
  const c = await RawClient.connect(sched);
  for (const computeId of [goodId, 'no-such-computation']) {
    const r = await c.request({ t: 'resume', computeId, key: 'k'.repeat(48), uids: [] });
    assert.equal(r.ok, false);
    assert.equal(r.error?.code, 'DISPY_ERR_UNKNOWN_COMPUTATION', r.error?.message);
    assert.match(r.error?.message ?? '', /no computation .* to resume/);
  }
  c.close();
  await goodStillWorks();

  const owner = await RawClient.connect(sched);
  const reg = await owner.request({ t: 'compute', name: 'moved', computation: fn('function compute(x) { return x * 3; }') });
  assert.match(reg.resumeKey ?? '', /^[0-9a-f]{48}$/);
  assert.equal((await owner.request({ t: 'schedule', computeId: reg.computeId! })).ok, true);
  const taker = await RawClient.connect(sched);
  const r = await taker.request({ t: 'resume', computeId: reg.computeId!, key: reg.resumeKey!, uids: [12345] });
  assert.equal(r.ok, true, r.error?.message);
  assert.deepEqual(r.unknown, [12345], 'a job it never got');
  await owner.closed;
  // (The scheduler's log may trail the close the client already saw.)
  await until(() => /the client resumed computation moved @ [\d.]+ on another connection/.test(sched.log()), 5000, 'the takeover logged');
  assert.equal(taker.result(await taker.jobEnd(taker.job(reg.computeId!, [4]))), 12);
  await taker.request({ t: 'close', computeId: reg.computeId!, terminate: true });
  taker.close();
  await goodStillWorks();
});

test('cluster names are unique even for two clients on one address', async () => {
  const a = await RawClient.connect(sched, { localAddress: '127.0.0.214' });
  const b = await RawClient.connect(sched, { localAddress: '127.0.0.214' });
  const ra = await a.request({ t: 'compute', name: 'render', computation: fn('function compute() {}') });
  const rb = await b.request({ t: 'compute', name: 'render', computation: fn('function compute() {}') });
  assert.equal(ra.name, 'render @ 127.0.0.214');
  assert.equal(rb.name, 'render @ 127.0.0.214 (2)');
  await a.request({ t: 'close', computeId: ra.computeId!, terminate: true });
  await b.request({ t: 'close', computeId: rb.computeId!, terminate: true });
  a.close();
  b.close();
});

test('set-cpus is refused to a computation that is not exclusive (no --cooperative)', async () => {
  const r = await good.request({ t: 'node-op', computeId: goodId, op: 'set-cpus', node: node.host, cpus: 1 });
  assert.equal(r.ok, false);
  assert.equal(r.error?.code, 'DISPY_ERR_FORBIDDEN');
  assert.match(r.error?.message ?? '', /exclusive|cooperative/);
  await goodStillWorks();
});
