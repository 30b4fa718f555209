/**
 * The one error registry of dispyts: every error the API, the wire and the UI report carries a
 * stable `DISPY_ERR_*` code, an HTTP status for the server, whether trying again may succeed
 * (`retriable`), and, for the texts written in several places, a message template (`Errors`).
 */

/** Each code with the HTTP status it maps to and what it means. */
export const ERROR_CODES = {
  DISPY_ERR_INVALID_OPTION: { status: 400, summary: 'invalid option' },
  DISPY_ERR_BAD_REQUEST: { status: 400, summary: 'bad request' },
  DISPY_ERR_UNAUTHORIZED: { status: 401, summary: 'not authenticated' },
  DISPY_ERR_FORBIDDEN: { status: 403, summary: 'forbidden' },
  DISPY_ERR_NOT_FOUND: { status: 404, summary: 'not found' },
  DISPY_ERR_PAYLOAD_TOO_LARGE: { status: 413, summary: 'payload too large' },
  DISPY_ERR_TOO_MANY_REQUESTS: { status: 429, summary: 'too many requests or failed sign-ins; try again later' },
  DISPY_ERR_ROLE: { status: 403, summary: 'the signed-in role may not do this' },
  DISPY_ERR_AUTH: { status: 502, summary: 'authentication with a peer failed' },
  DISPY_ERR_TLS: { status: 502, summary: 'TLS handshake with a peer failed' },
  DISPY_ERR_VERSION: { status: 502, summary: 'protocol version mismatch' },
  DISPY_ERR_CONNECTION: { status: 502, summary: 'connection to a peer failed or was lost', retriable: true },
  DISPY_ERR_TIMEOUT: { status: 504, summary: 'timed out', retriable: true },
  DISPY_ERR_FRAME_TOO_LARGE: { status: 413, summary: 'frame larger than the maximum frame size' },
  DISPY_ERR_MESSAGE_TOO_LARGE: { status: 413, summary: "job arguments or result larger than a peer's maximum message size" },
  DISPY_ERR_UNDELIVERABLE: { status: 502, summary: 'job could not be handed to a node in the allowed number of attempts' },
  DISPY_ERR_BAD_FRAME: { status: 400, summary: 'malformed frame or message' },
  DISPY_ERR_BAD_MAC: { status: 400, summary: 'frame failed its message authentication check' },
  DISPY_ERR_NODE_BUSY: { status: 409, summary: 'node is serving another client', retriable: true },
  DISPY_ERR_NODE_UNKNOWN: { status: 404, summary: 'no such node' },
  DISPY_ERR_NO_NODE: { status: 503, summary: 'no usable node within nodeTimeout' },
  DISPY_ERR_UNKNOWN_COMPUTATION: { status: 404, summary: 'computation not set up on the node' },
  DISPY_ERR_COMPUTATION: { status: 400, summary: 'computation cannot be shipped or loaded' },
  DISPY_ERR_FREE_VARIABLE: { status: 400, summary: 'computation uses a variable that was not shipped' },
  DISPY_ERR_SERIALIZE: { status: 400, summary: 'value cannot be serialized' },
  DISPY_ERR_CLUSTER_CLOSED: { status: 409, summary: 'cluster is closed' },
  DISPY_ERR_JOB_TERMINATED: { status: 500, summary: 'job was terminated or raised an exception' },
  DISPY_ERR_JOB_CANCELLED: { status: 409, summary: 'job was cancelled' },
  DISPY_ERR_JOB_ABANDONED: { status: 502, summary: 'job was abandoned with its node' },
  DISPY_ERR_INSECURE: { status: 400, summary: 'refusing an insecure configuration' },
  DISPY_ERR_SECRET_FILE: { status: 500, summary: 'cannot read or create the secret file' },
  DISPY_ERR_FILE_TOO_LARGE: { status: 413, summary: 'file larger than the maximum file size' },
  DISPY_ERR_MAX_RUNTIME: { status: 500, summary: 'job exceeded its maximum run time' },
  DISPY_ERR_OUT_OF_MEMORY: { status: 500, summary: 'job ran out of memory' },
  DISPY_ERR_SETUP: { status: 500, summary: "the computation's setup failed on a node" },
  DISPY_ERR_LISTEN: { status: 500, summary: 'the server cannot listen on its address' },
  DISPY_ERR_SHARED_STORE_LIMIT: { status: 413, summary: "a node's shared store for a computation is full (its keys or bytes bound)" },
  DISPY_ERR_SLURM: { status: 502, summary: 'a Slurm command failed or a batch job of nodes ended early' },
  DISPY_ERR_INTERNAL: { status: 500, summary: 'internal error' },
} as const;

