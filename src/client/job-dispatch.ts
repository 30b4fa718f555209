/**
 * Sending a JobCluster's queued jobs to its nodes, one per call of `dispatchOne` (the
 * dispatcher calls it while a node has room): pinned jobs first, then those set apart for their
 * size, then the queue's head to the least loaded node that takes it. A job goes only to a node
 * whose announced message limit holds it; one no node takes ends Cancelled, saying so. Each
 * attempt gets its own wire id, so a late reply for an attempt given up never completes a
 * re-run. Per-job files go to the node right before their job.
 */
import { DispyError, jobException } from '../errors.js';
import { nextJobUid } from './cluster-core.js';
import { hasRoom, nodeLoad } from './dispatch-window.js';
import { dispatchPolicy, requestPump } from './dispatcher.js';
import type { DispyJob } from './dispy-job.js';
import { dependFiles, localFile, transferFile, type LocalFile } from './file-transfer.js';
import type { JobEngine } from './job-engine.js';
import { queuedPart, type Queued } from './job-ledger.js';
import type { NodeAllocate } from './node-allocate.js';
import type { NodeSession } from './node-session.js';
import { wireTag } from './option-rules.js';
import { graceOf } from './per-node-options.js';
import { JobStatus } from './status.js';

/** Bytes of a job message besides its arguments and per-job file names (ids, tag, MAC, framing). */
const JOB_ENVELOPE = 4096;

/** @internal Submission order (job uid) of the earliest queued job, or null (the scheduler's `fsfs` policy). */
export function headOrder(e: JobEngine): number | null {
  return e.closing ? null : e.ledger.headOrder();
}

/** @internal Sends one queued job to a node if any has room; true if it did (or ended one no node takes). */
export function dispatchOne(e: JobEngine): boolean {
  if (e.closing) return false;
  const ledger = e.ledger;
  for (const [ip, q] of ledger.pinned) {
    if (q.length === 0) continue;
    const cn = e.sessions.nodes.get(ip);
    if (!cn || !canSend(cn)) continue;
    const item = q.shift()!;
    if (item.job.settled) return true;
    // It may run only there: a node that does not take it never will.
    if (!fits(e, cn, item)) tooLarge(e, item);
    else send(e, cn, item, true);
    return true;
  }
  if (ledger.large.length && dispatchLarge(e)) return true;
  while (ledger.queue.length && ledger.queue.peek()!.job.settled) ledger.queue.shift();
  if (ledger.queue.length === 0) return false;
  const head = ledger.queue.peek()!;
  const { best, room } = bestNode(e, head);
  if (!best) {
    // A node has room but does not take a job that large: it waits apart for one that does.
    if (!room) return false;
    ledger.queue.shift();
    setAside(e, head);
    return true;
  }
  send(e, best, ledger.queue.shift()!, false);
  return true;
}

/** Whether a job may be sent to `cn` now. */
function canSend(cn: NodeSession): boolean {
  const link = cn.link;
  return cn.ready && !link.closed && !link.closing && !link.full && !link.draining && hasRoom(cn, link, dispatchPolicy() !== null);
}

/** The least loaded node that may take `item` now; `room`: whether any node has room at all. */
function bestNode(e: JobEngine, item: Queued): { best: NodeSession | null; room: boolean } {
  let best: NodeSession | null = null;
  let bestLoad = Number.POSITIVE_INFINITY;
  let room = false;
  for (const cn of e.sessions.nodes.values()) {
    if (!canSend(cn)) continue;
    room = true;
    if (!fits(e, cn, item)) continue;
    const load = nodeLoad(cn, cn.link);
    if (load < bestLoad) {
      best = cn;
      bestLoad = load;
    }
  }
  return { best, room };
}

// ---- sizes: a job goes only to a node whose announced limit holds it ----

/** Whether the job message of `item` fits in what `cn` takes. */
function fits(e: JobEngine, cn: NodeSession, item: Queued): boolean {
  let names = 0;
  const extra = e.jobExtras.get(item.job);
  for (const f of extra?.files ?? []) names += Buffer.byteLength(f.name) + 8;
  for (const d of extra?.depends ?? []) names += Buffer.byteLength(d.source) + Buffer.byteLength(d.name) + 32;
  return item.args.length + names + JOB_ENVELOPE <= cn.link.maxMessageSize;
}

/** Sends the oldest job set aside for its size to a node that takes it; true if it did something. */
function dispatchLarge(e: JobEngine): boolean {
  const large = e.ledger.large;
  while (large.length && large.peek()!.job.settled) large.shift();
  const item = large.peek();
  if (!item) return false;
  const { best } = bestNode(e, item);
  if (best) {
    send(e, best, large.shift()!, false);
    return true;
  }
  if (someNodeTakes(e, item)) return false;
  large.shift();
  tooLarge(e, item);
  return true;
}

/** Whether a node of the cluster (ready, reconnecting, or still connecting) may take `item`. */
function someNodeTakes(e: JobEngine, item: Queued): boolean {
  if (e.sessions.connecting.size > 0) return true;
  for (const cn of e.sessions.nodes.values()) if ((cn.ready || cn.suspended) && fits(e, cn, item)) return true;
  return false;
}

