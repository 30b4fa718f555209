/** Requests to the DispyHTTPServer: JSON reads and dispy's form-encoded actions. */

/** Default time a request may take before it counts as failed (the server is away). */
export const REQUEST_TIMEOUT_MS = 10_000;

export interface Reply<T = unknown> {
  ok: boolean;
  status: number;
  /** The parsed JSON body (null when empty or not JSON). */
  body: T | null;
  /** Set when the request did not get an HTTP answer (network error or timeout). */
  networkError?: string;
  /** The error message the server sent, when it sent one. */
  error?: string;
  /** The error's DISPY_ERR_* code, when the server sent one. */
  code?: string;
}

async function send<T>(path: string, init: RequestInit, timeoutMs: number): Promise<Reply<T>> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    // The server sends `Referrer-Policy: no-referrer`, under which a POST's Origin would be
    // `null`; 'same-origin' keeps our Origin on our own requests (the server checks it).
    const res = await fetch(path, {
      ...init,
      signal: ctl.signal,
      credentials: 'same-origin',
      cache: 'no-store',
      referrerPolicy: 'same-origin',
    });
    const text = await res.text();
    let body: T | null = null;
    if (text) {
      try {
        body = JSON.parse(text) as T;
      } catch {
        body = null;
      }
    }
    const reply: Reply<T> = { ok: res.ok, status: res.status, body };
    // Signed out (or the session ended) on a server with users: to the login form, then back here.
    if (res.status === 401 && res.headers.get('x-dispyts-login') && typeof location !== 'undefined') {
      location.assign(`login?${new URLSearchParams({ next: location.pathname + location.search, expired: '1' })}`);
    }
    if (!res.ok) {
      // The server answers errors as `{ error: { code, message } }`.
      const b = body as { message?: unknown; error?: unknown } | null;
      const e = b?.error as { message?: unknown; code?: unknown } | string | undefined;
      reply.error =
        typeof e === 'object' && e && typeof e.message === 'string'
          ? e.message
          : typeof e === 'string'
            ? e
            : typeof b?.message === 'string'
              ? b.message
              : `HTTP ${res.status}`;
      if (typeof e === 'object' && e && typeof e.code === 'string') reply.code = e.code;
    }
    return reply;
  } catch (err) {
    return { ok: false, status: 0, body: null, networkError: ctl.signal.aborted ? 'timed out' : (err as Error).message || 'network error' };
  } finally {
    clearTimeout(timer);
  }
}

export function getJson<T>(path: string, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Reply<T>> {
  return send<T>(path, { method: 'GET', headers: { Accept: 'application/json' } }, timeoutMs);
}

/** POSTs form fields (repeated names allowed), as dispy's pages do. */
export function postForm<T>(path: string, fields: Array<[string, string]>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Reply<T>> {
  const body = new URLSearchParams();
  for (const [k, v] of fields) body.append(k, v);
  return send<T>(path, { method: 'POST', body, headers: { Accept: 'application/json' } }, timeoutMs);
}

/** What a page's `<meta name=…>` says (the server templates some of them). */
export function meta(name: string): string | null {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.getAttribute('content') : null;
}

/** The server's poll interval for new pages (seconds): templated into the page as `%(TIMEOUT)s`. */
export function serverPollSec(): number {
  const v = Number(meta('dispy-poll-sec'));
  return Number.isFinite(v) && v > 0 ? v : 10;
}

/** Whether the server shows job arguments (`%(SHOW_JOB_ARGS)s`); true when not templated. */
export function serverShowJobArgs(): boolean {
  return meta('dispy-show-job-args') !== 'false';
}

/** Describes a failed reply in a sentence for the page's messages. */
export function replyError(r: Reply): string {
  if (r.networkError) return `server unreachable (${r.networkError})`;
  return r.error ?? `HTTP ${r.status}`;
}