export type DispyErrorCode = keyof typeof ERROR_CODES;

/**
 * Whether a failure with `code` may pass if tried again at once (a lost or slow connection, a node
 * busy with another client): a job whose send failed so is queued again; any other failure ends
 * it. (Whether a node whose setup failed is tried again later is a different rule:
 * `setupRetried` in client/node-session.ts.)
 */
export function isRetriable(code: DispyErrorCode): boolean {
  const entry = ERROR_CODES[code];
  return 'retriable' in entry && entry.retriable;
}

export function isDispyErrorCode(code: unknown): code is DispyErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** Base class of every error dispyts throws or reports; match on `code`, not on the message. */
export class DispyError extends Error {
  readonly code: DispyErrorCode;
  /** HTTP status the server answers with for this error. */
  readonly statusCode: number;

  constructor(code: DispyErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code].summary, options);
    this.name = 'DispyError';
    this.code = code;
    this.statusCode = ERROR_CODES[code].status;
  }

  /** Whether trying again may succeed (`isRetriable`). */
  get retriable(): boolean {
    return isRetriable(this.code);
  }

  /** Plain form for the wire and JSON responses (no stack). */
  toJSON(): { code: DispyErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Rebuilds a DispyError from its wire form, mapping unknown codes to DISPY_ERR_INTERNAL. */
export function fromWire(e: { code: string; message: string }): DispyError {
  return new DispyError(isDispyErrorCode(e.code) ? e.code : 'DISPY_ERR_INTERNAL', e.message);
}

/** Wraps anything thrown into a DispyError, keeping DispyErrors as they are. */
export function asDispyError(err: unknown, code: DispyErrorCode = 'DISPY_ERR_INTERNAL'): DispyError {
  if (err instanceof DispyError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new DispyError(code, message, { cause: err });
}

/**
 * Error formatting for option validation, shaped like p-queue's:
 * ``Expected `cpus` to be an integer, got `1.5` (number)``.
 */
export function invalidOption(name: string, expected: string, got: unknown): DispyError {
  let shown: string;
  try {
    shown =
      typeof got === 'bigint' ? `${got}n` : typeof got === 'function' ? `[function ${got.name}]` : (JSON.stringify(got) ?? String(got));
  } catch {
    shown = String(got);
  }
  return new DispyError('DISPY_ERR_INVALID_OPTION', `Expected \`${name}\` to be ${expected}, got \`${shown}\` (${typeof got})`);
}

/**
 * A job's `exception` text when dispyts itself ended the job (not its code): `DispyError: …`,
 * as `DispyError.name` and the message. Never composed by hand elsewhere.
 */
export function jobException(message: string): string {
  return `DispyError: ${message}`;
}

/**
 * Message templates, written once for texts several places report (like fastify's error
 * registry): each builds the error with its code, or, for `job*`, the job's exception text.
 */
export const Errors = {
  /** An operation on a cluster after `close()`. */
  clusterClosed: (name: string) => new DispyError('DISPY_ERR_CLUSTER_CLOSED', `cluster ${name} is closed`),
  /** A request for a computation of the scheduler that was closed. */
  computationClosed: (name: string) => new DispyError('DISPY_ERR_CLUSTER_CLOSED', `computation ${name} is closed`),
  /** A node refusing work while it stops. */
  nodeShuttingDown: (host: string) => new DispyError('DISPY_ERR_CONNECTION', `node ${host} is shutting down`),
  /** The scheduler refusing work while it stops. */
  schedulerShuttingDown: () => new DispyError('DISPY_ERR_CONNECTION', 'the scheduler is shutting down'),
  /** A job's result that a peer cannot carry. */
  resultTooLarge: (bytes: number, where: string, max: number) =>
    new DispyError(
      'DISPY_ERR_MESSAGE_TOO_LARGE',
      `the job's result encodes to ${bytes} bytes, more than ${where} maximum message size of ${max} bytes (--max-message-size)`,
    ),
  /** The exception of a job killed because its client cancelled it. */
  jobCancelledByClient: (detail = '') => jobException(`job terminated on request of the client${detail}`),
  /** The exception of a job its cluster's `close()` ended. */
  jobClusterClosed: () => jobException('job terminated as its cluster was closed'),
  /** The exception of a job whose result arrived but could not be decoded. */
  jobUndecodable: (err: unknown) => jobException(`cannot decode the job's result: ${(err as Error).message}`),
} as const;
