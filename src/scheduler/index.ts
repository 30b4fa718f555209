/** `dispyts scheduler`: shares nodes between client programs (SharedJobCluster). */
export { SchedulerDaemon, CLIENT_PULSE_INTERVAL, type SchedulerDaemonOptions } from './scheduler-daemon.js';
export { SchedulerMonitor } from './scheduler-monitor.js';
export { parseSchedulerNodes, scopeNodes, type RequestedNode } from './node-scope.js';
