/** The client library: clusters, jobs, nodes and node specs. */
export {
  JobCluster,
  formatBytes,
  type JobClusterOptions,
  type ClusterStatusEvent,
  type ClusterStatus,
  type SubmitOptions,
} from './job-cluster.js';
export { DispyJob, DispyJobError } from './dispy-job.js';
export { recoverJobs, type RecoverJobsOptions } from './recover-jobs.js';
export { DispyNode } from './dispy-node.js';
export { NodeAllocate, type NodeSpec, type NodeSpecObject, type NodeResolve } from './node-allocate.js';
export type { NodeLookup } from './node-resolver.js';
export {
  JobStatus,
  NodeStatus,
  statusName,
  isFinal,
  type DispyStatus,
  type JobStatusCode,
  type NodeStatusCode,
  type FinalJobStatus,
  type StatusName,
  type FinalStatusName,
} from './status.js';
export type { ModuleComputation } from './computation.js';
export type { ProgramComputation } from './interpreter.js';
export { SharedJobCluster, type SharedJobClusterOptions } from './shared-job-cluster.js';
export type { StatusEvent } from './status-events.js';
export type { DispatchPolicy } from './dispatcher.js';
export { slurmNodes, SlurmNodes, type SlurmNodesOptions, type SlurmNode, type SlurmHostFrom } from './slurm-nodes.js';
