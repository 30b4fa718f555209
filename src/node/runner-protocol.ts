/**
 * The IPC protocol between the node daemon and its job runner processes. A runner keeps a small
 * queue of jobs it was handed and reports what happens in batches, so a burst of short jobs
 * costs a few wakeups rather than two per job. Messages use Node's JSON serialization (cheaper per
 * message than 'advanced' here), so payload bytes travel as base64 text.
 */
import type { Computation } from '../protocol/messages.js';

export enum RunnerCommand {
  /** Evaluate a computation so later jobs can run it. */
  Load = 1,
  /** Append jobs to the runner's queue. */
  Run = 2,
  /** Forget a computation. */
  Unload = 3,
  /** Remove a job from the runner's queue if it has not started. */
  Drop = 4,
}

export enum RunnerEvent {
  Ready = 1,
  Batch = 2,
  Loaded = 3,
  Started = 4,
  Done = 5,
  Provisional = 6,
  Dropped = 7,
  /** A computation was forgotten (after its cleanup ran). */
  Unloaded = 8,
}

export interface RunnerJob {
  uid: number;
  computeId: string;
  /** base64 of the encoded arguments. */
  args: string;
}

export type ToRunner =
  | {
      cmd: RunnerCommand.Load;
      computeId: string;
      computation: Computation;
      dir: string;
      nodeName: string;
      nodeIpAddr: string;
      /** Sources of the cluster's setup and cleanup, and base64 of the encoded setup arguments. */
      setup: string | null;
      cleanup: string | null;
      setupArgs: string | null;
    }
  | { cmd: RunnerCommand.Run; jobs: RunnerJob[] }
  | { cmd: RunnerCommand.Unload; computeId: string }
  | { cmd: RunnerCommand.Drop; uid: number };

export interface RunnerDone {
  ev: RunnerEvent.Done;
  uid: number;
  ok: boolean;
  /** base64 of the encoded result. */
  result: string | null;
  exception: string | null;
  /** DISPY_ERR_* code when dispyts itself ended the job. */
  code: string | null;
  stdout: string;
  stderr: string;
  cpuTime: number;
  endTime: number;
}

export type RunnerItem =
  | { ev: RunnerEvent.Loaded; computeId: string; error: { code: string; message: string } | null }
  | { ev: RunnerEvent.Started; uid: number; startTime: number }
  | RunnerDone
  | { ev: RunnerEvent.Provisional; uid: number; result: string }
  | { ev: RunnerEvent.Dropped; uid: number }
  | { ev: RunnerEvent.Unloaded; computeId: string; error: string | null };

export type FromRunner = { ev: RunnerEvent.Ready; pid: number } | { ev: RunnerEvent.Batch; items: RunnerItem[] };
