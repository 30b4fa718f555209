/**
 * The audit trail: every action taken through the API (and every sign-in and sign-out) goes to
 * the server's log and to the event log with who did it, what, on which cluster and node, and
 * how it ended. The sentences are built from the request's fields and the endpoint's answer.
 */
import type { Logger } from 'pino';
import type { Identity } from './access.js';
import type { EventLog, EventResult } from './event-log.js';
import type { FormFields } from './form.js';
import type { ServerCounters } from './metrics.js';

/** The endpoints that change something (admins only). */
export const ACTIONS = ['cancel_jobs', 'add_node', 'allocate_node', 'deallocate_node', 'close_node', 'update', 'set_cpus'] as const;
export type ActionName = (typeof ACTIONS)[number];

const VERB: Record<ActionName, string> = {
  cancel_jobs: 'cancel jobs',
  add_node: 'add a node',
  allocate_node: 'allocate nodes',
  deallocate_node: 'deallocate nodes',
  close_node: 'close nodes',
  update: 'change the page settings',
  set_cpus: 'set CPUs of nodes',
};

/** What the action was about, and how its answer reads. */
export interface ActionSummary {
  result: EventResult;
  text: string;
  cluster: string | null;
  node: string | null;
}

function short(s: string, max = 120): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function clusterText(name: string | undefined): string {
  return !name || name === '*' ? 'all clusters' : `cluster ${short(name, 80)}`;
}

