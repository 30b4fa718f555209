/**
 * A job runner's watchdog: a worker thread, so it runs while the runner's main thread is busy
 * in a job that never yields (a CPU loop cannot notice that its daemon died). It checks the
 * runner's parent every `intervalMs`; once the daemon is gone (the runner was re-parented),
 * it kills every process carrying the runner's tag (host/process-tag.ts), then the runner's process
 * group with the runner in it.
 */
import { workerData } from 'node:worker_threads';
import { currentParentPid, killTagged } from '../host/process-tag.js';

export interface WatchdogData {
  /** The daemon's pid: the runner's parent while the daemon lives. */
  ppid: number;
  /** The runner's tag. */
  tag: string;
  intervalMs: number;
}

const { ppid, tag, intervalMs } = workerData as WatchdogData;

setInterval(() => {
  if (currentParentPid() === ppid) return;
  killTagged(tag, 'SIGKILL', { groups: [process.pid], ownGroup: true });
  process.kill(process.pid, 'SIGKILL');
}, intervalMs);
