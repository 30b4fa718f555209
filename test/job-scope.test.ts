/**
 * What a function computation finds in its scope, as dispy's programs expect: functions and
 * classes sent with one job (`submitWith({ depends: [fn] })`, dispy's `dispy_job_depends`) for
 * that job only, the cluster's `globals` (msgpack values as consts), `cleanup(...setupArgs)`,
 * and the refusals that name the fix; directly and through `dispyts scheduler`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, NodeAllocate, SharedJobCluster } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler, type TestScheduler } from './helpers/scheduler.js';

let node: TestNode;
let sched: TestScheduler;
let dir: string;
before(async () => {
  // One CPU: every job runs in the same runner, so a leak into the next job would show.
  node = await startNode({ host: '127.0.0.72', cpus: 1, logLevel: 'warn' });
  sched = await startScheduler({ host: '127.0.0.73', nodes: [`${node.host}:${node.port}`], logLevel: 'warn' });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-job-scope-'));
});
after(async () => {
  await sched?.stop();
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

declare const factor: number;
declare const table: Map<string, number>;

class Box {
  w: number;
  constructor(w: number) {
    this.w = w;
  }
  double(): number {
    return 2 * this.w;
  }
}
declare const box: Box;

function twice(x: number): number {
  return 2 * x;
}

// dispy's delegate.py: the computation calls the function its job brought.
function delegate(name: string, n: number): unknown {
  const seen = [typeof func1, typeof func2, typeof Shape].join(',');
  if (name === 'func1') return `${func1(n)} [${seen}]`;
  if (name === 'func2') return `${func2(n)} [${seen}]`;
  if (name === 'shape') return `${new Shape(n).area()} [${seen}]`;
  return `none [${seen}]`;
}
// Sent with jobs only; on the client they are ordinary declarations.
function func1(n: number): string {
  return `func1 ${twice(n) * factor}`;
}
function func2(n: number): string {
  return `func2 ${n + table.get('a')!}`;
}
class Shape {
  side: number;
  constructor(side: number) {
    this.side = side;
  }
  area(): number {
    return this.side * this.side;
  }
}

const nodes = () => [{ host: node.host, port: node.port }];

test("a job's functions and classes are in its computation's scope, for that job only", async () => {
  const cluster = new JobCluster(delegate, {
    nodes: nodes(),
    secret: TEST_SECRET,
    depends: [twice],
    globals: { factor: 10, table: new Map([['a', 100]]) },
  });
  try {
    const a = cluster.submitWith({ depends: [func1] }, 'func1', 3);
    const b = cluster.submitWith({ depends: [func2] }, 'func2', 3);
    const c = cluster.submit('none', 0);
    const d = cluster.submitWith({ depends: [Shape] }, 'shape', 4);
    const e = cluster.submit('none', 0);
    // Each sees the cluster's depends and globals, and its own function only.
    assert.equal(await a.wait(), 'func1 60 [function,undefined,undefined]');
    assert.equal(await b.wait(), 'func2 103 [undefined,function,undefined]');
    assert.equal(await c.wait(), 'none [undefined,undefined,undefined]', 'gone for the next job');
    assert.equal(await d.wait(), '16 [undefined,undefined,function]');
    assert.equal(await e.wait(), 'none [undefined,undefined,undefined]');
  } finally {
    await cluster.close();
  }
});

test("globals are consts of the computation's scope (a class instance keeps its methods); cleanup gets setup's arguments", async () => {
  const out = join(dir, 'cleanup.json');
  // Runs in the runner: it sees the globals, and gets the NodeAllocate's setupArgs.
  function setup(file: string, n: number): void {
    (globalThis as Record<string, unknown>).seenBySetup = `${file}:${n}:${box.double()}`;
  }
  function cleanup(file: string, n: number): void {
    const { writeFileSync } = require('node:fs') as typeof import('node:fs');
    writeFileSync(file, JSON.stringify({ args: [file, n], box: box.double(), factor }));
  }
  function compute(k: number): string {
    return `${(globalThis as Record<string, unknown>).seenBySetup} ${box instanceof Box} ${box.double() * k} ${factor}`;
  }
  const cluster = new JobCluster(compute, {
    nodes: [new NodeAllocate(node.host, node.port, 0, { setupArgs: [out, 7] })],
    secret: TEST_SECRET,
    depends: [Box],
    globals: { box: new Box(21), factor: 0.5 },
    setup,
    cleanup,
  });
  try {
    assert.equal(await cluster.submit(2).wait(), `${out}:7:42 true 84 0.5`);
  } finally {
    await cluster.close();
  }
  // cleanup ran when the computation closed, with setup's arguments.
  await until(() => existsSync(out), 10_000, 'cleanup to write its file');
  assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), { args: [out, 7], box: 42, factor: 0.5 });
});

test('cleanup without setup gets the setup arguments too', async () => {
  const out = join(dir, 'cleanup-only.txt');
  function cleanup(file: string, word: string): void {
    (require('node:fs') as typeof import('node:fs')).writeFileSync(file, word);
  }
  const cluster = new JobCluster((x: number) => x + 1, {
    nodes: [new NodeAllocate(node.host, node.port, 0, { setupArgs: [out, 'bye'] })],
    secret: TEST_SECRET,
    cleanup,
  });
  try {
    assert.equal(await cluster.submit(1).wait(), 2);
  } finally {
    await cluster.close();
  }
  await until(() => existsSync(out), 10_000, 'cleanup to write its file');
  assert.equal(readFileSync(out, 'utf8'), 'bye');
});

test('what has no place in a scope is refused, naming the fix', () => {
  const opts = { nodes: nodes(), secret: TEST_SECRET };
  assert.throws(() => new JobCluster((x: number) => x, { ...opts, depends: [42] }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /depends\[0\]: expected a function, a class or a file path, got number; a value goes by name in the `globals` option/,
  });
  assert.throws(() => new JobCluster((x: number) => x, { ...opts, globals: { 'not a name': 1 } }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /`not a name` is not a JavaScript identifier/,
  });
  assert.throws(() => new JobCluster((x: number) => x, { ...opts, depends: [twice], globals: { twice: 1 } }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /`twice` is also the name of a function or class in depends/,
  });
  assert.throws(() => new JobCluster((x: number) => x, { ...opts, globals: { f: () => 1 } }), { code: 'DISPY_ERR_SERIALIZE' });
  const script = join(dir, 'prog.sh');
  writeFileSync(script, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  assert.throws(() => new JobCluster(script, { ...opts, globals: { a: 1 } }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /function computations/,
  });
  const prog = new JobCluster<(...a: unknown[]) => number>(script, opts);
  try {
    assert.throws(() => prog.submitWith({ depends: [twice] }, 1), {
      code: 'DISPY_ERR_INVALID_OPTION',
      message: /a program computation takes only file paths in a job's depends/,
    });
    assert.throws(() => prog.submitWith({ depends: [{}] as never }, 1), { code: 'DISPY_ERR_INVALID_OPTION', message: /depends\[0\]/ });
  } finally {
    void prog.close();
  }
});

test('through dispyts scheduler: a job brings its function; globals and cleanup(...setupArgs) as with JobCluster', async () => {
  const out = join(dir, 'shared-cleanup.txt');
  function cleanup(file: string): void {
    (require('node:fs') as typeof import('node:fs')).writeFileSync(file, `cleanup ${factor}`);
  }
  const cluster = new SharedJobCluster(delegate, {
    schedulerHost: sched.host,
    schedulerPort: sched.port,
    secret: CLUSTER_SECRET,
    host: '127.0.0.74',
    depends: [twice],
    globals: { factor: 3, table: new Map([['a', 1]]) },
    nodes: [new NodeAllocate(node.host, node.port, 0, { setupArgs: [out] })],
    cleanup,
  });
  try {
    const a = cluster.submitWith({ depends: [func1] }, 'func1', 5);
    const b = cluster.submit('none', 0);
    assert.equal(await a.wait(), 'func1 30 [function,undefined,undefined]');
    assert.equal(await b.wait(), 'none [undefined,undefined,undefined]');
  } finally {
    await cluster.close();
  }
  await until(() => existsSync(out), 10_000, 'cleanup to write its file');
  assert.equal(readFileSync(out, 'utf8'), 'cleanup 3');
});
