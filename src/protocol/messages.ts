/**
 * Every message that crosses the wire, as zod schemas. A frame whose body does not parse as one
 * of these closes its connection. User arguments and results are opaque `bin` fields: the
 * daemon forwards them without decoding.
 */
import { z } from 'zod';

const MAX_TEXT = 1024 * 1024;
const MAX_SOURCE = 16 * 1024 * 1024;

export const bin = z.custom<Uint8Array>((v) => v instanceof Uint8Array, { message: 'expected binary data' });
const uid = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const rid = uid;
const shortText = z.string().max(1024);
const computeId = z.string().min(1).max(64);
const identifier = z
  .string()
  .regex(/^[\p{L}_$][\p{L}\p{N}_$]*$/u, 'expected a JavaScript identifier')
  .max(256);
const finite = z.number().finite();

/** Resources a node reports: available CPU %, free memory bytes, free disk bytes, available swap %. */
export const availInfoSchema = z.object({ cpu: finite, memory: finite, disk: finite, swap: finite });
export type AvailInfo = z.infer<typeof availInfoSchema>;

export const errorInfoSchema = z.object({ code: shortText, message: z.string().max(MAX_TEXT) });

// ---- handshake (unauthenticated frames) ----

export const helloSchema = z.object({
  t: z.literal('hello'),
  v: z.number().int(),
  role: z.enum(['client', 'node', 'scheduler']),
  nonce: bin,
  proof: bin.optional(),
  /** Identifies the client process, so one process may hold several connections to a node. */
  clientId: z.string().max(64).optional(),
});
export const authSchema = z.object({ t: z.literal('auth'), proof: bin });
export const authOkSchema = z.object({ t: z.literal('auth-ok') });
export const handshakeErrorSchema = z.object({ t: z.literal('error'), error: errorInfoSchema });
export const handshakeSchema = z.discriminatedUnion('t', [helloSchema, authSchema, authOkSchema, handshakeErrorSchema]);
export type HandshakeMessage = z.infer<typeof handshakeSchema>;

// ---- computations ----

export const dependSchema = z.object({
  kind: z.enum(['function', 'class']),
  name: identifier,
  source: z.string().max(MAX_SOURCE),
});
export type Depend = z.infer<typeof dependSchema>;

/**
 * A relative file name inside a computation's directory: no absolute paths, no `..`, no empty
 * or `.` segments, no NUL; the node checks again against the resolved path.
 */
export const relativeName = z
  .string()
  .min(1)
  .max(1024)
  .refine(
    (n) =>
      !n.startsWith('/') &&
      !n.includes('\0') &&
      !n.includes('\\') &&
      n.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..'),
    {
      message: 'expected a relative file name without `..`',
    },
  );

export const computationSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('function'),
    name: z.string().max(256),
    source: z.string().min(1).max(MAX_SOURCE),
    depends: z.array(dependSchema).max(10_000),
    /**
     * The cluster's `globals`: `const`s in the computation's scope (as depends are), their
     * values base64 of one encoded array (payload codec, classes of `depends` known).
     */
    globals: z
      .object({
        names: z.array(identifier).max(10_000),
        values: z.string().max(MAX_SOURCE * 4),
      })
      .optional(),
  }),
  /** An ES module bundled by the client (esbuild), imported by the runner. */
  z.object({
    kind: z.literal('module'),
    name: z.string().max(256),
    /** The bundled module's source text. */
    code: z
      .string()
      .min(1)
      .max(MAX_SOURCE * 4),
    /** Export to call for each job. */
    exportName: z.string().min(1).max(256),
  }),
  /** A program file shipped into the computation directory and spawned per job. */
  z.object({
    kind: z.literal('program'),
    name: z.string().max(256),
    /** The program's file name in the computation directory (sent with file-begin/chunk first). */
    file: relativeName,
    /**
     * The command (and its arguments) that runs the file, looked up on the node's PATH; `node`
     * is the runner's own Node.js. Absent: the file runs as itself (its `#!` line honoured).
     */
    interpreter: z.array(z.string().min(1).max(4096)).min(1).max(64).optional(),
  }),
]);
export type Computation = z.infer<typeof computationSchema>;

