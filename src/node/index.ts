/** The node daemon. */
export { NodeDaemon, resolveCpus, type NodeDaemonOptions, type NodeDaemonStatus } from './node-daemon.js';
export type { UndeliveredLimits } from './undelivered-store.js';
