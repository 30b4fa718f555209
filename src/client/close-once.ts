/**
 * `cluster.close()` for JobCluster and SharedJobCluster: concurrent calls share one attempt;
 * an attempt that resolved false (timed out without `terminate`, the cluster left open) may be
 * made again by the next call.
 */
export class CloseOnce {
  #attempt: Promise<boolean> | null = null;

  /** The attempt in progress or done, or a new one started with `close`. */
  run(close: () => Promise<boolean>): Promise<boolean> {
    if (this.#attempt !== null) return this.#attempt;
    const attempt = close();
    this.#attempt = attempt;
    void attempt.then(
      (ok) => {
        if (!ok && this.#attempt === attempt) this.#attempt = null;
      },
      () => {
        if (this.#attempt === attempt) this.#attempt = null;
      },
    );
    return attempt;
  }
}
