/**
 * Time series the page accumulates from the updates it receives (the server keeps no history):
 * bounded, oldest samples dropped in batches so pushing stays O(1) amortized.
 */

/** Samples kept per series: a sample per update, so an hour at a 5 s interval. */
export const MAX_SAMPLES = 720;

export class Series {
  t: number[] = [];
  v: number[] = [];
  readonly max: number;

  constructor(max = MAX_SAMPLES) {
    this.max = max;
  }

  push(t: number, v: number): void {
    this.t.push(t);
    this.v.push(v);
    if (this.t.length > this.max + (this.max >> 2)) {
      const drop = this.t.length - this.max;
      this.t.splice(0, drop);
      this.v.splice(0, drop);
    }
  }

  get length(): number {
    return this.t.length;
  }
}

export interface NodeSeries {
  t: number[];
  busy: number[];
  cpu: number[];
}

/** Per view and address: busy CPUs and available CPU %, sampled when the node changed. */
export class History {
  readonly #m = new Map<string, NodeSeries>();
  readonly max: number;

  constructor(max = MAX_SAMPLES) {
    this.max = max;
  }

  push(view: string, ip: string, t: number, busy: number, cpu: number): void {
    const k = `${view}\u0000${ip}`;
    let s = this.#m.get(k);
    if (!s) {
      s = { t: [], busy: [], cpu: [] };
      this.#m.set(k, s);
    }
    const n = s.t.length;
    // Several messages in one millisecond: keep the latest values.
    if (n && s.t[n - 1] === t) {
      s.busy[n - 1] = busy;
      s.cpu[n - 1] = cpu;
      return;
    }
    s.t.push(t);
    s.busy.push(busy);
    s.cpu.push(cpu);
    if (s.t.length > this.max + (this.max >> 2)) {
      const drop = s.t.length - this.max;
      s.t.splice(0, drop);
      s.busy.splice(0, drop);
      s.cpu.splice(0, drop);
    }
  }

  has(view: string, ip: string): boolean {
    return this.#m.has(`${view}\u0000${ip}`);
  }

  get(view: string, ip: string): NodeSeries | undefined {
    return this.#m.get(`${view}\u0000${ip}`);
  }
}

/**
 * Jobs done per interval from cumulative `done` samples: one bar per sample after the first,
 * the increase since the previous sample (never negative: a resync may restart counters).
 */
export function perInterval(s: Series): { t: number[]; v: number[] } {
  const t: number[] = [];
  const v: number[] = [];
  for (let i = 1; i < s.t.length; i++) {
    t.push(s.t[i]!);
    v.push(Math.max(0, s.v[i]! - s.v[i - 1]!));
  }
  return { t, v };
}
