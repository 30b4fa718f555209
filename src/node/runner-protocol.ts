/**
 * The IPC protocol between the node daemon and its job runner processes. A runner keeps a small
 * queue of jobs it was handed. Before it calls a job's code it has sent that job's Started and
 * the Done of every job before it (one message may carry both), so the daemon always knows which
 * job is running. Messages use Node's JSON serialization (cheaper per message than 'advanced'
 * here), so payload bytes travel as base64 text. Kill requests do not travel here: they go to
 * the runner's kill arbiter thread over a pipe of their own (runner-arbiter.ts), which answers
 * them while the job's code keeps the main thread busy.
 */
import type { DispyErrorCode } from '../errors.js';
import type { Computation, Depend } from '../protocol/messages.js';

/** Seconds between SIGTERM and SIGKILL when a job is terminated. */
export const TERMINATE_GRACE = 2;

/** The runner's file descriptor of its kill pipe (stdio index 4 of the fork). */
export const KILL_PIPE_FD = 4;

export enum RunnerCommand {
  /** Evaluate a computation so later jobs can run it. */
  Load = 1,
  /** Append jobs to the runner's queue. */
  Run = 2,
  /** Forget a computation. */
  Unload = 3,
  /** Remove a job from the runner's queue if it has not started. */
  Drop = 4,
  /** Run the cleanup of every computation still loaded, then exit (the runner is retired). */
  Retire = 5,
  /** The client's answer to a part of a file a job sends home (send-file.ts). */
  FileAck = 6,
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
  /** An error thrown asynchronously that belongs to no running job: logged by the daemon. */
  Stray = 9,
  /** A part of a file the running job sends home with dispySendFile (send-file.ts). */
  SendFile = 10,
}

/** A part of a file a job sends home: without `data` its beginning, with it a chunk at `offset`. */
export interface RunnerSendFile {
  ev: RunnerEvent.SendFile;
  uid: number;
  /** Numbered by the runner. */
  fid: number;
  name: string;
  size: number;
  mtime: number;
  offset?: number;
  /** base64 of the chunk. */
  data?: string;
}

/** The answer to a RunnerSendFile: the bytes the client has, or why not. */
export interface RunnerFileAck {
  cmd: RunnerCommand.FileAck;
  fid: number;
  offset: number;
  error: { code: string; message: string } | null;
}

export interface RunnerJob {
  uid: number;
  computeId: string;
  /** base64 of the encoded arguments. */
  args: string;
  /** The job's own functions and classes (job-depends.ts). */
  depends?: Depend[];
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
      /** base64 of the encoded value the computation's nodeSetup returned on this node, if it has one. */
      nodeValue?: string | null;
    }
  | { cmd: RunnerCommand.Run; jobs: RunnerJob[] }
  | { cmd: RunnerCommand.Unload; computeId: string }
  | { cmd: RunnerCommand.Drop; uid: number }
  | { cmd: RunnerCommand.Retire }
  | RunnerFileAck;

export interface RunnerDone {
  ev: RunnerEvent.Done;
  uid: number;
  ok: boolean;
  /** base64 of the encoded result. */
  result: string | null;
  exception: string | null;
  /** DISPY_ERR_* code when dispyts itself ended the job. */
  code: DispyErrorCode | null;
  stdout: string;
  stderr: string;
  cpuTime: number;
  endTime: number;
}

export type RunnerItem =
  | { ev: RunnerEvent.Loaded; computeId: string; error: { code: DispyErrorCode; message: string } | null }
  | { ev: RunnerEvent.Started; uid: number; startTime: number }
  | RunnerDone
  | { ev: RunnerEvent.Provisional; uid: number; result: string }
  | { ev: RunnerEvent.Dropped; uid: number }
  | RunnerSendFile
  | { ev: RunnerEvent.Unloaded; computeId: string; error: string | null }
  | {
      ev: RunnerEvent.Stray;
      /** The computation and job whose code left it behind, when known. */
      computeId: string | null;
      uid: number | null;
      error: string;
    };

export type FromRunner = { ev: RunnerEvent.Ready; pid: number } | { ev: RunnerEvent.Batch; items: RunnerItem[] };
