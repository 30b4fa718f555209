/**
 * `cluster.wait()` for JobCluster and SharedJobCluster: waiters for the moment no job is
 * pending and the status callbacks of every ended job have run.
 */
interface Waiter {
  done: () => void;
  fail: ((err: Error) => void) | null;
}

export class IdleWaiters {
  #waiters: Waiter[] = [];

  /**
   * Resolves true once the cluster is idle (at once when `idle`, else at the next `wake()`)
   * and `drained()` resolved, or false if `timeout` seconds pass first. A `rejectable` waiter
   * is rejected by `fail()`.
   */
  wait(idle: boolean, drained: () => Promise<void>, timeout?: number, rejectable = true): Promise<boolean> {
    if (idle) return drained().then(() => true);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | null = null;
      const waiter: Waiter = {
        done: () => {
          if (timer) clearTimeout(timer);
          void drained().then(() => resolve(true));
        },
        fail: rejectable
          ? (err) => {
              if (timer) clearTimeout(timer);
              reject(err);
            }
          : null,
      };
      this.#waiters.push(waiter);
      if (timeout !== undefined && timeout !== null) {
        timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve(false);
        }, Math.max(0, timeout) * 1000);
      }
    });
  }

  /** The last pending job ended: wakes every waiter. */
  wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.done();
  }

  /** Rejects every rejectable waiter with `err` (the others go on waiting). */
  fail(err: Error): void {
    const failing = this.#waiters.filter((w) => w.fail !== null);
    this.#waiters = this.#waiters.filter((w) => w.fail === null);
    for (const w of failing) w.fail!(err);
  }
}
