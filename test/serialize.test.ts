/**
 * Nothing changes silently on the way to a node and back: arguments msgpack cannot carry make
 * submit() throw (and nothing is queued), such results end the job Terminated with
 * DISPY_ERR_SERIALIZE naming where they were, errors keep their name, message, code and cause,
 * a throw of something else says what it was, and a job that runs out of memory says so.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DispyJob, JobCluster } from '../src/index.js';
import { TEST_SECRET, startNode, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
/** A node whose runners have a small heap, for the out-of-memory case. */
let small: TestNode;
before(async () => {
  [node, small] = await Promise.all([
    startNode({ host: '127.0.0.43', cpus: 2 }),
    startNode({ host: '127.0.0.44', cpus: 1, env: { NODE_OPTIONS: '--max-old-space-size=64' } }),
  ]);
});
after(async () => {
  await Promise.all([node.stop(), small.stop()]);
});

/** Returns (or throws, or hands as a provisional result) one of the values below. */
function give(kind: string) {
  const inner = new RangeError('inner problem');
  switch (kind) {
    case 'function':
      return { ok: 1, handler: () => 0 };
    case 'weakmap':
      return [1, new WeakMap()];
    case 'symbol-in-map':
      return new Map([['k', Symbol('s')]]);
    case 'url':
      return new URL('https://example.org/x?y=1');
    case 'error':
      return Object.assign(new TypeError('outer problem', { cause: inner }), { code: 'E_OUTER' });
    case 'throw-error':
      throw Object.assign(new TypeError('outer problem', { cause: inner }), { code: 'E_OUTER' });
    case 'throw-string':
      throw 'just a string';
    case 'throw-number':
      throw 42;
    case 'throw-object':
      throw { reason: 'an object' };
    case 'provisional': {
      try {
        dispyProvisionalResult({ fn: () => 0 });
      } catch (err) {
        return `${(err as { code: string }).code}: ${(err as Error).message}`;
      }
      return 'no error';
    }
    case 'oom': {
      const hoard: number[][] = [];
      for (;;) hoard.push(new Array(100_000).fill(1.5));
    }
  }
  return null;
}
declare function dispyProvisionalResult(value: unknown): void;

function cluster(on = node) {
  return new JobCluster(give, { nodes: [{ host: on.host, port: on.port }], secret: TEST_SECRET });
}

test('arguments that cannot travel make submit() throw, naming where; nothing is queued and the cluster works on', async () => {
  const c = new JobCluster((x: unknown) => typeof x, clusterOn(node));
  assert.throws(() => c.submit({ nested: [1, () => 0] }), {
    code: 'DISPY_ERR_SERIALIZE',
    message: /args\[0\]\.nested\[1\]: it is a function/,
  });
  assert.throws(() => c.submit(new WeakMap()), { code: 'DISPY_ERR_SERIALIZE', message: /args\[0\]: it is a WeakMap/ });
  assert.throws(() => c.submit(Symbol('s')), { code: 'DISPY_ERR_SERIALIZE', message: /args\[0\]: it is a symbol/ });
  assert.equal(c.status().jobsPending, 0);
  assert.equal(await c.submit(new URL('https://example.org/')).wait(), 'object');
  await c.close();
});

test('results that cannot travel end the job Terminated with DISPY_ERR_SERIALIZE naming where', async () => {
  const c = cluster();
  const cases: [string, RegExp][] = [
    ['function', /cannot serialize the result\.handler: it is a function/],
    ['weakmap', /cannot serialize the result\[1\]: it is a WeakMap/],
    ['symbol-in-map', /cannot serialize the result\.get\("k"\): it is a symbol/],
  ];
  for (const [kind, why] of cases) {
    const job = c.submit(kind);
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
    assert.equal(job.status, DispyJob.Terminated);
    assert.match(job.exception!, /^DispyError: /);
    assert.match(job.exception!, why);
  }
  assert.equal(
    await c.submit('provisional').wait(),
    'DISPY_ERR_SERIALIZE: cannot serialize the provisional result.fn: it is a function (code travels in depends, not as data)',
  );
  await c.close();
});

test('URL and Error results round-trip; thrown errors keep code and cause; other throws say what they were', async () => {
  const c = cluster();
  const url = await c.submit('url').wait();
  assert.ok(url instanceof URL);
  assert.equal(url.href, 'https://example.org/x?y=1');

  const err = (await c.submit('error').wait()) as TypeError & { code: string; cause: Error };
  assert.ok(err instanceof TypeError);
  assert.equal(err.message, 'outer problem');
  assert.equal(err.code, 'E_OUTER');
  assert.ok(err.cause instanceof RangeError);
  assert.equal(err.cause.message, 'inner problem');
  assert.match(err.stack!, /give/, "the stack is the job's");
  assert.doesNotMatch(err.stack!, /msgpackr/);

  const thrown = c.submit('throw-error');
  await assert.rejects(thrown.wait());
  assert.match(thrown.exception!, /^TypeError: outer problem\n/);
  assert.match(thrown.exception!, /\n {2}code: E_OUTER/);
  assert.match(thrown.exception!, /\n {2}cause: RangeError: inner problem/);

  const expected: [string, string][] = [
    ['throw-string', 'Uncaught string: just a string'],
    ['throw-number', 'Uncaught number: 42'],
    ['throw-object', "Uncaught object: { reason: 'an object' }"],
  ];
  for (const [kind, text] of expected) {
    const job = c.submit(kind);
    await assert.rejects(job.wait());
    assert.equal(job.exception, text);
  }
  await c.close();
});

test('a job that runs out of memory is reported as such', async () => {
  const c = cluster(small);
  const job = c.submit('oom');
  await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  assert.match(job.exception!, /DISPY_ERR_OUT_OF_MEMORY: the job ran out of memory/);
  // The node goes on with a fresh runner.
  assert.equal(await c.submit('url').wait().then(String), 'https://example.org/x?y=1');
  await c.close();
});
