/**
 * User payloads (job arguments and results): msgpack with structured cloning, so Map, Set, Date,
 * BigInt, typed arrays, Buffers and cycles round-trip. Instances of classes shipped in `depends`
 * travel through one extension type carrying the class name and come back with their prototype,
 * resolved against the registry of the codec doing the decoding (msgpackr's extensions are
 * process-global, registries are per computation). Errors keep their name, message, stack,
 * code, cause and other own fields; URLs round-trip.
 *
 * Nothing changes silently: before encoding, a value is checked for what msgpack would drop or
 * turn into something else (a function, a symbol, a WeakMap, a Promise, ...), and encoding
 * throws DISPY_ERR_SERIALIZE naming where in the value it is.
 */
import { types } from 'node:util';
import { Packr, addExtension } from 'msgpackr';
import { DispyError } from '../errors.js';

/** Extension type of class instances. */
const CLASS_EXT = 42;
/** Extension type of errors (msgpackr's own keeps only name, message and cause). */
const ERROR_EXT = 43;
/** Extension type of URLs (msgpackr's own turns them into strings). */
const URL_EXT = 44;

type AnyClass = abstract new (...args: never[]) => object;

const registered = new WeakSet<AnyClass>();
const classNames = new WeakMap<AnyClass, string>();
let decodingWith: Map<string, AnyClass> | null = null;

function readInstance(data: unknown): unknown {
  if (!Array.isArray(data) || typeof data[0] !== 'string') return data;
  const [name, fields] = data as [string, Record<string, unknown>];
  const Class = decodingWith?.get(name);
  if (!Class) return fields;
  return Object.assign(Object.create(Class.prototype as object) as object, fields);
}

/** An instance's fields as they travel (an error's message and stack are not enumerable). */
function fieldsOf(instance: object): Record<string, unknown> {
  if (!(instance instanceof Error)) return { ...instance };
  const fields: Record<string, unknown> = { message: instance.message, stack: instance.stack };
  return Object.assign(fields, instance);
}

function register(Class: AnyClass, name: string): void {
  classNames.set(Class, name);
  if (registered.has(Class)) return;
  registered.add(Class);
  addExtension({
    Class: Class as unknown as new (...args: unknown[]) => unknown,
    type: CLASS_EXT,
    write(instance: object) {
      const own = classNames.get(instance.constructor as AnyClass) ?? classNames.get(Class) ?? name;
      return [own, fieldsOf(instance)];
    },
    read: readInstance,
  });
}

/** Errors of these names come back as instances of the built-in class. */
const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  ReferenceError,
  SyntaxError,
  EvalError,
  URIError,
};

type ErrorData = [string, string, string | null, Record<string, unknown>, boolean, unknown, unknown[] | null];

function writeError(e: Error): ErrorData {
  const own: Record<string, unknown> = {};
  for (const k of Object.keys(e)) own[k] = (e as unknown as Record<string, unknown>)[k];
  const hasCause = Object.hasOwn(e, 'cause');
  return [
    String(e.name),
    String(e.message),
    typeof e.stack === 'string' ? e.stack : null,
    own,
    hasCause,
    hasCause ? e.cause : null,
    e instanceof AggregateError ? [...(e.errors as unknown[])] : null,
  ];
}

function hidden(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable: false });
}

function readError(data: unknown): Error {
  if (!Array.isArray(data)) return new Error(String(data));
  const [name, message, stack, own, hasCause, cause, errors] = data as ErrorData;
  const e = errors ? new AggregateError(errors, message) : new (BUILTIN_ERRORS[name] ?? Error)(message);
  if (e.name !== name) hidden(e, 'name', name);
  // The stack of where it was thrown, not of the decoder.
  hidden(e, 'stack', stack ?? `${name}: ${message}`);
  if (hasCause) hidden(e, 'cause', cause);
  return Object.assign(e, own);
}

addExtension({ Class: Error, type: ERROR_EXT, write: writeError, read: readError });
addExtension({ Class: URL, type: URL_EXT, write: (u: URL) => u.href, read: (href: unknown) => new URL(String(href)) });

/** What a value is that msgpack cannot carry as it is, or null. */
function refusal(v: object): string | null {
  if (types.isPromise(v)) return 'a Promise (await it first)';
  if (types.isWeakMap(v) || types.isWeakSet(v) || v instanceof WeakRef || v instanceof FinalizationRegistry)
    return `a ${v.constructor.name} (its entries cannot be read)`;
  if (types.isGeneratorObject(v)) return 'a generator (collect its values into an array first)';
  if (types.isSharedArrayBuffer(v)) return 'a SharedArrayBuffer (copy it into an ArrayBuffer or a Buffer first)';
  if (types.isBoxedPrimitive(v)) return 'a boxed primitive (a String, Number or Boolean object: pass the primitive)';
  if (types.isModuleNamespaceObject(v)) return 'a module namespace object';
  if (types.isExternal(v)) return 'an external (native) value';
  if (typeof Blob === 'function' && v instanceof Blob) return 'a Blob (read it into a Buffer first)';
  if (v instanceof URLSearchParams) return 'a URLSearchParams (pass its string)';
  if (types.isMap(v) && v.constructor !== Map && !registeredInstance(v))
    return `an instance of ${v.constructor?.name ?? 'a Map subclass'}, a Map subclass (pass a plain Map)`;
  return null;
}

