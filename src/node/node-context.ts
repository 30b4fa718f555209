/**
 * What the parts of a node daemon share once it started (built by node-daemon.ts): its identity
 * and options, its state (stopping, draining, the client it serves) and its parts.
 */
import type { Logger } from 'pino';
import type { FileStore } from '../host/file-store.js';
import type { Channel } from '../protocol/channel.js';
import type { ClientMessage, NodeMessage } from '../protocol/messages.js';
import type { Computations } from './computations.js';
import type { NodeExtras } from './node-extras.js';
import type { FileRelay } from './send-file-relay.js';
import type { NodeScheduler } from './node-scheduler.js';
import type { NodeDaemonOptions } from './node-options.js';
import type { ResultOutbox } from './result-outbox.js';
import type { RunnerPool } from './runner-pool.js';
import type { ServedClient } from './served-client.js';
import type { UndeliveredStore } from './undelivered-store.js';

export type ClientChannel = Channel<ClientMessage, NodeMessage>;

export interface NodeContext {
  readonly host: string;
  readonly name: string;
  readonly cpus: number;
  readonly log: Logger;
  readonly opts: NodeDaemonOptions;
  readonly stopping: boolean;
  readonly draining: boolean;
  /** The client program the node serves now. */
  owner: ServedClient | null;
  /** Open authenticated connections, of any client. */
  readonly channels: ReadonlySet<ClientChannel>;
  readonly pool: RunnerPool;
  readonly files: FileStore;
  readonly undelivered: UndeliveredStore;
  readonly scheduler: NodeScheduler;
  readonly outbox: ResultOutbox;
  readonly computations: Computations;
  /** Per-node setup, shared stores, polite cancels (node-extras.ts). */
  readonly extras: NodeExtras;
  /** Files jobs send home (dispySendFile), on their way to the client. */
  readonly fileRelay: FileRelay;
  /** Heartbeats go out at the shortest interval the served computations ask for. */
  armPulse(): void;
  /** The served client is done with the node: the next one may come (or the daemon exits). */
  release(owner: ServedClient): void;
}