// ---- client -> node ----

/** Source of a setup or cleanup function (shipped like the computation's depends). */
const hookSource = z.string().min(1).max(MAX_SOURCE).nullable();

export const setupSchema = z.object({
  t: z.literal('setup'),
  rid,
  computeId,
  cluster: z.string().max(1024),
  computation: computationSchema,
  /** Cap on this computation's running jobs on the node (0 = the node's cpus). */
  cpus: z
    .number()
    .int()
    .nonnegative()
    .max(1 << 20),
  /** Seconds between heartbeats the client wants from the node (0 = the node's default). */
  pulseInterval: z.number().nonnegative().max(1000),
  /**
   * Seconds the client may be away (no open connection) and come back to its jobs: at the end
   * of this window the node drops its queued jobs, terminates its running ones and serves the
   * next client, unless `recoverable`. Never beyond the node's zombie interval.
   */
  reconnectWindow: z.number().positive().max(1e6).default(10),
  /**
   * The client keeps a recover file (`recoverFile`): when it is gone, its running jobs go on
   * until the node's zombie interval and their results are kept for `recoverJobs`.
   */
  recoverable: z.boolean().default(false),
  /** `setup(...setupArgs)` run once in each runner before its first job of this computation. */
  setup: hookSource.default(null),
  /** Encoded array of arguments to `setup` (payload codec). */
  setupArgs: bin.nullable().default(null),
  /** `cleanup()` run in each runner that ran setup, when the computation closes. */
  cleanup: hookSource.default(null),
  /**
   * `nodeSetup(...setupArgs)` run once on the node, in one runner, before any runner loads the
   * computation; its encoded return value is handed to every runner's `setup` as its first
   * argument.
   */
  nodeSetup: hookSource.optional(),
  /** Delete the computation's files when it closes. */
  cleanupFiles: z.boolean().default(true),
  /** Sub-directory of the client's area where files go (dispy's dest_path). */
  destPath: relativeName.nullable().default(null),
  /** `'job'`: each job runs in a fresh runner process, retired after it. */
  isolate: z.literal('job').nullable().default(null),
  /**
   * The client program behind a scheduler (which is one client to the node but serves many):
   * runners are never shared between programs.
   */
  program: z.string().min(1).max(64).nullable().default(null),
});
export const jobSchema = z.object({
  t: z.literal('job'),
  uid,
  computeId,
  args: bin,
  /** Seconds after which the node terminates the job (0 = no limit). */
  maxRuntime: z.number().nonnegative().max(1e9).default(0),
  /** Per-job files, already transferred with file-begin/file-chunk; removed after the job. */
  files: z.array(relativeName).max(10_000).default([]),
  /** The job's id as the client knows it (kept with a result the node could not deliver). */
  tag: z.union([z.string().max(1024), finite]).optional(),
  /** Functions and classes of this job only (dispy's `dispy_job_depends`), in its computation's scope. */
  depends: z.array(dependSchema).max(10_000).optional(),
});
/** Starts (or resumes) a file transfer into a computation's directory. */
export const fileBeginSchema = z.object({
  t: z.literal('file-begin'),
  rid,
  computeId,
  name: relativeName,
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** ms since epoch; with an equal size, a file already there with this mtime is complete. */
  mtime: finite,
  mode: z.number().int().nonnegative().max(0o7777),
  /**
   * The computation's destPath (as its setup will say): files sent before setup go where the
   * computation will run. Ignored once the computation is set up.
   */
  destPath: relativeName.nullable().default(null),
  /** A per-job file of job `uid`: kept until that job ended (the job lists it in `files`). */
  job: uid.optional(),
});
/** One chunk of a file at `offset` (the node answers with the bytes it now has). */
export const fileChunkSchema = z.object({
  t: z.literal('file-chunk'),
  rid,
  computeId,
  name: relativeName,
  offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  data: bin,
  /** The job of a per-job file, as in its file-begin (a scheduler keeps such files per job). */
  job: uid.optional(),
});
/** Asks which of this computation's jobs the node holds (for nodeJobs). */
export const jobsQuerySchema = z.object({ t: z.literal('jobs'), rid, computeId });
export const cancelSchema = z.object({
  t: z.literal('cancel'),
  uid,
  /**
   * Seconds a running job gets to return after its `dispyAbortSignal` fired (a program: after
   * SIGINT) before it is killed; absent or 0: killed at once.
   */
  grace: z.number().nonnegative().max(86_400).optional(),
});
export const closeSchema = z.object({ t: z.literal('close'), rid, computeId, terminate: z.boolean() });
export const setCpusSchema = z.object({
  t: z.literal('set-cpus'),
  rid,
  computeId,
  cpus: z
    .number()
    .int()
    .nonnegative()
    .max(1 << 20),
});
export const pingSchema = z.object({ t: z.literal('ping'), rid });
/**
 * Client heartbeat: the client sends one every `every` seconds; a node closes a connection of
 * its client that stayed silent for 5 × `every` (its jobs then wait for the client, up to the
 * zombie interval).
 */