function nodesOf(form: FormFields): string[] {
  try {
    const v = JSON.parse(form.get('nodes') ?? '[]') as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

function list(items: string[], max = 5): string {
  return items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

/** A summary of `action` from its fields and the endpoint's answer (status and body text). */
export function summarize(action: ActionName, form: FormFields, status: number, body: string): ActionSummary {
  const ok = status >= 200 && status < 300;
  let json: unknown = null;
  try {
    json = JSON.parse(body);
  } catch {
    json = null;
  }
  const error =
    !ok && json && typeof json === 'object'
      ? ((json as { error?: { message?: string } }).error?.message ?? `HTTP ${status}`)
      : `HTTP ${status}`;
  const failed = (what: string): ActionSummary => ({
    result: 'failed',
    text: `${what}: ${short(String(error), 200)}`,
    cluster: null,
    node: null,
  });
  switch (action) {
    case 'cancel_jobs': {
      const uids = form
        .all('uid')
        .map((u) => u.trim())
        .filter(Boolean);
      const what = `cancel job${uids.length === 1 ? '' : 's'} ${list(uids.map((u) => `#${short(u, 20)}`))}`;
      if (!ok) return failed(what);
      const done = Array.isArray(json) ? json.length : 0;
      return {
        result: done === uids.length ? 'ok' : 'failed',
        text: `${what}: ${done} of ${uids.length} terminated`,
        cluster: null,
        node: null,
      };
    }
    case 'add_node': {
      const host = short(form.get('host') ?? '', 100);
      const port = form.get('port')?.trim();
      const cpus = form.get('cpus')?.trim();
      const what = `add node ${host}${port ? `:${port}` : ''}${cpus && cpus !== '0' ? ` with ${cpus} CPUs` : ''} to ${clusterText(form.get('cluster'))}`;
      if (!ok) return failed(what);
      return { result: 'ok', text: `${what}: requested`, cluster: form.get('cluster') || null, node: host || null };
    }
    case 'allocate_node':
    case 'deallocate_node':
    case 'close_node': {
      const nodes = nodesOf(form);
      const verb = action === 'allocate_node' ? 'allocate' : action === 'deallocate_node' ? 'deallocate' : 'close';
      const terminate = action === 'close_node' && form.get('terminate') === 'true' ? ' (terminating its running jobs)' : '';
      const what = `${verb} node${nodes.length === 1 ? '' : 's'} ${list(nodes.map((n) => short(n, 60)))} for ${clusterText(form.get('cluster'))}${terminate}`;
      if (!ok) return failed(what);
      const done = json === 0;
      return {
        result: done ? 'ok' : 'failed',
        text: `${what}: ${done ? 'done' : 'refused by the cluster'}`,
        cluster: form.get('cluster') || null,
        node: nodes.length === 1 ? nodes[0]! : null,
      };
    }
    case 'update': {
      const parts: string[] = [];
      const t = form.get('timeout');
      if (t !== undefined && t.trim() !== '') parts.push(`update interval ${short(t.trim(), 20)} s`);
      const a = form.get('show_job_args');
      if (a !== undefined) parts.push(`show job arguments ${a === 'true' ? 'on' : 'off'}`);
      const what = `set ${parts.length ? parts.join(', ') : 'nothing'}`;
      return ok ? { result: 'ok', text: what, cluster: null, node: null } : failed(what);
    }
    case 'set_cpus': {
      const pairs = form.entries().map(([k, v]) => [short(k, 60), short(v.trim(), 12)] as const);
      const what = `set CPUs of ${list(pairs.map(([k, v]) => `${k} to ${v}`))}`;
      if (!ok) return failed(what);
      const got = json && typeof json === 'object' ? (json as Record<string, number>) : {};
      const results = pairs.map(([k]) => got[k]);
      const all = results.every((r) => typeof r === 'number' && r >= 0);
      const shown = pairs.map(
        ([k], i) => `${k}: ${results[i] === undefined ? 'unknown node' : results[i]! < 0 ? 'refused' : `now ${results[i]}`}`,
      );
      return {
        result: all ? 'ok' : 'failed',
        text: `${what}: ${list(shown)}`,
        cluster: null,
        node: pairs.length === 1 ? pairs[0]![0] : null,
      };
    }
  }
}

/** Records actions, sign-ins and sign-outs in the log and the event log. */
export class Audit {
  readonly #log: Logger;
  readonly #events: EventLog;
  readonly #counters: ServerCounters;

  constructor(log: Logger, events: EventLog, counters: ServerCounters) {
    this.#log = log;
    this.#events = events;
    this.#counters = counters;
  }

  /** An action that ran (or failed on bad input). */
  action(who: Identity, peer: string | undefined, action: ActionName, s: ActionSummary): void {
    this.#counters.action(action, s.result);
    this.#log.info({ audit: true, user: who.user, role: who.role, via: who.via, peer, action, result: s.result }, `${who.user}: ${s.text}`);
    this.#events.add({
      kind: 'action',
      user: who.user,
      role: who.role,
      action,
      result: s.result,
      cluster: s.cluster,
      node: s.node,
      text: `${who.user} (${who.role}): ${s.text}`,
    });
  }

  /** An action refused because of the role. */
  refused(who: Identity, peer: string | undefined, action: ActionName): void {
    this.#counters.action(action, 'refused');
    this.#log.warn(
      { audit: true, user: who.user, role: who.role, via: who.via, peer, action, result: 'refused' },
      `${who.user} (${who.role}) may not ${VERB[action]}: refused`,
    );
    this.#events.add({
      kind: 'action',
      user: who.user,
      role: who.role,
      action,
      result: 'refused',
      text: `${who.user} (${who.role}) tried to ${VERB[action]}: refused (viewers cannot act)`,
    });
  }

  /** A sign-in by form or HTTP Basic: `ok`, `failed` (wrong credentials) or `limited`. */
  login(
    user: string,
    role: Identity['role'] | null,
    peer: string | undefined,
    result: 'ok' | 'failed' | 'limited',
    how: 'form' | 'basic',
  ): void {
    this.#counters.login(result);
    const name = short(user, 64) || '(no name)';
    const entry = { audit: true, user: name, role, peer, action: 'login', how, result };
    if (result === 'ok') this.#log.info(entry, `${name} signed in (${how})`);
    else
      this.#log.warn(
        entry,
        `sign-in as ${name} ${result === 'limited' ? 'refused by the rate limit' : 'failed'} (${how}, from ${peer ?? '?'})`,
      );
    // Attempts refused by the rate limit stay out of the event log: a flood of them would push
    // everything else out. (Verified Basic credentials are remembered for a minute, so a polling
    // script adds one entry a minute at most.)
    if (result === 'limited') return;
    this.#events.add({
      kind: 'login',
      user: name,
      role,
      action: 'login',
      result: result === 'ok' ? 'ok' : 'failed',
      text:
        result === 'ok'
          ? `${name} (${role}) signed in${how === 'basic' ? ' with HTTP Basic' : ''}`
          : `sign-in as ${name} from ${peer ?? '?'} failed: wrong user name or password`,
    });
  }

  logout(who: Identity, peer: string | undefined): void {
    this.#log.info({ audit: true, user: who.user, role: who.role, peer, action: 'logout' }, `${who.user} signed out`);
    this.#events.add({
      kind: 'logout',
      user: who.user,
      role: who.role,
      action: 'logout',
      result: 'ok',
      text: `${who.user} (${who.role}) signed out`,
    });
  }
}
