/**
 * Files of the document root: our built UI (`dist/ui`), or a user's directory such as dispy's own
 * pages. Paths never leave the root (no `..`, no dotfiles, symlinks resolved and re-checked);
 * `.html` files get dispy's templating (`%(TIMEOUT)s`, `%(SHOW_JOB_ARGS)s`, `%%`), and a user's
 * pages a CSP allowing exactly their inline scripts as sent (security.ts). When our UI is not
 * built, `/` serves a placeholder that links to the JSON API.
 */
import { existsSync, realpathSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DispyError } from '../errors.js';
import { STRICT_CSP, USER_FILE_CSP, userPageCsp } from './security.js';

/** Where `npm run build` puts the UI bundle (this file is in src/httpd or dist/httpd). */
export const DEFAULT_DOCUMENT_ROOT = fileURLToPath(new URL('../../dist/ui', import.meta.url));

/** Largest file served (bytes). */
const MAX_FILE = 32 * 1024 * 1024;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.ico': 'image/x-icon',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
};

/** The page values dispy's templates use. */
export interface TemplateValues {
  /** Seconds between updates a newly loaded page starts with. */
  pollSec: number;
  showJobArgs: boolean;
}

/** dispy's %-templating of `.html` files: only its two keys and `%%`; anything else is left alone. */
export function substitute(html: string, v: TemplateValues): string {
  return html.replace(/%(\(TIMEOUT\)s|\(SHOW_JOB_ARGS\)s|%)/g, (_m, key: string) => {
    if (key === '%') return '%';
    if (key === '(TIMEOUT)s') return String(v.pollSec);
    return v.showJobArgs ? 'true' : 'false';
  });
}

const PLACEHOLDER = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dispyts</title>
</head>
<body>
<h1>dispyts HTTP server</h1>
<p>The browser pages are not built here (run <code>npm run build</code>, or give the server a
<code>documentRoot</code>). The JSON API is available:</p>
<ul>
<li><a href="cluster_status">GET /cluster_status</a>: clusters, job counters and every node</li>
<li><a href="cluster_updates?since=0">GET /cluster_updates?since=N</a>: what changed after cursor N</li>
<li><a href="nodes">GET /nodes</a>: nodes of each cluster</li>
<li>GET /events: Server-Sent Events with the changes</li>
<li>POST /node_info, /cancel_jobs, /add_node, /allocate_node, /deallocate_node, /close_node, /update, /set_cpus</li>
<li><a href="job_history">GET /job_history</a>: finished jobs, newest first</li>
<li><a href="event_log">GET /event_log</a>: node arrivals, departures, CPU changes and actions</li>
<li><a href="metrics">GET /metrics</a>: Prometheus metrics</li>
<li><a href="healthz">GET /healthz</a></li>
</ul>
</body>
</html>
`;

export interface StaticResponse {
  status: number;
  body: string | Uint8Array;
  headers: Record<string, string>;
}

export class StaticFiles {
  /** The root, resolved (symlinks too); null when it does not exist. */
  readonly #root: string | null;
  /** Whether the root is the user's (its inline scripts allowed by hash) or our UI (strict CSP). */
  readonly #userRoot: boolean;

  constructor(documentRoot: string | undefined) {
    this.#userRoot = documentRoot !== undefined;
    const dir = resolve(documentRoot ?? DEFAULT_DOCUMENT_ROOT);
    let root: string | null = null;
    try {
      if (existsSync(dir)) root = realpathSync(dir);
    } catch {
      root = null;
    }
    this.#root = root;
  }

  /** The CSP of a file that is not HTML. */
  get csp(): string {
    return this.#userRoot ? USER_FILE_CSP : STRICT_CSP;
  }

  /**
   * The file for URL path `pathname` (still percent-encoded), or null for 404. Throws a 400
   * DispyError for a path that cannot be decoded.
   */
  async serve(pathname: string, values: TemplateValues): Promise<StaticResponse | null> {
    const segments: string[] = [];
    for (const raw of pathname.split('/')) {
      if (raw === '') continue;
      let seg: string;
      try {
        seg = decodeURIComponent(raw);
      } catch {
        throw new DispyError('DISPY_ERR_BAD_REQUEST', 'malformed percent-encoding in the path');
      }
      // No parent or hidden entries, no separators smuggled inside a segment.
      if (seg.startsWith('.') || seg.includes('/') || seg.includes('\\') || seg.includes('\0')) return null;
      segments.push(seg);
    }
    if (segments.length > 32) return null;
    const index = segments.length === 0 || (segments.length === 1 && segments[0] === 'index.html');
    if (index) return this.#index(values);
    return this.#file(segments, values);
  }

  async #index(values: TemplateValues): Promise<StaticResponse | null> {
    for (const name of ['index.html', 'monitor.html']) {
      const r = await this.#file([name], values);
      if (r) return r;
    }
    if (this.#userRoot) return null;
    return {
      status: 200,
      body: PLACEHOLDER,
      headers: { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache', 'Content-Security-Policy': STRICT_CSP },
    };
  }

  async #file(segments: string[], values: TemplateValues): Promise<StaticResponse | null> {
    const root = this.#root;
    if (!root) return null;
    const type = TYPES[extname(segments[segments.length - 1]!).toLowerCase()];
    if (!type) return null;
    const full = join(root, ...segments);
    if (!full.startsWith(root + sep)) return null;
    let real: string;
    try {
      real = await realpath(full);
      if (!real.startsWith(root + sep)) return null;
      const st = await stat(real);
      if (!st.isFile() || st.size > MAX_FILE) return null;
    } catch {
      return null;
    }
    let data: Buffer;
    try {
      data = await readFile(real);
    } catch {
      return null;
    }
    const headers: Record<string, string> = { 'Content-Type': type, 'Content-Security-Policy': this.csp };
    if (type.startsWith('text/html')) {
      headers['Cache-Control'] = 'no-cache';
      // Hashed as sent: the templated values (which /update changes) are part of the scripts.
      const body = substitute(data.toString('utf8'), values);
      if (this.#userRoot) headers['Content-Security-Policy'] = userPageCsp(body);
      return { status: 200, body, headers };
    }
    headers['Cache-Control'] =
      type.startsWith('text/javascript') || type.startsWith('text/css') ? 'private, max-age=86400' : 'private, max-age=3600';
    return { status: 200, body: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), headers };
  }
}
