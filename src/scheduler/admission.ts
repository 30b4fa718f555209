/**
 * Admission of computations (dispy's SCHEDULE): in order of request, a computation starts when
 * no exclusive one is active; an exclusive one starts only when no other is active, and none
 * starts while it runs. Requests behind a waiting exclusive computation wait too, so it is not
 * starved by a stream of ordinary ones.
 */
import type { DispyError } from '../errors.js';

/** What admission needs to know of a computation. */
export interface Admittable {
  readonly exclusive: boolean;
  readonly name: string;
}

interface Waiting<T extends Admittable> {
  comp: T;
  resolve: () => void;
  reject: (err: DispyError) => void;
}

export class Admission<T extends Admittable> {
  readonly #active = new Set<T>();
  #queue: Waiting<T>[] = [];

  /** Computations admitted and not released. */
  get active(): ReadonlySet<T> {
    return this.#active;
  }

  /** Computations waiting for admission, in order. */
  get waiting(): T[] {
    return this.#queue.map((w) => w.comp);
  }

  /** Resolves once `comp` may run; rejects if it is withdrawn first. */
  request(comp: T): Promise<void> {
    if (this.#active.has(comp)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ comp, resolve, reject });
      this.#pump();
    });
  }

  /** `comp` gives up waiting (closed before it was admitted): its request rejects with `err`. */
  withdraw(comp: T, err: DispyError): void {
    const i = this.#queue.findIndex((w) => w.comp === comp);
    if (i < 0) return;
    const [w] = this.#queue.splice(i, 1);
    w!.reject(err);
    this.#pump();
  }

  /** `comp` stopped running: those waiting for it may start. */
  release(comp: T): void {
    if (this.#active.delete(comp)) this.#pump();
  }

  /** Rejects every waiting request (shutdown). */
  rejectAll(err: DispyError): void {
    const q = this.#queue;
    this.#queue = [];
    for (const w of q) w.reject(err);
  }

  #admissible(comp: T): boolean {
    if (comp.exclusive) return this.#active.size === 0;
    for (const a of this.#active) if (a.exclusive) return false;
    return true;
  }

  #pump(): void {
    while (this.#queue.length && this.#admissible(this.#queue[0]!.comp)) {
      const w = this.#queue.shift()!;
      this.#active.add(w.comp);
      w.resolve();
    }
  }
}
