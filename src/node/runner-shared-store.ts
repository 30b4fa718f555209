/**
 * The per-node shared store, the runner's side: the global `dispyNodeShared`, whose operations
 * are requests to the daemon over the runner's IPC channel (one round trip each), on behalf of
 * the computation whose job, setup or cleanup calls them. Values travel encoded with the
 * payload codec (msgpack); the daemon keeps and compares the bytes and never decodes them.
 * `add` is a compare-and-set loop here, so the daemon runs nothing but byte comparisons.
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import { DispyError } from '../errors.js';
import { PayloadCodec } from '../protocol/payload.js';
import { type ExtCommand, ExtEvent, type ExtItem, type ExtToRunner, type StoreOp } from './runner-extensions.js';

type Reply = Extract<ExtToRunner, { cmd: ExtCommand.StoreReply }>;

/** Longest key or lock name, in characters. */
const MAX_KEY = 1024;
const codec = new PayloadCodec();
const pending = new Map<number, { resolve: (r: Reply) => void }>();
let nextId = 0;

export interface StoreHooks {
  /** Sends an item to the daemon (after any report held before it). */
  report: (item: ExtItem) => void;
  /** Which computation's code is running (job, setup, cleanup). */
  context: AsyncLocalStorage<{ computeId: string; uid: number | null }>;
}

function checkKey(key: unknown, what: string): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY)
    throw new TypeError(`dispyNodeShared: the ${what} must be a string of 1 to ${MAX_KEY} characters`);
  return key;
}

function encode(value: unknown): string {
  return codec.encode(value, 'the shared value').toString('base64');
}

function decode(b64: string | null | undefined): unknown {
  return b64 == null ? undefined : codec.decode(Buffer.from(b64, 'base64'));
}

/** Installs `dispyNodeShared` (see docs/jobs.md for what it guarantees). */
export function installSharedStore(hooks: StoreHooks): void {
  const request = (op: StoreOp): Promise<Reply> => {
    const computeId = hooks.context.getStore()?.computeId;
    if (!computeId)
      return Promise.reject(
        new DispyError('DISPY_ERR_BAD_REQUEST', 'dispyNodeShared is used outside the jobs, setup and cleanup of a computation'),
      );
    const id = ++nextId;
    return new Promise<Reply>((resolve, reject) => {
      pending.set(id, {
        resolve: (r) => {
          if (r.error) reject(new DispyError(r.error.code as never, r.error.message));
          else resolve(r);
        },
      });
      hooks.report({ ev: ExtEvent.StoreRequest, id, computeId, ...op });
    });
  };
  const cas = async (key: string, expected: string | null, value: string): Promise<Reply> => request({ op: 'cas', key, expected, value });
  const shared = {
    /** The value under `key`, or undefined. */
    async get(key: string): Promise<unknown> {
      return decode((await request({ op: 'get', key: checkKey(key, 'key') })).value);
    },
    /** Stores `value` under `key`. */
    async set(key: string, value: unknown): Promise<void> {
      await request({ op: 'set', key: checkKey(key, 'key'), value: encode(value) });
    },
    /** Removes `key`; true if it was there. */
    async delete(key: string): Promise<boolean> {
      return (await request({ op: 'delete', key: checkKey(key, 'key') })).ok === true;
    },
    /**
     * Stores `value` if the value under `key` is `expected` (compared as encoded: equal
     * primitives, or objects with the same keys in the same order); `undefined` expects the key
     * absent. True if it stored.
     */
    async compareAndSet(key: string, expected: unknown, value: unknown): Promise<boolean> {
      checkKey(key, 'key');
      return (await cas(key, expected === undefined ? null : encode(expected), encode(value))).ok === true;
    },
    /** Adds `delta` to the number under `key` (absent: 0), atomically; resolves to the new value. */
    async add(key: string, delta = 1): Promise<number> {
      checkKey(key, 'key');
      if (typeof delta !== 'number') throw new TypeError('dispyNodeShared.add: delta must be a number');
      let current = (await request({ op: 'get', key })).value ?? null;
      for (;;) {
        const now = decode(current);
        if (now !== undefined && typeof now !== 'number')
          throw new TypeError(`dispyNodeShared.add: the value under \`${key}\` is not a number`);
        const next = ((now as number | undefined) ?? 0) + delta;
        const r = await cas(key, current, encode(next));
        if (r.ok) return next;
        current = r.value ?? null;
      }
    },
    /**
     * Runs `fn` while holding the node-wide lock `name` of this computation (waiters are served
     * in order); the lock is released when `fn` settles, or when its runner dies.
     */
    async lock<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
      if (typeof fn !== 'function') throw new TypeError('dispyNodeShared.lock: fn must be a function');
      const { token } = await request({ op: 'lock', name: checkKey(name, 'lock name') });
      try {
        return await fn();
      } finally {
        await request({ op: 'unlock', name, token: token ?? 0 });
      }
    },
  };
  (globalThis as Record<string, unknown>).dispyNodeShared = Object.freeze(shared);
}

/** The daemon's answer to a request. */
export function onStoreReply(msg: Reply): void {
  const p = pending.get(msg.id);
  if (!p) return;
  pending.delete(msg.id);
  p.resolve(msg);
}
