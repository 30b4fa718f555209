/** PayloadCodec: user arguments and results round-trip with their types and classes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PayloadCodec } from '../src/protocol/payload.js';

const rt = <T>(codec: PayloadCodec, v: T): T => codec.decode(codec.encode(v)) as T;

class Point {
  x: number;
  y: number;
  constructor(x: number, y: number) {
    this.x = x;
    this.y = y;
  }
  norm(): number {
    return Math.hypot(this.x, this.y);
  }
}

test('Map, Set and Date round-trip as such', () => {
  const c = new PayloadCodec();
  const m = rt(
    c,
    new Map<unknown, unknown>([
      ['a', 1],
      [2, { b: [3] }],
    ]),
  );
  assert.ok(m instanceof Map);
  assert.deepEqual(
    [...m],
    [
      ['a', 1],
      [2, { b: [3] }],
    ],
  );
  const s = rt(c, new Set([1, 'two', 3]));
  assert.ok(s instanceof Set);
  assert.deepEqual([...s], [1, 'two', 3]);
  const d = rt(c, new Date(1_700_000_000_123));
  assert.ok(d instanceof Date);
  assert.equal(d.getTime(), 1_700_000_000_123);
});

test('BigInt round-trips as bigint, small and beyond 64 bits', () => {
  const c = new PayloadCodec();
  for (const b of [0n, 5n, -7n, 2n ** 63n - 1n, 2n ** 64n, 2n ** 100n + 3n, -(2n ** 70n)]) {
    const out = rt(c, b);
    assert.equal(typeof out, 'bigint', `typeof for ${b}`);
    assert.equal(out, b);
  }
  assert.deepEqual(rt(c, { big: 2n ** 80n, n: 1 }), { big: 2n ** 80n, n: 1 });
});

test('typed arrays and Buffers keep their type and contents', () => {
  const c = new PayloadCodec();
  const f64 = rt(c, new Float64Array([1.5, -2.25, Math.PI]));
  assert.ok(f64 instanceof Float64Array);
  assert.deepEqual([...f64], [1.5, -2.25, Math.PI]);
  const i32 = rt(c, new Int32Array([-1, 2 ** 31 - 1]));
  assert.ok(i32 instanceof Int32Array);
  assert.deepEqual([...i32], [-1, 2 ** 31 - 1]);
  const u8 = rt(c, new Uint8Array([0, 255, 7]));
  assert.ok(u8 instanceof Uint8Array);
  assert.deepEqual([...u8], [0, 255, 7]);
  const buf = rt(c, Buffer.from('héllo'));
  assert.ok(Buffer.isBuffer(buf), 'a Buffer comes back as a Buffer');
  assert.equal(buf.toString(), 'héllo');
});

test('nested cycles are preserved', () => {
  const c = new PayloadCodec();
  type Node = { name: string; self?: Node; kids: Node[]; parent?: Node };
  const root: Node = { name: 'root', kids: [] };
  root.self = root;
  const kid: Node = { name: 'kid', kids: [], parent: root };
  root.kids.push(kid, kid);
  const out = rt(c, { root, again: root });
  assert.equal(out.root.self, out.root);
  assert.equal(out.again, out.root);
  assert.equal(out.root.kids[0], out.root.kids[1]);
  assert.equal(out.root.kids[0]!.parent, out.root);
  assert.equal(out.root.kids[0]!.name, 'kid');
});

test('undefined survives at the top level, in objects and in arrays', () => {
  const c = new PayloadCodec();
  assert.equal(rt(c, undefined), undefined);
  const o = rt(c, { u: undefined, n: null });
  assert.ok(Object.hasOwn(o, 'u'));
  assert.equal(o.u, undefined);
  assert.equal(o.n, null);
  const a = rt(c, [1, undefined, 3]);
  assert.equal(a.length, 3);
  assert.equal(a[1], undefined);
});

test('instances of registered classes come back with their prototype', () => {
  const c = new PayloadCodec();
  c.addClass('Point', Point);
  const p = rt(c, new Point(3, 4));
  assert.ok(p instanceof Point);
  assert.equal(p.norm(), 5);
  const nested = rt(c, { list: [new Point(6, 8)], byName: new Map([['p', new Point(0, 1)]]) });
  assert.ok(nested.list[0] instanceof Point);
  assert.equal(nested.list[0].norm(), 10);
  assert.equal(nested.byName.get('p')!.norm(), 1);
  // The constructor-argument form registers too.
  const viaCtor = new PayloadCodec([['Point', Point]]);
  assert.equal(rt(viaCtor, new Point(5, 12)).norm(), 13);
});

test('an instance of an unregistered class decodes as a plain object', () => {
  class Secretive {
    a = 1;
    b = 'two';
    hello(): string {
      return 'hi';
    }
  }
  const c = new PayloadCodec();
  const out = rt(c, new Secretive()) as unknown as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.equal(out.hello, undefined);
  assert.deepEqual(out, { a: 1, b: 'two' });
});

test('a registered class decoded by a codec that does not know it gives a plain object', () => {
  const a = new PayloadCodec([['Point', Point]]);
  const other = new PayloadCodec();
  const out = other.decode(a.encode(new Point(1, 2))) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(out), Object.prototype);
  assert.deepEqual(out, { x: 1, y: 2 });
});

test('two codecs with different classes of the same name each decode with their own', () => {
  const A = class Shape {
    side = 2;
    area(): number {
      return this.side * this.side;
    }
  };
  const B = class Shape {
    side = 2;
    area(): number {
      return -1;
    }
  };
  const ca = new PayloadCodec([['Shape', A]]);
  const cb = new PayloadCodec([['Shape', B]]);
  const fromA = ca.decode(ca.encode(new A())) as InstanceType<typeof A>;
  const fromB = cb.decode(cb.encode(new B())) as InstanceType<typeof B>;
  assert.ok(fromA instanceof A);
  assert.equal(fromA.area(), 4);
  assert.ok(fromB instanceof B);
  assert.equal(fromB.area(), -1);
  // Bytes travel by class name: each side decodes with its own registry.
  const crossed = cb.decode(ca.encode(new A())) as InstanceType<typeof B>;
  assert.ok(crossed instanceof B);
  assert.equal(crossed.area(), -1);
  // Interleaved use does not leak one codec's registry into the other.
  const bytesA = ca.encode(new A());
  const bytesB = cb.encode(new B());
  assert.ok(ca.decode(bytesB) instanceof A);
  assert.ok(cb.decode(bytesA) instanceof B);
});

test('a value that cannot be encoded is DISPY_ERR_SERIALIZE, as is truncated input', () => {
  const c = new PayloadCodec();
  assert.throws(() => c.encode({ f: Symbol('nope') }), { code: 'DISPY_ERR_SERIALIZE' });
  assert.throws(() => c.decode(Buffer.from([0x92, 0x01])), { code: 'DISPY_ERR_SERIALIZE' }); // truncated array
});

test('what msgpack would drop or change is refused, naming where it is', () => {
  const c = new PayloadCodec();
  const refused = (v: unknown, path: string, what: RegExp) =>
    assert.throws(
      () => c.encode(v, 'args'),
      (err: Error & { code?: string }) =>
        err.code === 'DISPY_ERR_SERIALIZE' && err.message.includes(`cannot serialize ${path}:`) && what.test(err.message),
      path,
    );
  refused([1, { cb: () => 1 }], 'args[1].cb', /a function/);
  refused([class A {}], 'args[0]', /a class/);
  refused([new WeakMap()], 'args[0]', /a WeakMap/);
  refused([{ s: new WeakSet() }], 'args[0].s', /a WeakSet/);
  refused([Symbol('x')], 'args[0]', /a symbol/);
  refused([Promise.resolve(1)], 'args[0]', /a Promise/);
  refused([new Map([['k', { f() {} }]])], 'args[0].get("k").f', /a function/);
  refused([new Set([1, new WeakRef({})])], 'args[0]<item 1>', /a WeakRef/);
  refused([{ 'odd key': [new Proxy({}, {})] }], 'args[0]["odd key"][0]', /a Proxy/);
  refused([new Number(3)], 'args[0]', /a boxed primitive/);
  refused([new SharedArrayBuffer(8)], 'args[0]', /SharedArrayBuffer/);
  refused([(function* () {})()], 'args[0]', /a generator/);
  refused([new URLSearchParams('a=1')], 'args[0]', /URLSearchParams/);
  refused([new (class Registry extends Map {})()], 'args[0]', /Map subclass/);
  const err = new Error('x', { cause: { handler: () => 0 } });
  refused([err], 'args[0].cause.handler', /a function/);
  // Inside an instance of a class that is not shipped (it travels as its fields).
  refused(
    [
      new (class Holder {
        fn = () => 0;
      })(),
    ],
    'args[0].fn',
    /a function/,
  );
  // Cycles are walked once.
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  assert.deepEqual(Object.keys(rt(c, cyclic) as object), ['a', 'self']);
});

test('errors keep their class, name, message, stack, code, cause and fields', () => {
  const c = new PayloadCodec();
  const inner = new RangeError('inner problem');
  const e = Object.assign(new TypeError('outer problem', { cause: inner }), { code: 'E_OUTER', detail: { n: 1 } });
  const back = rt(c, e);
  assert.ok(back instanceof TypeError);
  assert.equal(back.name, 'TypeError');
  assert.equal(back.message, 'outer problem');
  assert.equal(back.stack, e.stack, 'the stack where it was made, not the decoder’s');
  assert.equal(back.code, 'E_OUTER');
  assert.deepEqual(back.detail, { n: 1 });
  assert.ok(back.cause instanceof RangeError);
  assert.equal((back.cause as Error).message, 'inner problem');
  assert.equal(Object.keys(back).includes('stack'), false, 'stack stays non-enumerable');
  class JobFailed extends Error {
    constructor(m: string) {
      super(m);
      this.name = 'JobFailed';
    }
  }
  const custom = rt(c, new JobFailed('custom'));
  assert.equal(custom.name, 'JobFailed');
  assert.equal(custom.message, 'custom');
  const agg = rt(c, new AggregateError([new Error('a'), new Error('b')], 'two'));
  assert.ok(agg instanceof AggregateError);
  assert.deepEqual(
    agg.errors.map((x: Error) => x.message),
    ['a', 'b'],
  );
  // A shipped Error subclass keeps its prototype and its message.
  const withClass = new PayloadCodec([['JobFailed', JobFailed]]);
  const shipped = rt(withClass, new JobFailed('shipped'));
  assert.ok(shipped instanceof JobFailed);
  assert.equal(shipped.message, 'shipped');
});

test('URLs round-trip as URLs', () => {
  const c = new PayloadCodec();
  const back = rt(c, { u: new URL('https://example.org/a/b?c=1#d') });
  assert.ok(back.u instanceof URL);
  assert.equal(back.u.href, 'https://example.org/a/b?c=1#d');
});