/** A job too large for a node with room: kept apart for a node that takes it, or ended if none does. */
function setAside(e: JobEngine, item: Queued): void {
  if (!someNodeTakes(e, item)) {
    tooLarge(e, item);
    return;
  }
  e.ledger.large.push(item);
  for (const cn of e.sessions.nodes.values()) {
    const ip = cn.node.ipAddr;
    if (!cn.ready || fits(e, cn, item) || e.sizeReported.has(ip)) continue;
    e.sizeReported.add(ip);
    e.core.emitError(
      new DispyError(
        'DISPY_ERR_MESSAGE_TOO_LARGE',
        `node ${ip} takes messages of at most ${cn.link.maxMessageSize} bytes (its --max-message-size): job ${String(item.job.id)} (arguments of ${item.args.length} bytes) and others as large go to other nodes`,
      ),
    );
  }
}

/** No node of the cluster takes the job: it ends Cancelled, DISPY_ERR_MESSAGE_TOO_LARGE naming the sizes. */
function tooLarge(e: JobEngine, item: Queued): void {
  const limits = [...e.sessions.nodes.values()].filter((cn) => cn.ready || cn.suspended).map((cn) => cn.link.maxMessageSize);
  const largest = limits.length ? Math.max(...limits) : 0;
  const job = item.job;
  const err = new DispyError(
    'DISPY_ERR_MESSAGE_TOO_LARGE',
    `job ${String(job.id)}'s arguments encode to ${item.args.length} bytes: no node of cluster ${e.name} takes a message that large (the largest a node takes is ${largest} bytes: --max-message-size)`,
  );
  job.exception = jobException(err.message);
  job.endTime = Date.now();
  job._errorCode = err.code;
  e.core.settle(job, JobStatus.Cancelled, null);
  e.core.emitError(err);
}

// ---- sending ----

function send(e: JobEngine, cn: NodeSession, item: Queued, pinned: boolean): void {
  // Each attempt has its own wire id, so a late reply from a node declared dead can never
  // complete a re-run of the job elsewhere.
  const uid = nextJobUid();
  item.job._attempt = uid;
  e.ledger.send(uid, item, cn, pinned);
  cn.inflight++;
  const extra = e.jobExtras.get(item.job);
  const maxRuntime = item.maxRuntime ?? extra?.maxRuntime ?? e.opts.maxRuntime ?? 0;
  if (extra?.files.length) void sendWithFiles(e, cn, uid, maxRuntime, extra.files);
  else sendOrRefuse(e, cn, uid, () => cn.link.sendJob(e, uid, e.computeId, item.args, maxRuntime, [], tagOf(e, item.job), extra?.depends));
}

/**
 * Sends a job message; one the node would refuse by size (beyond the estimate of `fits`) is
 * not sent, and the job ends as no node could take it. False if so.
 */
function sendOrRefuse(e: JobEngine, cn: NodeSession, uid: number, sendIt: () => number): boolean {
  try {
    cn.node.tx += sendIt();
    return true;
  } catch (err) {
    const s = e.ledger.sent.get(uid);
    if (!(err instanceof DispyError) || err.code !== 'DISPY_ERR_MESSAGE_TOO_LARGE' || !s) throw err;
    e.ledger.sent.delete(uid);
    cn.inflight--;
    tooLarge(e, queuedPart(s));
    return false;
  }
}

/** A job with per-job files: the files go to its node first, then the job naming them. */
async function sendWithFiles(e: JobEngine, cn: NodeSession, uid: number, maxRuntime: number, files: LocalFile[]): Promise<void> {
  const s = e.ledger.sent.get(uid)!;
  try {
    for (const f of files) cn.node.tx += (await transferFile(cn.link, e.computeId, f, { ...fileOpts(e), job: uid })).sent;
  } catch (err) {
    // A lost node or a closed cluster took care of the job already.
    if (e.ledger.sent.get(uid) !== s) return;
    e.ledger.sent.delete(uid);
    cn.inflight--;
    const de = err instanceof DispyError ? err : new DispyError('DISPY_ERR_INTERNAL', (err as Error).message);
    if (de.retriable && !e.closing) {
      if (e.ledger.countLostSend(s.job)) e.giveUpJob(s, de);
      else e.requeue(s);
    } else e.core.cancelLocal(s.job, `sending its file failed: ${de.code}: ${de.message}`);
    requestPump();
    return;
  }
  if (e.ledger.sent.get(uid) !== s) return;
  const names = files.map((f) => f.name);
  const depends = e.jobExtras.get(s.job)?.depends;
  const sent = sendOrRefuse(e, cn, uid, () => cn.link.sendJob(e, uid, e.computeId, s.args, maxRuntime, names, tagOf(e, s.job), depends));
  if (sent && e.ledger.isCancelRequested(s.job)) cn.link.cancel(uid, graceOf(s.job));
}

/** With a recover file, the job's id travels with it (kept with results nodes cannot deliver). */
function tagOf(e: JobEngine, job: DispyJob): string | number | undefined {
  return e.opts.recoverFile ? wireTag(job.id) : undefined;
}

/** @internal Where files go on the nodes, and their size limit. */
export function fileOpts(e: JobEngine): { destPath: string | null; maxFileSize: number } {
  return { destPath: e.destPath, maxFileSize: e.opts.maxFileSize ?? 0 };
}

/** @internal Files every node gets before setup, plus those of the NodeAllocate that matched it. */
export function setupFiles(e: JobEngine, spec: NodeAllocate): LocalFile[] {
  const max = e.opts.maxFileSize ?? 0;
  const files = e.prebuilt ? [...e.prebuilt.files] : e.computationFiles.map((p) => localFile(p, 'depends', max));
  return [...files, ...dependFiles(spec.depends, 'NodeAllocate.depends', max, files)];
}
