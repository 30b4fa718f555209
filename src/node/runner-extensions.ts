/**
 * The IPC messages between the daemon and its runners for per-node setup, the per-node shared
 * store and polite cancels. They travel on the same channel as runner-protocol.ts's (JSON
 * serialization, payload bytes as base64) with numbers of their own, so neither side's main
 * switch has to know them: each side hands what it does not know to these modules
 * (node-setup-once.ts, node-shared-store.ts, polite-cancel.ts on the daemon's side,
 * runner-extras.ts in the runner).
 */
import type { Computation } from '../protocol/messages.js';
import type { DispyErrorCode } from '../errors.js';

export enum ExtCommand {
  /** Run a computation's `nodeSetup` here (once per node) and answer with its encoded value. */
  NodeSetup = 101,
  /** The answer to a shared store request. */
  StoreReply = 102,
  /** Fire the running job's abort signal, if job `uid` is still the one running. */
  Abort = 103,
}

export enum ExtEvent {
  /** `nodeSetup` returned (its encoded value) or failed. */
  NodeSetupDone = 101,
  /** A shared store operation of a job, setup or cleanup. */
  StoreRequest = 102,
}

/** Operations of the shared store; values are the payload codec's bytes, opaque to the daemon. */
export type StoreOp =
  | { op: 'get'; key: string }
  | { op: 'set'; key: string; value: string }
  | { op: 'delete'; key: string }
  /** Sets `value` if the stored bytes equal `expected` (null: the key is absent). */
  | { op: 'cas'; key: string; expected: string | null; value: string }
  | { op: 'lock'; name: string }
  | { op: 'unlock'; name: string; token: number };

export type ExtToRunner =
  | {
      cmd: ExtCommand.NodeSetup;
      computeId: string;
      computation: Computation;
      dir: string;
      nodeName: string;
      nodeIpAddr: string;
      nodeSetup: string;
      /** base64 of the encoded setup arguments. */
      setupArgs: string | null;
    }
  | {
      cmd: ExtCommand.StoreReply;
      id: number;
      /** The value (base64) for get, the stored value after a failed cas; a lock's token. */
      value?: string | null;
      ok?: boolean;
      token?: number;
      error?: { code: DispyErrorCode; message: string };
    }
  | { cmd: ExtCommand.Abort; uid: number; reason: string };

export type ExtItem =
  | {
      ev: ExtEvent.NodeSetupDone;
      computeId: string;
      /** base64 of the encoded return value. */
      value: string | null;
      error: { code: DispyErrorCode; message: string } | null;
    }
  | ({ ev: ExtEvent.StoreRequest; id: number; computeId: string } & StoreOp);

/** Whether a message from the daemon is one of these. */
export function isExtCommand(msg: { cmd: number }): msg is ExtToRunner {
  return msg.cmd >= 100;
}
