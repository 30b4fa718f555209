/**
 * Per-node setup (`nodeSetup`), the daemon's side: a computation's `nodeSetup(...setupArgs)`
 * runs once on this node, in one runner of its program (never in the daemon), before any runner
 * loads the computation; its encoded return value then goes with the computation to every
 * runner that loads it (replacements and `isolate: 'job'` processes included), whose `setup`
 * gets it as its first argument. Run again on each setup of the computation (`resetupNode`).
 * A failure (or the runner dying) fails the setup as a failing `setup` does.
 */
import type { Computation } from '../protocol/messages.js';
import type { DispyErrorCode } from '../errors.js';
import { ExtCommand, type ExtItem, type ExtEvent, type ExtToRunner } from './runner-extensions.js';
import type { Placement, Runner, RunnerPool } from './runner-pool.js';

type Done = Extract<ExtItem, { ev: ExtEvent.NodeSetupDone }>;
export type NodeSetupOutcome = { value: string | null; error: null } | { value: null; error: { code: DispyErrorCode; message: string } };

export interface NodeSetupSpec {
  computeId: string;
  placement: Placement;
  computation: Computation;
  dir: string;
  nodeSetup: string;
  /** base64 of the encoded setup arguments. */
  setupArgs: string | null;
  nodeName: string;
  nodeIpAddr: string;
}

export class NodeSetupOnce {
  readonly #pool: RunnerPool;
  /** Per runner, per computation: who waits for its nodeSetup's answer. */
  readonly #waiting = new WeakMap<Runner, Map<string, (d: Done) => void>>();

  constructor(pool: RunnerPool) {
    this.#pool = pool;
  }

  /** Runs the computation's nodeSetup in one runner of its program; resolves with its value. */
  async run(spec: NodeSetupSpec): Promise<NodeSetupOutcome> {
    const runner = this.#pool.claimFor(spec.placement, spec.computeId);
    const fail = (message: string): NodeSetupOutcome => ({ value: null, error: { code: 'DISPY_ERR_SETUP', message } });
    try {
      await runner.ready;
    } catch (err) {
      return fail(`nodeSetup failed: its runner did not start (${(err as Error).message})`);
    }
    let waiters = this.#waiting.get(runner);
    if (!waiters) {
      waiters = new Map();
      this.#waiting.set(runner, waiters);
    }
    const w = waiters;
    const answer = new Promise<NodeSetupOutcome>((resolve) => {
      w.set(spec.computeId, (d) => resolve(d.error ? { value: null, error: d.error } : { value: d.value, error: null }));
      void runner.gone.then(() => resolve(fail(`nodeSetup failed: its runner process (pid ${runner.pid}) exited before it returned`)));
    });
    if (runner.exited || !runner.child.connected) return fail(`nodeSetup failed: its runner process (pid ${runner.pid}) is gone`);
    runner.child.send({
      cmd: ExtCommand.NodeSetup,
      computeId: spec.computeId,
      computation: spec.computation,
      dir: spec.dir,
      nodeName: spec.nodeName,
      nodeIpAddr: spec.nodeIpAddr,
      nodeSetup: spec.nodeSetup,
      setupArgs: spec.setupArgs,
    } satisfies ExtToRunner);
    const outcome = await answer;
    w.delete(spec.computeId);
    return outcome;
  }

  /** A runner's answer. */
  onDone(runner: Runner, d: Done): void {
    this.#waiting.get(runner)?.get(d.computeId)?.(d);
  }
}
