/** How a daemon started from the CLI (`node`, `scheduler`) comes to an end. */

/** What the CLI needs of a daemon to stop it. */
export interface Stoppable {
  stop(reason?: string): Promise<void>;
}

/**
 * Stops `daemon` on SIGTERM or SIGINT, and when process `parent` exits (`--parent-pid`): a
 * daemon started by another program (the demo, a test) must not outlive it, even when that
 * program is killed without a chance to stop it.
 */
export function stopWith(daemon: Stoppable, parent: number | undefined): void {
  const onSignal = (sig: NodeJS.Signals): void => {
    void daemon.stop(sig);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  if (parent === undefined) return;
  const watch = setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      clearInterval(watch);
      void daemon.stop('its parent process exited');
    }
  }, 500);
  watch.unref();
}
