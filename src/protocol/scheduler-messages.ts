/**
 * Messages between a SharedJobCluster and `dispyts scheduler` (port 9702), as zod schemas. They
 * travel on the same authenticated Channel as node traffic (the scheduler is the server, role
 * `scheduler`, authenticated with the cluster secret). Toward nodes the scheduler is an ordinary
 * client and speaks messages.ts.
 *
 * Flow: `compute` registers a computation (the scheduler assigns its computeId and unique
 * cluster name); files it depends on follow with the node protocol's `file-begin`/`file-chunk`
 * (same shapes, computeId = the assigned one); `schedule` starts it: the reply comes once the
 * scheduler admitted it (an exclusive computation waits until no other one is active). Jobs
 * carry a client-chosen uid and their arguments already encoded by the client's payload codec;
 * results come back encoded, untouched by the scheduler.
 */
import { z } from 'zod';
import {
  availInfoSchema,
  bin,
  computationSchema,
  dependSchema,
  errorInfoSchema,
  fileBeginSchema,
  fileChunkSchema,
  jobFileAckSchema,
  jobFileSchema,
  relativeName,
} from './messages.js';

const MAX_TEXT = 1024 * 1024;
const MAX_SOURCE = 16 * 1024 * 1024;
const uid = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const rid = uid;
const computeId = z.string().min(1).max(64);
const finite = z.number().finite();
const shortText = z.string().max(1024);
/** A node as the client names it: host, IP, wildcard, or { host, port, cpus }. */
const nodeSpec = z.union([
  shortText,
  z.object({ host: shortText, port: z.number().int().min(0).max(65535).optional(), cpus: z.number().int().optional() }),
]);

// ---- client -> scheduler ----

export const computeSchema = z.object({
  t: z.literal('compute'),
  rid,
  /** The cluster's name as the client gave it (the scheduler makes it unique). */
  name: z.string().max(1024),
  computation: computationSchema,
  setup: z.string().min(1).max(MAX_SOURCE).nullable().default(null),
  setupArgs: bin.nullable().default(null),
  cleanup: z.string().min(1).max(MAX_SOURCE).nullable().default(null),
  /** `nodeSetup` source: run once per node before the runners' setup (see the node's setup message). */
  nodeSetup: z.string().min(1).max(MAX_SOURCE).nullable().optional(),
  cleanupFiles: z.boolean().default(true),
  destPath: relativeName.nullable().default(null),
  /** Nodes this computation may use (a subset of the scheduler's); empty = all of them. */
  nodes: z.array(nodeSpec).max(10_000).default([]),
  reentrant: z.boolean().default(false),
  /** Run alone: admitted only when no other computation is active, and none is while it runs. */
  exclusive: z.boolean().default(false),
  /** Default seconds a job may run (0 = no limit). */
  maxRuntime: z.number().nonnegative().max(1e9).default(0),
  /** Names of the files that will follow (file-begin) before `schedule`. */
  files: z.array(relativeName).max(10_000).default([]),
  /** `'job'`: each job in a fresh runner process on its node. */
  isolate: z.literal('job').nullable().default(null),
  /**
   * Seconds the client tries to get back after its connection broke (its `reconnectTimeout`):
   * the scheduler keeps the computation that long at most (never beyond its zombie interval),
   * starting none of its jobs meanwhile. Absent: the zombie interval.
   */
  reconnectTimeout: z.number().nonnegative().max(1e9).optional(),
});
export const scheduleSchema = z.object({ t: z.literal('schedule'), rid, computeId });
export const sjobSchema = z.object({
  t: z.literal('job'),
  /** Chosen by the client, unique within its connection. */
  uid,
  computeId,
  args: bin,
  /** The job's id, shown by the scheduler's HTTP server (string or number ids only). */
  tag: z.union([z.string().max(1024), finite]).optional(),
  /** Run only on this node (IP address). */
  node: shortText.optional(),
  maxRuntime: z.number().nonnegative().max(1e9).optional(),
  /** Per-job files sent before with file-begin/file-chunk naming this job: they go to its node with it. */
  files: z.array(relativeName).max(1000).optional(),
  /** The job's own functions and classes (dispy's `dispy_job_depends`): they go to its node with it. */
  depends: z.array(dependSchema).max(10_000).optional(),
});
export const scancelSchema = z.object({
  t: z.literal('cancel'),
  uid,
  /** Seconds a running job gets to return after its abort signal before it is killed. */
  grace: z.number().nonnegative().max(86_400).optional(),
});
export const scloseSchema = z.object({ t: z.literal('close'), rid, computeId, terminate: z.boolean() });
/** Node management on behalf of one computation (the JobCluster method of the same name). */
export const nodeOpSchema = z.object({
  t: z.literal('node-op'),
  rid,
  computeId,
  op: z.enum(['allocate', 'deallocate', 'close', 'resetup', 'set-cpus', 'node-jobs', 'send-file', 'discover']),
  /** Host, IP, name or wildcard (allocate); absent for `discover`. */
  node: nodeSpec.optional(),
  cpus: z.number().int().optional(),
  terminatePending: z.boolean().optional(),
  /** send-file: the name of a file already sent with file-begin/file-chunk. */
  file: relativeName.optional(),
});
export const sbeatSchema = z.object({ t: z.literal('beat'), every: z.number().positive().max(1000) });
/**
 * After a broken connection, on a new one: takes back computation `computeId` (with the key its
 * `compute` reply gave) if the scheduler still runs it. `uids` are the jobs the client sent and
 * has not seen end: the reply lists those the scheduler never got (the client sends them again);
 * results of jobs that ended meanwhile follow as `job-end` messages.
 */
