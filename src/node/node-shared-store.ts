/**
 * The per-node shared store of each computation, the daemon's side: a small map of keys to
 * values and a set of named locks that the runners of one computation on this node share
 * (`dispyNodeShared` in jobs, setup and cleanup; runner-shared-store.ts). Values are the
 * payload codec's bytes and stay opaque here: the daemon stores them, compares them byte for
 * byte (compare-and-set) and runs no user code. Every operation is applied in the order the
 * daemon reads requests, one at a time, so each key is linearizable; each costs one IPC round
 * trip. Bounded per computation in keys (lock names included) and bytes, with errors naming
 * the bound; dropped when the computation closes on the node. A lock whose holder's runner
 * dies is released.
 */
import type { Logger } from 'pino';
import { ExtCommand, type ExtItem, type ExtToRunner, type ExtEvent } from './runner-extensions.js';
import type { Runner } from './runner-pool.js';

/** Keys (and lock names) a computation may hold in the store of one node, by default. */
export const DEFAULT_SHARED_STORE_KEYS = 10_000;
/** Bytes (keys and encoded values) a computation may hold in the store of one node, by default. */
export const DEFAULT_SHARED_STORE_SIZE = 16 * 1024 * 1024;
/** Longest key or lock name, in characters. */
const MAX_KEY = 1024;

interface Lock {
  holder: Runner;
  token: number;
  waiters: { runner: Runner; id: number }[];
}

interface Space {
  program: string;
  values: Map<string, Buffer>;
  bytes: number;
  locks: Map<string, Lock>;
}

type Request = Extract<ExtItem, { ev: ExtEvent.StoreRequest }>;
type Reply = Omit<Extract<ExtToRunner, { cmd: ExtCommand.StoreReply }>, 'cmd' | 'id'>;

export interface SharedStoreLimits {
  /** @default DEFAULT_SHARED_STORE_KEYS */
  maxKeys?: number;
  /** @default DEFAULT_SHARED_STORE_SIZE */
  maxBytes?: number;
}

export class NodeSharedStore {
  readonly maxKeys: number;
  readonly maxBytes: number;
  readonly #spaces = new Map<string, Space>();
  readonly #watched = new WeakSet<Runner>();
  readonly #log: Logger;
  #tokens = 0;

  constructor(log: Logger, limits: SharedStoreLimits = {}) {
    this.#log = log;
    this.maxKeys = limits.maxKeys ?? DEFAULT_SHARED_STORE_KEYS;
    this.maxBytes = limits.maxBytes ?? DEFAULT_SHARED_STORE_SIZE;
  }

  /** A computation is set up: its (empty) store, usable by the runners of `program` alone. */
  open(computeId: string, program: string): void {
    this.#spaces.set(computeId, { program, values: new Map(), bytes: 0, locks: new Map() });
  }

  /** A computation closed: its store and locks are gone (waiters are told). */
  drop(computeId: string): void {
    const space = this.#spaces.get(computeId);
    if (!space) return;
    this.#spaces.delete(computeId);
    this.#log.debug({ computeId, keys: space.values.size, bytes: space.bytes }, 'shared store dropped');
    for (const lock of space.locks.values()) {
      for (const w of lock.waiters) this.#reply(w.runner, w.id, this.#gone(computeId));
    }
  }

  /** Bytes and keys a computation holds now (for tests and the log). */
  usage(computeId: string): { keys: number; bytes: number } | null {
    const s = this.#spaces.get(computeId);
    return s ? { keys: s.values.size, bytes: s.bytes } : null;
  }

