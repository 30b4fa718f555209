/** Per-tab preferences (the chosen cluster, the sort) kept across the pages of one tab. */

const PREFIX = 'dispyts.';

export function loadPref<T>(name: string, fallback: T): T {
  try {
    const v = sessionStorage.getItem(PREFIX + name);
    if (v === null) return fallback;
    const parsed = JSON.parse(v) as unknown;
    return parsed !== null && typeof parsed === typeof fallback ? (parsed as T) : fallback;
  } catch {
    return fallback;
  }
}

export function savePref(name: string, value: unknown): void {
  try {
    sessionStorage.setItem(PREFIX + name, JSON.stringify(value));
  } catch {
    // storage disabled or full: preferences are a convenience
  }
}
