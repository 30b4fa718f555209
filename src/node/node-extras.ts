/**
 * The daemon's per-node setup, per-node shared store and polite cancels in one place, so the
 * daemon only holds one object and calls it from a few hooks: it routes the runners' messages
 * of runner-extensions.ts to node-setup-once.ts and node-shared-store.ts, and keeps the grace
 * periods of polite cancels (polite-cancel.ts).
 */
import type { Logger } from 'pino';
import { NodeSetupOnce } from './node-setup-once.js';
import { NodeSharedStore, type SharedStoreLimits } from './node-shared-store.js';
import { PoliteCancels } from './polite-cancel.js';
import { ExtEvent, type ExtItem } from './runner-extensions.js';
import type { RunnerPool } from './runner-pool.js';

export class NodeExtras {
  readonly store: NodeSharedStore;
  readonly nodeSetup: NodeSetupOnce;
  readonly polite = new PoliteCancels();

  constructor(pool: RunnerPool, log: Logger, limits: SharedStoreLimits = {}) {
    this.store = new NodeSharedStore(log, limits);
    this.nodeSetup = new NodeSetupOnce(pool);
    pool.onExtension = (runner, item: ExtItem) => {
      if (item.ev === ExtEvent.StoreRequest) this.store.onRequest(runner, item);
      else if (item.ev === ExtEvent.NodeSetupDone) this.nodeSetup.onDone(runner, item);
    };
  }
}
