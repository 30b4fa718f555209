/** Number, byte, time and address formatting shared by the pages (dispy's formats, tidied). */

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB', 'EB'];

/** 1024-based with two decimals, as dispy's `formatBytes` (B…EB); `-` for a missing value. */
export function formatBytes(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '-';
  if (n < 1024) return `${Math.round(n)} B`;
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(2)} ${UNITS[i]}`;
}

export function formatPercent(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '-';
  return `${n.toFixed(2)} %`;
}

export function formatFixed(n: number | null | undefined, digits = 2): string {
  if (n == null || !Number.isFinite(n)) return '-';
  return n.toFixed(digits);
}

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatInt(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '-';
  return intFmt.format(Math.round(n));
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

/** Local wall-clock time (HH:MM:SS) of a ms timestamp; `-` when unknown. */
export function formatTime(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms) || ms <= 0) return '-';
  return timeFmt.format(ms);
}

/** Local date and time of a ms timestamp, for titles and detail views. */
export function formatDateTime(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms) || ms <= 0) return '-';
  return dateTimeFmt.format(ms);
}

/** "3 s ago", "2 min ago": how long since a ms timestamp. */
export function formatAgo(ms: number | null | undefined, now = Date.now()): string {
  if (ms == null || !Number.isFinite(ms) || ms <= 0) return '-';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

/**
 * A numeric sort key for an address: IPv4 `a.b.c.d` as a number; IPv6 and names fall back to
 * a large offset plus a string comparison done by the caller (key is NaN).
 */
export function ipv4Key(ip: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return Number.NaN;
  return ((+m[1]! * 256 + +m[2]!) * 256 + +m[3]!) * 256 + +m[4]!;
}

/** Compares two addresses numerically (IPv4 by value, IPv6 by group, else as text). */
export function compareIp(a: string, b: string, ka = ipv4Key(a), kb = ipv4Key(b)): number {
  if (!Number.isNaN(ka) && !Number.isNaN(kb)) return ka - kb;
  if (!Number.isNaN(ka)) return -1;
  if (!Number.isNaN(kb)) return 1;
  if (a.includes(':') && b.includes(':')) {
    const pa = expand6(a);
    const pb = expand6(b);
    for (let i = 0; i < 8; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
    return 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function expand6(ip: string): number[] {
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(Math.max(0, 8 - h.length - t.length)).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16) || 0);
}
