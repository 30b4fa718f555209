/** NodeAllocate matching and CPU semantics, parseNodeSpecs, and functionSource. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { NodeAllocate } from '../src/client/node-allocate.js';
import { parseNodeSpecs } from '../src/client/node-allocate.js';
import { functionSource } from '../src/client/computation.js';

const cpusFor = (spec: NodeAllocate, ip: string, offered = 8): number => spec.allocate(null, ip, 'n', offered);

describe('NodeAllocate', () => {
  test('matching is anchored at both ends', () => {
    const exact = new NodeAllocate('10.0.0.1');
    assert.equal(cpusFor(exact, '10.0.0.1'), 8);
    assert.equal(cpusFor(exact, '10.0.0.12'), 0);
    assert.equal(cpusFor(exact, '110.0.0.1'), 0);
    assert.equal(cpusFor(exact, '10a0b0c1'), 0, 'a dot is literal');
  });

  test('a wildcard matches one or more address characters, within its own positions', () => {
    const wild = new NodeAllocate('127.0.0.*');
    assert.ok(wild.isWildcard);
    assert.equal(cpusFor(wild, '127.0.0.25'), 8);
    assert.equal(cpusFor(wild, '127.0.0.2'), 8);
    assert.equal(cpusFor(wild, '127.0.1.2'), 0);
    assert.equal(cpusFor(wild, '127.0.0.'), 0, 'the star needs at least one character');
    assert.equal(cpusFor(wild, '10.127.0.0.2'), 0);
    assert.equal(cpusFor(new NodeAllocate('10.*.0.1'), '10.200.0.1'), 8);
    assert.equal(cpusFor(new NodeAllocate('10.*.0.1'), '10.200.0.11'), 0);
  });

  test('cpus: positive caps, negative leaves that many, beyond the node gives 0, zero takes all', () => {
    assert.equal(cpusFor(new NodeAllocate('h', 9701, 2), 'h', 8), 2);
    assert.equal(cpusFor(new NodeAllocate('h', 9701, 16), 'h', 8), 8, 'a cap above the node is the node');
    assert.equal(cpusFor(new NodeAllocate('h', 9701, -2), 'h', 8), 6);
    assert.equal(cpusFor(new NodeAllocate('h', 9701, -8), 'h', 8), 0);
    assert.equal(cpusFor(new NodeAllocate('h', 9701, -20), 'h', 8), 0);
    assert.equal(cpusFor(new NodeAllocate('h', 9701, 0), 'h', 8), 8);
    assert.equal(cpusFor(new NodeAllocate('h', 9701, 3), 'other', 8), 0, 'no match, no cpus');
  });

  test('parseNodeSpecs puts literal addresses before wildcards, keeping each group in order', () => {
    const given = new NodeAllocate('192.168.1.1', 9800, 1);
    const specs = parseNodeSpecs(['127.0.0.*', '10.0.0.1', { host: '127.0.0.2', port: 9999, cpus: -1 }, '10.*', given, 'localhost']);
    assert.deepEqual(
      specs.map((s) => s.host),
      ['10.0.0.1', '127.0.0.2', '192.168.1.1', 'localhost', '127.0.0.*', '10.*'],
    );
    assert.equal(specs[2], given, 'a NodeAllocate is used as is');
    assert.equal(specs[1]!.port, 9999);
    assert.equal(specs[1]!.cpus, -1);
    assert.equal(specs[0]!.port, 9701, 'default port');
    assert.equal(parseNodeSpecs('127.0.0.3').length, 1, 'a single spec without an array');
  });

  test('invalid specs are DISPY_ERR_INVALID_OPTION naming the option', () => {
    const bad = (spec: unknown, name: RegExp) =>
      assert.throws(
        () => parseNodeSpecs(spec as never),
        (err: Error & { code?: string }) => err.code === 'DISPY_ERR_INVALID_OPTION' && name.test(err.message),
        `${JSON.stringify(spec)} should name ${name}`,
      );
    bad([42], /`nodes\[0\]`/);
    bad(['127.0.0.1', null], /`nodes\[1\]`/);
    bad([{ port: 9701 }], /`nodes\[0\]`/);
    bad([''], /`host`/);
    bad([{ host: 'h', port: 70000 }], /`port`/);
    bad([{ host: 'h', port: 1.5 }], /`port`/);
    bad([{ host: 'h', cpus: 1.5 }], /`cpus`/);
    bad(['x'.repeat(300)], /`host`/);
  });
});

describe('functionSource', () => {
  /** The shipped text must evaluate, as an expression, to a working function. */
  type Callable = (...args: any[]) => any;
  function rebuild(fn: Callable): Callable {
    const src = functionSource(fn, 'computation');
    // biome-ignore lint/nursery/noImpliedEval: the test evaluates shipped source as a runner would
    return new Function(`return (${src});`)() as Callable;
  }

  test('arrow functions are shipped as they are', () => {
    assert.equal(rebuild((x: number) => x + 1)(1), 2);
    assert.equal(rebuild((x: number, y: number) => x * y)(3, 4), 12);
    assert.equal(rebuild(({ a }: { a: number }) => a)({ a: 5 }), 5);
    assert.equal(
      rebuild(function named(x: number) {
        return x - 1;
      })(1),
      0,
    );
  });

  test('an arrow whose parameters contain parentheses is shipped as an arrow', () => {
    assert.equal(rebuild((a = Math.max(1, 2)) => a + 1)(), 3);
    assert.equal(rebuild((s = ')') => s)(), ')');
  });

  test('async functions and async arrows', async () => {
    assert.equal(await rebuild(async (x: number) => x + 1)(1), 2);
    assert.equal(
      await rebuild(async function af(x: number) {
        return x * 2;
      })(2),
      4,
    );
  });

  test('method shorthand gets `function`, async methods `async function`', async () => {
    const obj = {
      m(x: number) {
        return x + 10;
      },
      async am(x: number) {
        return x + 20;
      },
      async(x: number) {
        return x + 30;
      },
    };
    assert.match(functionSource(obj.m, 'c'), /^function m\s*\(/);
    assert.equal(rebuild(obj.m)(1), 11);
    assert.match(functionSource(obj.am, 'c'), /^async function am\s*\(/);
    assert.equal(await rebuild(obj.am)(1), 21);
    assert.equal(rebuild(obj.async)(1), 31, 'a method named async is not an async method');
  });

  test('generators: functions, methods and async generator methods', async () => {
    function* g(n: number) {
      yield n;
      yield n + 1;
    }
    const obj = {
      *gm(n: number) {
        yield n * 2;
      },
      async *agm(n: number) {
        yield n * 3;
      },
    };
    assert.deepEqual([...(rebuild(g)(1) as Iterable<number>)], [1, 2]);
    assert.deepEqual([...(rebuild(obj.gm)(2) as Iterable<number>)], [4]);
    const out: number[] = [];
    for await (const v of rebuild(obj.agm)(3) as AsyncIterable<number>) out.push(v);
    assert.deepEqual(out, [9]);
  });

  test('bound and native functions are refused with DISPY_ERR_COMPUTATION', () => {
    const f = (x: number) => x;
    assert.throws(() => functionSource(f.bind(null), 'computation'), { code: 'DISPY_ERR_COMPUTATION' });
    assert.throws(
      () => functionSource(Math.max, 'computation'),
      (err: Error & { code?: string }) => err.code === 'DISPY_ERR_COMPUTATION' && /max/.test(err.message),
    );
    assert.throws(() => functionSource(Array.prototype.map, 'computation'), { code: 'DISPY_ERR_COMPUTATION' });
  });

  test('accessors are refused with DISPY_ERR_COMPUTATION', () => {
    const getter = Object.getOwnPropertyDescriptor(
      {
        get v() {
          return 1;
        },
      },
      'v',
    )!.get!;
    assert.throws(() => functionSource(getter, 'computation'), { code: 'DISPY_ERR_COMPUTATION' });
  });
});