export const beatSchema = z.object({ t: z.literal('beat'), every: z.number().positive().max(1000) });
/**
 * After a reconnection to the same node (same nodeId): the jobs of `computeId` the client still
 * waits for. The node answers with `uids` (still queued or running there, now reported on this
 * connection) and `results` (ended while the client was away); it cancels that computation's
 * jobs the client no longer wants and forgets their kept results.
 */
export const resumeSchema = z.object({ t: z.literal('resume'), rid, computeId, uids: z.array(uid).max(1 << 20) });
/**
 * Results of a computation whose client program is gone (`recoverJobs`): answered with the kept
 * results (then forgotten) and the uids still queued or running; `terminate` ends those.
 */
export const recoverSchema = z.object({ t: z.literal('recover'), rid, computeId, terminate: z.boolean() });

/**
 * The client's answer to a `job-file` (dispySendFile): the bytes of the file it now has (a
 * begin: what it already had, to resume from), or why it refused the file.
 */
export const jobFileAckSchema = z.object({
  t: z.literal('job-file-ack'),
  fid: uid,
  offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  error: errorInfoSchema.optional(),
});

export const clientMessageSchema = z.discriminatedUnion('t', [
  setupSchema,
  jobSchema,
  cancelSchema,
  closeSchema,
  setCpusSchema,
  pingSchema,
  fileBeginSchema,
  fileChunkSchema,
  jobsQuerySchema,
  beatSchema,
  resumeSchema,
  recoverSchema,
  jobFileAckSchema,
]);
export type ClientMessage = z.infer<typeof clientMessageSchema>;
/** What a client may send (fields with defaults may be left out). */
export type ClientMessageInput = z.input<typeof clientMessageSchema>;

// ---- node -> client ----

export const nodeInfoSchema = z.object({
  t: z.literal('info'),
  /** Random per daemon start: a changed id means the node restarted. */
  nodeId: z.string().max(64),
  name: z.string().max(256),
  ipAddr: z.string().max(64),
  port: z.number().int(),
  machineCpus: z.number().int().positive(),
  /** CPUs the daemon offers (its `--cpus`). */
  cpus: z.number().int().nonnegative(),
  /** CPUs it runs jobs on now, when its page lowered them below `cpus`. */
  cpuLimit: z.number().int().nonnegative().optional(),
  /** Drained from its page: it starts no job until it resumes. */
  draining: z.boolean().optional(),
  platform: z.string().max(256),
  availInfo: availInfoSchema.nullable(),
  /** Whether another client process currently owns the node. */
  busy: z.boolean(),
  /**
   * Largest message (frame) the node accepts or sends, in bytes (its --max-message-size): no
   * job whose arguments do not fit is sent to it. Absent: 64 MiB.
   */
  maxMessageSize: z.number().int().positive().optional(),
});
export type NodeInfo = z.infer<typeof nodeInfoSchema>;