function registeredInstance(v: object): boolean {
  for (let p = Object.getPrototypeOf(v) as { constructor?: unknown } | null; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    if (typeof p.constructor === 'function' && registered.has(p.constructor as AnyClass)) return true;
  }
  return false;
}

/** One step into a value, for naming where a refused part of it is. */
interface Step {
  up: Step | null;
  /** `[3]`, `.name`, ... */
  key: string;
}

function pathOf(step: Step | null, root: string): string {
  const keys: string[] = [];
  for (let s = step; s; s = s.up) keys.push(s.key);
  return root + keys.reverse().join('');
}

function propKey(k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`;
}

function shortKey(k: unknown, i: number): string {
  return typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean' ? JSON.stringify(k) : `#${i}`;
}

/**
 * Throws DISPY_ERR_SERIALIZE if `value` holds anything msgpack would drop or change: functions,
 * symbols, weak collections, promises, generators, proxies, boxed primitives, shared memory,
 * Blobs, Map subclasses. Instances of other classes travel as their own enumerable fields (as
 * structured cloning does), unless their class was shipped in `depends`.
 */
export function checkCarriable(value: unknown, root = 'value'): void {
  const seen = new Set<object>();
  const todo: [object, Step | null][] = [];
  const fail = (at: Step | null, what: string): never => {
    throw new DispyError('DISPY_ERR_SERIALIZE', `cannot serialize ${pathOf(at, root)}: it is ${what}`);
  };
  const visit = (v: unknown, at: Step | null): void => {
    switch (typeof v) {
      case 'function':
        fail(
          at,
          /^class\b/.test(Function.prototype.toString.call(v))
            ? 'a class (code travels in depends, not as data)'
            : 'a function (code travels in depends, not as data)',
        );
        return;
      case 'symbol':
        fail(at, `a symbol (${String(v.description)})`);
        return;
      case 'object':
        if (v !== null && !seen.has(v)) todo.push([v, at]);
        return;
      default:
        return;
    }
  };
  visit(value, null);
  for (let item = todo.pop(); item; item = todo.pop()) {
    const [v, at] = item;
    if (seen.has(v)) continue;
    seen.add(v);
    if (types.isProxy(v)) fail(at, 'a Proxy');
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (typeof x === 'object' || typeof x === 'function' || typeof x === 'symbol') visit(x, { up: at, key: `[${i}]` });
      }
      continue;
    }
    const proto = Object.getPrototypeOf(v) as object | null;
    if (proto !== Object.prototype && proto !== null) {
      const why = refusal(v);
      if (why) fail(at, why);
      if (types.isDate(v) || types.isRegExp(v) || types.isArrayBuffer(v) || ArrayBuffer.isView(v) || v instanceof URL) continue;
      if (types.isMap(v)) {
        let i = 0;
        for (const [k, x] of v as Map<unknown, unknown>) {
          visit(k, { up: at, key: `<key ${i}>` });
          visit(x, { up: at, key: `.get(${shortKey(k, i)})` });
          i++;
        }
        continue;
      }
      if (types.isSet(v)) {
        let i = 0;
        for (const x of v as Set<unknown>) visit(x, { up: at, key: `<item ${i++}>` });
        continue;
      }
      if (v instanceof Error) {
        if (Object.hasOwn(v, 'cause')) visit(v.cause, { up: at, key: '.cause' });
        if (v instanceof AggregateError) visit([...(v.errors as unknown[])], { up: at, key: '.errors' });
      } else if (!registeredInstance(v) && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
        // msgpack sends what toJSON returns.
        visit((v as { toJSON: () => unknown }).toJSON(), { up: at, key: '.toJSON()' });
        continue;
      }
    }
    for (const k of Object.keys(v)) visit((v as Record<string, unknown>)[k], { up: at, key: propKey(k) });
  }
}

/** Encoder/decoder of one computation's payloads. */
export class PayloadCodec {
  readonly #classes = new Map<string, AnyClass>();
  readonly #packr = new Packr({ structuredClone: true, moreTypes: true, useBigIntExtension: true });

  constructor(classes: Iterable<[string, AnyClass]> = []) {
    for (const [name, Class] of classes) this.addClass(name, Class);
  }

  /** Makes instances of `Class` travel as `name` and decode with its prototype. */
  addClass(name: string, Class: AnyClass): void {
    this.#classes.set(name, Class);
    register(Class, name);
  }

  /**
   * Encodes `value`; throws DISPY_ERR_SERIALIZE naming the part of it (`root` and the path
   * below it, e.g. `args[1].onDone`) that cannot travel.
   */
  encode(value: unknown, root = 'value'): Buffer {
    checkCarriable(value, root);
    try {
      // Copy: msgpackr may reuse its buffer on the next pack.
      return Buffer.from(this.#packr.pack(value));
    } catch (err) {
      throw new DispyError('DISPY_ERR_SERIALIZE', `cannot serialize ${root}: ${(err as Error).message}`, { cause: err });
    }
  }

  decode(bytes: Uint8Array): unknown {
    const prev = decodingWith;
    decodingWith = this.#classes;
    try {
      return this.#packr.unpack(bytes);
    } catch (err) {
      throw new DispyError('DISPY_ERR_SERIALIZE', `cannot decode value: ${(err as Error).message}`, { cause: err });
    } finally {
      decodingWith = prev;
    }
  }
}
