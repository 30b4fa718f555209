/**
 * dispyts: distributed computing for Node.js. Run `dispyts node` on each machine, create a
 * JobCluster in your program, submit jobs, and watch the cluster in a browser.
 */
export * from './client/index.js';
export { NodeDaemon, type NodeDaemonOptions, type NodeDaemonStatus, type UndeliveredLimits } from './node/index.js';
export { SchedulerDaemon, type SchedulerDaemonOptions } from './scheduler/index.js';
export * from './httpd/index.js';
export { DispyError, ERROR_CODES, type DispyErrorCode } from './errors.js';
export { PROTOCOL_VERSION, NODE_PORT, SCHEDULER_PORT, HTTP_PORT, DISCOVERY_PORT } from './protocol/constants.js';
export type { AvailInfo } from './protocol/messages.js';
export type { DiscoveryMode } from './protocol/discovery.js';
