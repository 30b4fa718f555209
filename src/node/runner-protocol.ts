/** The IPC protocol between the node daemon and its job runner processes. */
import type { Computation } from '../protocol/messages.js';

export enum RunnerCommand {
  /** Evaluate a computation so later jobs can run it. */
  Load = 1,
  /** Run one job of a loaded computation. */
  Run = 2,
  /** Forget a computation. */
  Unload = 3,
}

export enum RunnerEvent {
  Ready = 1,
  Loaded = 2,
  Done = 3,
  Provisional = 4,
}

export type ToRunner =
  | { cmd: RunnerCommand.Load; computeId: string; computation: Computation; dir: string; nodeName: string; nodeIpAddr: string }
  | { cmd: RunnerCommand.Run; uid: number; computeId: string; args: Uint8Array }
  | { cmd: RunnerCommand.Unload; computeId: string };

export type FromRunner =
  | { ev: RunnerEvent.Ready; pid: number }
  | { ev: RunnerEvent.Loaded; computeId: string; error: { code: string; message: string } | null }
  | {
      ev: RunnerEvent.Done;
      uid: number;
      ok: boolean;
      result: Uint8Array | null;
      exception: string | null;
      code: string | null;
      stdout: string;
      stderr: string;
      cpuTime: number;
    }
  | { ev: RunnerEvent.Provisional; uid: number; result: Uint8Array };
