/**
 * @internal While a JobCluster has jobs pending, a check every second that some node is
 * usable: when none is, a warning on stderr naming each node and why (first after WARN_FIRST s,
 * then with back-off), and with `nodeTimeout`, giving up once none has been usable that long
 * (queued jobs end Abandoned, `wait()` rejects with DISPY_ERR_NO_NODE).
 */
import { DispyError, jobException } from '../errors.js';
import type { JobEngine } from './job-engine.js';
import type { NodeSession } from './node-session.js';
import { JobStatus } from './status.js';

/** Seconds with jobs pending and no usable node before the first warning; then doubled each time, up to WARN_MAX. */
const WARN_FIRST = 5;
const WARN_MAX = 300;

/** @internal */
export class NodeWatch {
  readonly #e: JobEngine;
  #timer: NodeJS.Timeout | null = null;
  /** ms since epoch since when jobs are pending and no node is usable (null: one is). */
  #unusableSince: number | null = null;
  #warnDelay = WARN_FIRST;
  #nextWarnAt = 0;

  constructor(e: JobEngine) {
    this.#e = e;
  }

  /** Runs (ref'd) while jobs are pending; idle otherwise. */
  setActive(on: boolean): void {
    // Made once and ref'd only while jobs are pending (no timer churn for one job at a time).
    this.#timer ??= setInterval(() => this.#check(), 1000);
    if (on) {
      this.#unusableSince = null;
      this.#warnDelay = WARN_FIRST;
      this.#timer.ref();
    } else this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #check(): void {
    const e = this.#e;
    if (e.core.pending === 0 || e.closing) return;
    const now = Date.now();
    if ([...e.sessions.nodes.values()].some(usable)) {
      if (this.#unusableSince !== null) this.#warnDelay = WARN_FIRST;
      this.#unusableSince = null;
      return;
    }
    if (this.#unusableSince === null) {
      this.#unusableSince = now;
      this.#nextWarnAt = now + this.#warnDelay * 1000;
    }
    const timeout = e.opts.nodeTimeout;
    if (timeout !== undefined && now - this.#unusableSince >= timeout * 1000) {
      this.#giveUp(timeout);
      return;
    }
    if (now < this.#nextWarnAt) return;
    e.log.warn(
      { cluster: e.name, jobsPending: e.core.pending, nodes: this.#whyUnusable() },
      `no usable node for ${Math.round((now - this.#unusableSince) / 1000)} s; ${e.core.pending} jobs wait: ${this.#whyUnusable().join('; ')}`,
    );
    this.#warnDelay = Math.min(WARN_MAX, this.#warnDelay * 2);
    this.#nextWarnAt = now + this.#warnDelay * 1000;
  }

  /** Each node (or node spec) that cannot take jobs now, and why. */
  #whyUnusable(): string[] {
    const sessions = this.#e.sessions;
    const out: string[] = [];
    const seen = new Set<string>();
    for (const [ip, cn] of sessions.nodes) {
      seen.add(ip);
      out.push(`${ip}:${cn.node.port} ${whyNot(cn)}`);
    }
    for (const [ip, why] of sessions.problems) {
      if (seen.has(ip)) continue;
      seen.add(ip);
      out.push(`${ip} ${why}`);
    }
    const { specs, resolved } = this.#e.finder;
    for (const spec of specs) {
      if (spec.isWildcard ? [...seen].some((ip) => spec.ipRex.test(ip)) : seen.has(resolved.get(spec.host) ?? spec.host)) continue;
      out.push(spec.isWildcard ? `no node matches ${spec.host}` : `${spec.host}:${spec.port} not answering yet`);
    }
    return out;
  }

  /** nodeTimeout passed with no usable node: queued jobs end Abandoned and `wait()` rejects. */
  #giveUp(timeout: number): void {
    const e = this.#e;
    const why = this.#whyUnusable().join('; ');
    const err = new DispyError(
      'DISPY_ERR_NO_NODE',
      `cluster ${e.name}: no usable node for nodeTimeout (${timeout} s): ${why || 'no node'}`,
    );
    e.log.warn({ cluster: e.name, nodes: this.#whyUnusable() }, err.message);
    this.#unusableSince = null;
    e.core.failWaiters(err);
    const items = [...e.ledger.queue.clear()];
    for (const q of e.ledger.pinned.values()) items.push(...q.clear());
    for (const item of items) {
      if (item.job.settled) continue;
      item.job.exception = jobException(`DISPY_ERR_NO_NODE: ${err.message}`);
      item.job.endTime = Date.now();
      e.core.settle(item.job, JobStatus.Abandoned, null);
    }
    e.core.emitError(err);
  }
}

/** Whether jobs can be sent to `cn` once it has room. */
function usable(cn: NodeSession): boolean {
  return cn.ready && !cn.link.closed && !cn.link.closing && !cn.draining && Math.min(cn.cap, cn.link.cpus) > 0;
}

/** Why `cn` cannot take jobs now. */
function whyNot(cn: NodeSession): string {
  if (cn.suspended) return 'connection lost, reconnecting';
  if (cn.closingNode) return `being closed (${cn.closingNode.kind}Node)`;
  if (cn.link.closing) return 'shutting down';
  if (cn.draining) return 'draining (from its page)';
  return !cn.ready ? 'deallocated' : '0 cpus';
}
