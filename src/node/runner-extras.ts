/**
 * What a job runner does beyond running jobs, kept out of runner-main.ts: it runs a
 * computation's `nodeSetup` when the daemon picks it to (once per node, before any runner
 * loads the computation), hands that value to `setup`, serves `dispyNodeShared`
 * (runner-shared-store.ts) and fires a job's abort signal on a polite cancel
 * (runner-abort.ts). runner-main.ts passes the messages it does not know to `onExtCommand`.
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import { DispyError, type DispyErrorCode } from '../errors.js';
import { DEFAULT_MAX_FRAME } from '../protocol/constants.js';
import { PayloadCodec } from '../protocol/payload.js';
import { loadComputation } from './computation-loader.js';
import { formatException } from './function-loader.js';
import { abortJob } from './runner-abort.js';
import { ExtCommand, ExtEvent, type ExtItem, type ExtToRunner } from './runner-extensions.js';
import { installSharedStore, onStoreReply } from './runner-shared-store.js';

/** The node's --max-message-size: a larger nodeSetup value is refused here. */
const MAX_MESSAGE = Number(process.env.DISPYTS_MAX_MESSAGE_SIZE) || DEFAULT_MAX_FRAME;

export interface RunnerHooks {
  report: (item: ExtItem) => void;
  context: AsyncLocalStorage<{ computeId: string; uid: number | null }>;
  /** Enters a computation's directory unless a job (of another computation) is running. */
  enterDir: (dir: string, computeId: string) => void;
  provisional: (value: unknown) => void;
}

let hooks: RunnerHooks | null = null;

/** Called once by runner-main.ts. */
export function installRunnerExtras(h: RunnerHooks): void {
  hooks = h;
  installSharedStore(h);
}

/** Handles a daemon message that runner-main.ts does not know. */
export function onExtCommand(msg: ExtToRunner): void {
  switch (msg.cmd) {
    case ExtCommand.NodeSetup:
      void nodeSetup(msg);
      return;
    case ExtCommand.StoreReply:
      onStoreReply(msg);
      return;
    case ExtCommand.Abort:
      abortJob(msg.uid, msg.reason);
      return;
  }
}

/**
 * `setup`'s arguments: with a per-node setup, its value comes first, then the setupArgs.
 * `nodeValue` is base64 of the encoded value (undefined/null: no per-node setup).
 */
export function setupArguments(nodeValue: string | null | undefined, codec: PayloadCodec, args: unknown[]): unknown[] {
  if (nodeValue == null) return args;
  return [codec.decode(Buffer.from(nodeValue, 'base64')), ...args];
}

async function nodeSetup(msg: Extract<ExtToRunner, { cmd: ExtCommand.NodeSetup }>): Promise<void> {
  const h = hooks!;
  const reply = (value: string | null, error: { code: DispyErrorCode; message: string } | null): void =>
    h.report({ ev: ExtEvent.NodeSetupDone, computeId: msg.computeId, value, error });
  const g = globalThis as Record<string, unknown>;
  g.dispyNodeName = msg.nodeName;
  g.dispyNodeIpAddr = msg.nodeIpAddr;
  h.enterDir(msg.dir, msg.computeId);
  const context = { computeId: msg.computeId, uid: null };
  try {
    // Evaluated as setup is (with the computation's depends), but as the node's setup.
    const loaded = await h.context.run(context, () =>
      loadComputation(msg.computation, { dir: msg.dir, provisional: h.provisional }, { setup: msg.nodeSetup, cleanup: null }),
    );
    const codec = new PayloadCodec(loaded.classes);
    const decoded = msg.setupArgs ? codec.decode(Buffer.from(msg.setupArgs, 'base64')) : [];
    const args = Array.isArray(decoded) ? decoded : [decoded];
    const fn = loaded.setup!;
    const value = await h.context.run(context, () => fn(...args));
    let bytes: Buffer;
    try {
      bytes = codec.encode(value, "nodeSetup's return value");
    } catch (err) {
      reply(null, { code: 'DISPY_ERR_SETUP', message: `nodeSetup failed: its return value cannot travel: ${(err as Error).message}` });
      return;
    }
    if (bytes.length > MAX_MESSAGE) {
      const e = new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `nodeSetup's return value encodes to ${bytes.length} bytes, more than the node's maximum message size of ${MAX_MESSAGE} bytes (--max-message-size)`,
      );
      reply(null, { code: e.code, message: `nodeSetup failed: ${e.message}` });
      return;
    }
    reply(bytes.toString('base64'), null);
  } catch (err) {
    reply(null, { code: 'DISPY_ERR_SETUP', message: `nodeSetup failed: ${formatException(err)}` });
  }
}
