/** The node daemon. */
export { NodeDaemon, resolveCpus, type NodeDaemonOptions } from './node-daemon.js';
