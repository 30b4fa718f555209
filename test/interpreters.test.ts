/**
 * Program computations with an interpreter, as dispy ran `.py` programs with Python: an
 * interpreter given with the script (`['sh', 'script']`, `{ program, interpreter }`), `.js` and
 * `.mjs` files with the node's own Node.js, a `#!` line honoured on a file without the execute
 * bit, and a clear error naming the fix when nothing says how to run the file. No Python: the
 * interpreters are `sh` and `process.execPath`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, SharedJobCluster } from '../src/index.js';
import { TEST_SECRET, startNode, type TestNode } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler, type TestScheduler } from './helpers/scheduler.js';

type Program = (...args: unknown[]) => number;

let node: TestNode;
let sched: TestScheduler;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.76', cpus: 2, logLevel: 'warn' });
  sched = await startScheduler({ host: '127.0.0.77', nodes: [`${node.host}:${node.port}`], logLevel: 'warn' });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-interpreters-'));
});
after(async () => {
  await sched?.stop();
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A file without the execute bit. */
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text, { mode: 0o644 });
  return p;
}

const opts = () => ({ nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET });

async function runOnce(computation: ConstructorParameters<typeof JobCluster<Program>>[0], ...args: unknown[]) {
  const cluster = new JobCluster<Program>(computation, opts());
  try {
    const job = cluster.submit(...args);
    const code = await job.wait();
    return { code, stdout: job.stdout, stderr: job.stderr, name: cluster.name };
  } finally {
    await cluster.close();
  }
}

test('a script runs with the interpreter given with it: [interpreter, ...its args, script] and { program, interpreter }', async () => {
  // JavaScript in a .txt file without #! or execute bit: run as itself (or by sh) it would fail.
  const script = file(
    'count.txt',
    "console.log('ran ' + process.argv.slice(2).join(' '));\nprocess.exit(Number(process.argv[2]) + Number(process.argv[3]));\n",
  );
  const a = await runOnce([process.execPath, script], 2, 3);
  assert.equal(a.code, 5);
  assert.equal(a.stdout, 'ran 2 3\n');
  assert.equal(a.name, 'count.txt');
  const b = await runOnce({ program: script, interpreter: [process.execPath, '--no-warnings'] }, 1, 1);
  assert.equal(b.code, 2);
  // The interpreter's own arguments come before the script: sh -c CMD SCRIPT ARGS.
  const c = await runOnce({ program: script, interpreter: ['sh', '-c', 'echo "sh -c with $0 and $1"; exit 4'] }, 'x');
  assert.equal(c.code, 4);
  assert.match(c.stdout, /^sh -c with \S*\/count\.txt and x\n$/);
});

test('a .js or .mjs program runs with Node.js by default; process.execPath as an interpreter too', async () => {
  const mjs = file(
    'hello.mjs',
    "import { argv, exit } from 'node:process';\nconsole.log('node ' + argv.slice(2).join(' '));\nexit(Number(argv[2]));\n",
  );
  const a = await runOnce(mjs, 7, 'x');
  assert.equal(a.code, 7);
  assert.equal(a.stdout, 'node 7 x\n');
  const js = file('hello.js', "console.log('cjs', process.argv.length - 2);\n");
  const b = await runOnce(js, 'a', 'b', 'c');
  assert.equal(b.code, 0);
  assert.equal(b.stdout, 'cjs 3\n');
  const c = await runOnce([process.execPath, js], 'one');
  assert.equal(c.stdout, 'cjs 1\n');
});

test('a #! line is honoured on a file without the execute bit', async () => {
  const script = file('bang.txt', '#!/bin/sh\necho "bang $1"\nexit 3\n');
  const r = await runOnce(script, 'ok');
  assert.equal(r.code, 3);
  assert.equal(r.stdout, 'bang ok\n');
});

test('a file nothing can run is refused, naming what to do; bad interpreters are refused', () => {
  const plain = file('data.py', 'print("hi")\n');
  assert.throws(() => new JobCluster(plain, opts()), {
    code: 'DISPY_ERR_COMPUTATION',
    message:
      /is not executable and has no #! line: make it executable \(chmod \+x .*data\.py\), start it with a #! line, or name its interpreter: new JobCluster\(\['python3', '.*data\.py'\]\)/,
  });
  assert.throws(() => new JobCluster(['python3'], opts()), { code: 'DISPY_ERR_INVALID_OPTION' });
  assert.throws(() => new JobCluster(['', plain], opts()), { code: 'DISPY_ERR_INVALID_OPTION' });
  assert.throws(() => new JobCluster({ program: plain, interpreter: [] }, opts()), { code: 'DISPY_ERR_INVALID_OPTION' });
  assert.throws(() => new JobCluster(['sh', join(dir, 'absent.sh')], opts()), { code: 'DISPY_ERR_COMPUTATION', message: /not found/ });
});

test('through dispyts scheduler: the interpreter goes with the program', async () => {
  const script = file('shared.txt', "console.log('shared ' + process.argv[2]);\nprocess.exit(Number(process.argv[2]));\n");
  const cluster = new SharedJobCluster<Program>([process.execPath, script], {
    schedulerHost: sched.host,
    schedulerPort: sched.port,
    secret: CLUSTER_SECRET,
    host: '127.0.0.78',
  });
  try {
    const job = cluster.submit(6);
    assert.equal(await job.wait(), 6);
    assert.equal(job.stdout, 'shared 6\n');
  } finally {
    await cluster.close();
  }
});
