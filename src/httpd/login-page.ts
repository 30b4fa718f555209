/**
 * The login form (`GET /login`), rendered here so it works whatever the document root and
 * without script: a plain form posting to `/login`, styled by `/login.css`. Every value written
 * into it is HTML-escaped.
 */

/** `&`, `<`, `>`, `"` and `'` as entities. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

/** Where a login may send the browser: a path of this server (never `//host` or `/\host`). */
export function safeNext(next: string | null | undefined): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
  if (!next || next.length > 2048 || !next.startsWith('/') || next.startsWith('//') || next.includes('\\') || /[\u0000-\u001f]/.test(next))
    return '/';
  if (next === '/login' || next.startsWith('/login?') || next.startsWith('/login/')) return '/';
  return next;
}

export interface LoginPageValues {
  next: string;
  /** A message saying why the previous attempt failed (shown as an alert). */
  error?: string | null;
  /** The name typed in the previous attempt. */
  user?: string;
  /** A note (for example: signed out). */
  info?: string | null;
}

export function loginPage(v: LoginPageValues): string {
  const alert = v.error ? `<p class="alert" role="alert" data-testid="login-error">${escapeHtml(v.error)}</p>` : '';
  const info = v.info ? `<p class="info" role="status" data-testid="login-info">${escapeHtml(v.info)}</p>` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="referrer" content="same-origin">
<title>dispyts: Sign in</title>
<link rel="stylesheet" href="login.css">
</head>
<body>
<main>
<form class="login" method="post" action="login" data-testid="login-form">
<h1><span class="mark" aria-hidden="true"></span>dispyts</h1>
<p class="lead">Sign in to watch and manage the cluster.</p>
${info}${alert}
<label for="user">User name</label>
<input id="user" name="user" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="64" value="${escapeHtml(v.user ?? '')}"${v.user ? '' : ' autofocus'}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024"${v.user ? ' autofocus' : ''}>
<input type="hidden" name="next" value="${escapeHtml(v.next)}">
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
`;
}

export const LOGIN_CSS = `:root{color-scheme:light dark;--bg:#f3f5f9;--surface:#fff;--fg:#111827;--muted:#5b6474;--border:#dfe4ec;--accent:#2563eb;--accent-fg:#fff;--err:#b91c1c;--err-soft:#fdecec;--ok-soft:#e7f6ec;--ok:#15803d}
@media (prefers-color-scheme:dark){:root{--bg:#0c111b;--surface:#141b28;--fg:#e6e9ef;--muted:#9aa4b5;--border:#263247;--accent:#60a5fa;--accent-fg:#0c111b;--err:#f87171;--err-soft:#3a1717;--ok-soft:#12301f;--ok:#4ade80}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
main{width:100%;padding:16px}
.login{max-width:360px;margin:0 auto;display:flex;flex-direction:column;gap:6px;padding:24px;background:var(--surface);border:1px solid var(--border);border-radius:12px;box-shadow:0 1px 3px rgba(16,24,40,.08)}
h1{margin:0;font-size:22px;display:flex;align-items:center;gap:10px}
.mark{width:20px;height:20px;border-radius:6px;background:var(--accent)}
.lead{margin:0 0 8px;color:var(--muted)}
label{font-weight:600;margin-top:6px}
input{font:inherit;min-height:44px;padding:8px 10px;border:1px solid var(--border);border-radius:8px;background:var(--bg);color:var(--fg)}
input:focus-visible,button:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
button{margin-top:14px;min-height:44px;font:inherit;font-weight:600;border:0;border-radius:8px;background:var(--accent);color:var(--accent-fg);cursor:pointer}
.alert{margin:0;padding:8px 10px;border-radius:8px;background:var(--err-soft);color:var(--err);font-weight:600}
.info{margin:0;padding:8px 10px;border-radius:8px;background:var(--ok-soft);color:var(--ok)}
`;
