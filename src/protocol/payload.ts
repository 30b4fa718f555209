/**
 * User payloads (job arguments and results): msgpack with structured cloning, so Map, Set, Date,
 * BigInt, typed arrays, Buffers and cycles round-trip. Instances of classes shipped in `depends`
 * travel through one extension type carrying the class name and come back with their prototype,
 * resolved against the registry of the codec doing the decoding (msgpackr's extensions are
 * process-global, registries are per computation).
 */
import { Packr, addExtension } from 'msgpackr';
import { DispyError } from '../errors.js';

/** Extension type of class instances. */
const CLASS_EXT = 42;

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

function register(Class: AnyClass, name: string): void {
  classNames.set(Class, name);
  if (registered.has(Class)) return;
  registered.add(Class);
  addExtension({
    Class: Class as unknown as new (...args: unknown[]) => unknown,
    type: CLASS_EXT,
    write(instance: object) {
      const own = classNames.get(instance.constructor as AnyClass) ?? classNames.get(Class) ?? name;
      return [own, { ...instance }];
    },
    read: readInstance,
  });
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

  encode(value: unknown): Buffer {
    try {
      // Copy: msgpackr may reuse its buffer on the next pack.
      return Buffer.from(this.#packr.pack(value));
    } catch (err) {
      throw new DispyError('DISPY_ERR_SERIALIZE', `cannot serialize value: ${(err as Error).message}`, { cause: err });
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