  #gone(computeId: string): Reply {
    return {
      error: {
        code: 'DISPY_ERR_UNKNOWN_COMPUTATION',
        message: `computation ${computeId} has no shared store on this node (it is not set up here, or closed)`,
      },
    };
  }

  #reply(runner: Runner, id: number, reply: Reply): void {
    if (runner.exited || !runner.child.connected) return;
    runner.child.send({ cmd: ExtCommand.StoreReply, id, ...reply } satisfies ExtToRunner);
  }

  #limit(message: string): Reply {
    return { error: { code: 'DISPY_ERR_SHARED_STORE_LIMIT', message } };
  }

  /** Stores `value` under `key` if the bounds allow it; the refusal otherwise. */
  #put(space: Space, key: string, value: Buffer): Reply | null {
    const old = space.values.get(key);
    if (!old && space.values.size + space.locks.size >= this.maxKeys) {
      return this.#limit(
        `the node's shared store of this computation holds at most ${this.maxKeys} keys and lock names (--shared-store-keys); \`${key.slice(0, 64)}\` would be one more`,
      );
    }
    const bytes = space.bytes - (old ? old.length + Buffer.byteLength(key) : 0) + value.length + Buffer.byteLength(key);
    if (bytes > this.maxBytes) {
      return this.#limit(
        `the node's shared store of this computation holds at most ${this.maxBytes} bytes (--shared-store-size); storing \`${key.slice(0, 64)}\` (${value.length} bytes) would make it ${bytes}`,
      );
    }
    space.values.set(key, value);
    space.bytes = bytes;
    return null;
  }

  /** A request from a runner (one of the computation's program, or it is refused). */
  onRequest(runner: Runner, req: Request): void {
    const space = this.#spaces.get(req.computeId);
    if (!space || runner.program !== space.program) {
      this.#reply(runner, req.id, this.#gone(req.computeId));
      return;
    }
    if (!this.#watched.has(runner)) {
      this.#watched.add(runner);
      void runner.gone.then(() => this.#runnerGone(runner));
    }
    const name = req.op === 'lock' || req.op === 'unlock' ? req.name : req.key;
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_KEY) {
      this.#reply(runner, req.id, {
        error: { code: 'DISPY_ERR_BAD_REQUEST', message: `a shared store key is a string of 1 to ${MAX_KEY} characters` },
      });
      return;
    }
    switch (req.op) {
      case 'get':
        this.#reply(runner, req.id, { value: space.values.get(req.key)?.toString('base64') ?? null });
        return;
      case 'set':
        this.#reply(runner, req.id, this.#put(space, req.key, Buffer.from(req.value, 'base64')) ?? { ok: true });
        return;
      case 'delete': {
        const old = space.values.get(req.key);
        if (old) {
          space.values.delete(req.key);
          space.bytes -= old.length + Buffer.byteLength(req.key);
        }
        this.#reply(runner, req.id, { ok: old !== undefined });
        return;
      }
      case 'cas': {
        const old = space.values.get(req.key);
        const expected = req.expected === null ? null : Buffer.from(req.expected, 'base64');
        const same = old === undefined ? expected === null : expected !== null && old.equals(expected);
        if (!same) {
          this.#reply(runner, req.id, { ok: false, value: old?.toString('base64') ?? null });
          return;
        }
        this.#reply(runner, req.id, this.#put(space, req.key, Buffer.from(req.value, 'base64')) ?? { ok: true });
        return;
      }
      case 'lock': {
        const lock = space.locks.get(req.name);
        if (lock) {
          lock.waiters.push({ runner, id: req.id });
          return;
        }
        if (space.values.size + space.locks.size >= this.maxKeys) {
          this.#reply(
            runner,
            req.id,
            this.#limit(
              `the node's shared store of this computation holds at most ${this.maxKeys} keys and lock names (--shared-store-keys)`,
            ),
          );
          return;
        }
        const token = ++this.#tokens;
        space.locks.set(req.name, { holder: runner, token, waiters: [] });
        this.#reply(runner, req.id, { ok: true, token });
        return;
      }
      case 'unlock': {
        const lock = space.locks.get(req.name);
        if (lock && lock.holder === runner && lock.token === req.token) this.#handOn(space, req.name, lock);
        this.#reply(runner, req.id, { ok: true });
        return;
      }
    }
  }

  /** The lock goes to its next waiter still alive, or is gone. */
  #handOn(space: Space, name: string, lock: Lock): void {
    for (let w = lock.waiters.shift(); w; w = lock.waiters.shift()) {
      if (w.runner.exited) continue;
      lock.holder = w.runner;
      lock.token = ++this.#tokens;
      this.#reply(w.runner, w.id, { ok: true, token: lock.token });
      return;
    }
    space.locks.delete(name);
  }

  #runnerGone(runner: Runner): void {
    for (const space of this.#spaces.values()) {
      for (const [name, lock] of [...space.locks]) {
        lock.waiters = lock.waiters.filter((w) => w.runner !== runner);
        if (lock.holder === runner) {
          this.#log.info({ pid: runner.pid, lock: name }, 'a runner died holding a shared store lock: released');
          this.#handOn(space, name, lock);
        }
      }
    }
  }
}