export const jobDoneSchema = z.object({
  t: z.literal('done'),
  uid,
  status: z.enum(['Finished', 'Terminated', 'Cancelled']),
  result: bin.nullable(),
  exception: z
    .string()
    .max(MAX_TEXT * 4)
    .nullable(),
  /** A DISPY_ERR_* code when the node itself ended the job (max runtime, node shutdown, ...). */
  code: shortText.nullable(),
  stdout: z.string().max(MAX_TEXT * 16),
  stderr: z.string().max(MAX_TEXT * 16),
  startTime: finite.nullable(),
  endTime: finite,
  cpuTime: finite,
  /** The job's client-side id (results kept for a client that was away). */
  tag: z.union([z.string().max(1024), finite]).optional(),
});
export type JobDone = z.infer<typeof jobDoneSchema>;

/** Answer to a request carrying `rid`: `ok` with optional data, or an error. */
export const replySchema = z.object({
  t: z.literal('reply'),
  rid,
  ok: z.boolean(),
  cpus: z.number().int().nonnegative().optional(),
  /** File transfers: bytes of the file the node has. */
  offset: z.number().int().nonnegative().optional(),
  /** Answer to `jobs`: uids of the computation's jobs on the node. */
  uids: z
    .array(uid)
    .max(1 << 20)
    .optional(),
  /** Answer to `resume` / `recover`: results the node kept for the client. */
  results: z
    .array(jobDoneSchema)
    .max(1 << 20)
    .optional(),
  error: errorInfoSchema.optional(),
});
export type Reply = z.infer<typeof replySchema>;

export const startedSchema = z.object({ t: z.literal('started'), uid, startTime: finite });

export const nakSchema = z.object({
  t: z.literal('nak'),
  uid,
  /** `full`: no room now; `draining`: its page drained it (the job runs elsewhere or later). */
  reason: z.enum(['full', 'draining', 'shutdown', 'unknown-computation']),
  message: z.string().max(MAX_TEXT),
});
/** A job's `dispyProvisionalResult(value)`. */
export const provisionalSchema = z.object({ t: z.literal('provisional'), uid, result: bin });
export const pulseSchema = z.object({
  t: z.literal('pulse'),
  availInfo: availInfoSchema.nullable(),
  /** Jobs running on the node for this client. */
  busy: z.number().int().nonnegative(),
  cpus: z.number().int().nonnegative(),
  /** CPUs the node runs jobs on now (its page may lower them below `cpus`). */
  cpuLimit: z.number().int().nonnegative().optional(),
  /** Drained from its page: it starts no job until it resumes. */
  draining: z.boolean().optional(),
});
export const closingSchema = z.object({ t: z.literal('closing'), reason: z.string().max(MAX_TEXT) });
/** The node closed a computation on its own (failed setup later, zombie, shutdown). */
export const closedSchema = z.object({ t: z.literal('closed'), computeId, reason: z.string().max(MAX_TEXT) });

/**
 * A file a running job sends home (`dispySendFile(path)`), the node→client direction of the
 * chunked, resumable transfer: without `data` it begins (the client answers with the bytes it
 * already has), with `data` it is the chunk at `offset`; each is answered with a job-file-ack.
 * `name` is what the job gave: the client takes a base name only, under its resultsDir.
 */
export const jobFileSchema = z.object({
  t: z.literal('job-file'),
  uid,
  /** The transfer, numbered by the node. */
  fid: uid,
  name: z.string().max(1024),
  size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** ms since epoch: with an equal size, a file already there with this mtime is complete. */
  mtime: finite,
  offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  data: bin.optional(),
});
export type JobFile = z.infer<typeof jobFileSchema>;

export const nodeMessageSchema = z.discriminatedUnion('t', [
  nodeInfoSchema,
  startedSchema,
  jobDoneSchema,
  nakSchema,
  provisionalSchema,
  pulseSchema,
  closingSchema,
  closedSchema,
  replySchema,
  jobFileSchema,
]);
export type NodeMessage = z.infer<typeof nodeMessageSchema>;
