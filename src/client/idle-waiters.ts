/**
 * `cluster.wait()` for JobCluster and SharedJobCluster: waiters for the moment no job is
 * pending and the status callbacks of every ended job have run.
 */
export class IdleWaiters {
  #waiters: (() => void)[] = [];

  /**
   * Resolves true once the cluster is idle (at once when `idle`, else at the next `wake()`)
   * and `drained()` resolved, or false if `timeout` seconds pass first.
   */
  wait(idle: boolean, drained: () => Promise<void>, timeout?: number): Promise<boolean> {
    if (idle) return drained().then(() => true);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const done = (): void => {
        if (timer) clearTimeout(timer);
        void drained().then(() => resolve(true));
      };
      this.#waiters.push(done);
      if (timeout !== undefined && timeout !== null) {
        timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== done);
          resolve(false);
        }, Math.max(0, timeout) * 1000);
      }
    });
  }

  /** The last pending job ended: wakes every waiter. */
  wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
