/**
 * Recovering the results of a client program that died (dispy's `recover_jobs`).
 *
 * A JobCluster with `recoverFile` writes there its computation id and every node it set up.
 * Nodes keep the results they could not deliver (on disk) and run the jobs of a vanished client
 * on for their `--zombie-interval`; `recoverJobs` asks each node for them.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import { z } from 'zod';
import { DispyError, Errors } from '../errors.js';
import type { JobDone } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';
import { resolveSecret } from '../protocol/secret.js';
import { loadTls } from '../protocol/tls.js';
import { DispyJob } from './dispy-job.js';
import { NodeLink, type LinkUser } from './node-link.js';
import { JobStatus } from './status.js';

const FORMAT = 'dispyts-recover/1';

const recoverFileSchema = z.object({
  format: z.literal(FORMAT),
  computeId: z.string().min(1).max(64),
  cluster: z.string(),
  created: z.number(),
  nodes: z.array(z.object({ host: z.string(), port: z.number().int().min(1).max(65535) })),
});
export type RecoverFileContent = z.infer<typeof recoverFileSchema>;

/** Writes the recover file atomically (a reader never sees half of it). */
export function writeRecoverFile(path: string, content: Omit<RecoverFileContent, 'format'>): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ format: FORMAT, ...content }, null, 1)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export function readRecoverFile(path: string): RecoverFileContent {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `cannot read the recover file ${path}: ${(err as Error).message}`);
  }
  const parsed = recoverFileSchema.safeParse(raw);
  if (!parsed.success)
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `${path} is not a dispyts recover file: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
    );
  return parsed.data;
}

export interface RecoverJobsOptions {
  /**
   * The `recoverFile` the crashed program's JobCluster wrote.
   * @default required (no default)
   * @example recoverFile: './render.recover.json'
   */
  recoverFile: string;
  /**
   * The nodes' shared secret (as given to the JobCluster).
   * @default undefined (the per-user secret file)
   * @example secret: process.env.DISPYTS_SECRET
   */
  secret?: string;
  /**
   * TLS files, as given to the JobCluster.
   * @default undefined
   * @example certFile: '/etc/dispyts/client-cert.pem'
   */
  certFile?: string;
  /**
   * @default undefined
   * @example keyFile: '/etc/dispyts/client-key.pem'
   */
  keyFile?: string;
  /**
   * @default undefined
   * @example caFile: '/etc/dispyts/ca.pem'
   */
  caFile?: string;
  /**
   * Seconds to wait for jobs still running on the nodes; after that they are left running
   * (or terminated with `terminatePending`) and only finished results are returned.
   * @default undefined (wait until every job of the computation ended)
   * @example timeout: 60
   */
  timeout?: number;
  /**
   * Terminate the jobs still running instead of waiting for them (they come back Terminated).
   * @default false
   * @example terminatePending: true
   */
  terminatePending?: boolean;
  /**
   * Seconds to keep trying an unreachable node.
   * @default 10
   * @example connectTimeout: 30
   */
  connectTimeout?: number;
  /**
   * pino level of the messages written to stderr.
   * @default 'warn'
   * @example logLevel: 'info'
   */
  logLevel?: string;
}

const STATUS = { Finished: JobStatus.Finished, Terminated: JobStatus.Terminated, Cancelled: JobStatus.Cancelled } as const;

/** A link user that only reads replies. */
class Recoverer implements LinkUser {
  onJobMessage(): void {}
  onPulse(): void {}
  onComputationClosed(): void {}
  onLinkClosed(): void {}
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Fetches the results of the jobs a crashed program had submitted, from every node named in its
 * recover file: results the nodes kept, and those of jobs still running once they end (see
 * `timeout`, `terminatePending`). Each result is handed out once. Resolves to settled DispyJobs
 * (`id` is the job's id when it was a string or number, else its wire id; `args` are not kept).
 * Classes shipped by the program are not known here: instances come back as plain objects.
 */
export async function recoverJobs(options: RecoverJobsOptions): Promise<DispyJob[]> {
  const file = readRecoverFile(options.recoverFile);
  const log: Logger = pino({ level: options.logLevel ?? 'warn', base: { recover: file.cluster } }, pino.destination(2));
  const creds = { secret: resolveSecret(options.secret), tls: loadTls(options, 'client') };
  const codec = new PayloadCodec();
  const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
  const user = new Recoverer();
  const jobs: DispyJob[] = [];
  const unreachable: string[] = [];

  const fromNode = async (host: string, port: number): Promise<void> => {
    let link: NodeLink | null = null;
    const connectUntil = Date.now() + (options.connectTimeout ?? 10) * 1000;
    for (let attempt = 0; !link; attempt++) {
      try {
        link = await NodeLink.open(host, port, creds, user, log);
      } catch (err) {
        const e = err as DispyError;
        if (['DISPY_ERR_AUTH', 'DISPY_ERR_TLS', 'DISPY_ERR_VERSION'].includes(e.code) || Date.now() > connectUntil) {
          log.warn({ node: `${host}:${port}`, code: e.code, reason: e.message }, 'node unreachable: its results are not recovered');
          unreachable.push(`${host}:${port} (${e.code}: ${e.message})`);
          return;
        }
        await sleep(Math.min(1000, 100 * 2 ** attempt));
      }
    }
    try {
      for (;;) {
        const terminate = options.terminatePending === true || Date.now() > deadline;
        const reply = await link.request({ t: 'recover', computeId: file.computeId, terminate });
        for (const r of reply.results ?? []) jobs.push(toJob(r, host, codec));
        const pending = reply.uids?.length ?? 0;
        if (pending === 0) return;
        if (Date.now() > deadline && !options.terminatePending) {
          log.warn({ node: host, pending }, 'jobs still running at the timeout: left running');
          return;
        }
        await sleep(250);
      }
    } finally {
      link.release(user);
    }
  };

  await Promise.all(file.nodes.map((n) => fromNode(n.host, n.port)));
  if (unreachable.length && jobs.length === 0 && unreachable.length === file.nodes.length) {
    throw new DispyError('DISPY_ERR_CONNECTION', `no node of ${options.recoverFile} could be reached: ${unreachable.join('; ')}`);
  }
  return jobs;
}

function toJob(r: JobDone, host: string, codec: PayloadCodec): DispyJob {
  const job = new DispyJob(r.uid, r.tag ?? r.uid, [], null);
  job.ipAddr = r.startTime !== null ? host : null;
  job.startTime = r.startTime;
  job.endTime = r.endTime;
  job.stdout = r.stdout;
  job.stderr = r.stderr;
  job.exception = r.exception;
  job._errorCode = r.code;
  let status: (typeof STATUS)[keyof typeof STATUS] = STATUS[r.status];
  if (r.result) {
    try {
      job.result = codec.decode(r.result);
    } catch (err) {
      status = JobStatus.Terminated;
      job.exception = Errors.jobUndecodable(err);
    }
  }
  job._settle(status);
  return job;
}