export const sresumeSchema = z.object({
  t: z.literal('resume'),
  rid,
  computeId,
  key: z.string().min(16).max(128),
  uids: z.array(uid).max(1 << 20),
});

export const toSchedulerSchema = z.discriminatedUnion('t', [
  computeSchema,
  scheduleSchema,
  sjobSchema,
  scancelSchema,
  scloseSchema,
  nodeOpSchema,
  sbeatSchema,
  sresumeSchema,
  fileBeginSchema,
  fileChunkSchema,
  jobFileAckSchema,
]);
export type ToScheduler = z.infer<typeof toSchedulerSchema>;
export type ToSchedulerInput = z.input<typeof toSchedulerSchema>;

// ---- scheduler -> client ----

/** The scheduler's hello after authentication (like a node's `info`). */
export const schedulerInfoSchema = z.object({
  t: z.literal('sched-info'),
  schedulerId: z.string().max(64),
  name: z.string().max(256),
  policy: z.enum(['fsfs', 'fair', 'early']),
  cooperative: z.boolean(),
  /** Seconds between the scheduler's heartbeats to clients. */
  pulseInterval: z.number().positive().max(1000),
  /** Seconds a computation outlives its client's connection (a client may resume it meanwhile). */
  zombieInterval: z.number().positive().optional(),
  /** Largest message the scheduler accepts or sends, in bytes (its --max-message-size). Absent: 64 MiB. */
  maxMessageSize: z.number().int().positive().optional(),
});

/** A node as a cluster sees it (the fields of DispyNode). */
export const nodeViewSchema = z.object({
  ipAddr: shortText,
  port: z.number().int(),
  name: shortText,
  cpus: z.number().int().nonnegative(),
  availCpus: z.number().int().nonnegative(),
  machineCpus: z.number().int().nonnegative(),
  platform: shortText,
  busy: z.number().int().nonnegative(),
  jobsDone: z.number().int().nonnegative(),
  jobTime: finite,
  cpuUsed: finite,
  tx: finite,
  rx: finite,
  availInfo: availInfoSchema.nullable(),
  updateTime: finite.nullable(),
});
export type NodeView = z.infer<typeof nodeViewSchema>;

/** A job changed status without ending (Running; Created again when re-queued). */
export const jobStatusSchema = z.object({
  t: z.literal('job-status'),
  uid,
  status: z.number().int(),
  ip: shortText.nullable(),
  startTime: finite.nullable(),
});
export const sprovisionalSchema = z.object({ t: z.literal('provisional'), uid, result: bin, ip: shortText.nullable() });
/** A job reached its final status (Finished, Terminated, Cancelled or Abandoned). */
export const jobEndSchema = z.object({
  t: z.literal('job-end'),
  uid,
  status: z.number().int(),
  result: bin.nullable(),
  exception: z
    .string()
    .max(MAX_TEXT * 4)
    .nullable(),
  /** A DISPY_ERR_* code when dispyts itself ended the job. */
  code: shortText.nullable(),
  stdout: z.string().max(MAX_TEXT * 16),
  stderr: z.string().max(MAX_TEXT * 16),
  ip: shortText.nullable(),
  startTime: finite.nullable(),
  endTime: finite.nullable(),
});
/** A node event of a computation (Initialized, Closed, AvailInfo, CPU changes...). */
export const nodeStatusSchema = z.object({ t: z.literal('node-status'), computeId, status: z.number().int(), node: nodeViewSchema });
/** The scheduler closed a computation on its own (its nodes all failed setup, shutdown...). */
export const sclosedSchema = z.object({ t: z.literal('closed'), computeId, reason: z.string().max(MAX_TEXT) });
export const spulseSchema = z.object({ t: z.literal('pulse') });
export const sreplySchema = z.object({
  t: z.literal('reply'),
  rid,
  ok: z.boolean(),
  /** compute: the assigned id and unique name, and the key to resume it after a broken connection. */
  computeId: computeId.optional(),
  name: z.string().max(1024).optional(),
  resumeKey: z.string().max(128).optional(),
  /** resume: the jobs listed that the scheduler never got. */
  unknown: z
    .array(uid)
    .max(1 << 20)
    .optional(),
  /** File transfers: bytes the scheduler has. */
  offset: z.number().int().nonnegative().optional(),
  /** node-op: the method's return value (0 / -1, cpus, or uids for node-jobs). */
  value: z.union([finite, z.array(uid).max(1 << 20)]).optional(),
  error: errorInfoSchema.optional(),
});

export const fromSchedulerSchema = z.discriminatedUnion('t', [
  schedulerInfoSchema,
  jobStatusSchema,
  sprovisionalSchema,
  jobEndSchema,
  nodeStatusSchema,
  sclosedSchema,
  spulseSchema,
  sreplySchema,
  jobFileSchema,
]);
export type FromScheduler = z.infer<typeof fromSchedulerSchema>;
