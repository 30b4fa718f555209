/**
 * Time-series charts drawn with uPlot from data the page accumulates. Colours come from the
 * stylesheet's custom properties, so charts follow the light or dark theme (they are re-created
 * when the system switches). A text summary stands beside each canvas for screen readers.
 */
import { signal } from '@preact/signals';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { formatTime } from '../lib/format.js';
import { html } from '../lib/html.js';

const darkQuery = typeof matchMedia === 'function' ? matchMedia('(prefers-color-scheme: dark)') : null;
/** Whether the system asks for the dark theme; charts re-create themselves when it changes. */
export const darkMode = signal(darkQuery?.matches ?? false);
darkQuery?.addEventListener?.('change', (e) => {
  darkMode.value = e.matches;
});

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

export interface ChartSeries {
  label: string;
  /** CSS custom property holding the colour, e.g. `--chart-1`. */
  color: string;
  kind?: 'line' | 'step' | 'bars';
  /** 'pct' draws on a 0–100 % axis on the right. */
  scale?: 'y' | 'pct';
  /** Digits shown in the legend. */
  digits?: number;
}

export interface TimeChartProps {
  /** Accessible name of the chart. */
  label: string;
  /** A sentence with the latest values (read by screen readers, shown under the chart). */
  summary: string;
  series: ChartSeries[];
  /** [x in seconds, ...one array per series]. */
  data: number[][];
  height?: number;
  /** Lower bound of the y axis' upper end (e.g. a node's CPUs). */
  yMax?: number;
  testid?: string;
}

function buildOptions(p: TimeChartProps, width: number): uPlot.Options {
  const fg = cssVar('--muted', '#667');
  const grid = cssVar('--grid', 'rgba(128,128,128,0.2)');
  const hasPct = p.series.some((s) => s.scale === 'pct');
  const hasY = p.series.some((s) => (s.scale ?? 'y') === 'y');
  // Wall-clock ticks (HH:MM:SS), spaced so they never overlap on a phone.
  const axes: uPlot.Axis[] = [
    {
      stroke: fg,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      space: 70,
      values: (_u, splits) => splits.map((s) => formatTime(s * 1000)),
    },
  ];
  if (hasY) axes.push({ scale: 'y', stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 44 });
  if (hasPct)
    axes.push({
      scale: 'pct',
      side: 1,
      stroke: fg,
      grid: { show: !hasY, stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
      size: 48,
      values: (_u, v) => v.map((x) => `${x}%`),
    });
  const yMax = p.yMax ?? 1;
  return {
    width,
    height: p.height ?? 180,
    scales: {
      // At least the last minute, so a new chart does not zoom into milliseconds.
      x: {
        time: true,
        range: (_u, min, max) =>
          Number.isFinite(min) && Number.isFinite(max) ? [Math.min(min, max - 60), max] : [Date.now() / 1000 - 60, Date.now() / 1000],
      },
      y: { range: (_u, _min, max) => [0, Math.max(yMax, Number.isFinite(max) ? max : 0, 1) * 1.05] },
      pct: { range: [0, 100] },
    },
    axes,
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false, setScale: false } },
    series: [
      {},
      ...p.series.map((s): uPlot.Series => {
        const color = cssVar(s.color, '#3b82f6');
        const paths =
          s.kind === 'bars'
            ? uPlot.paths.bars!({ size: [0.7, 24], align: -1 })
            : s.kind === 'step'
              ? uPlot.paths.stepped!({ align: 1 })
              : undefined;
        return {
          label: s.label,
          scale: s.scale ?? 'y',
          stroke: color,
          width: 2,
          fill: s.kind === 'bars' ? color : `${color}22`,
          points: { show: false },
          value: (_u, v) => (v == null || !Number.isFinite(v) ? '-' : v.toFixed(s.digits ?? 0)),
          ...(paths ? { paths } : {}),
        };
      }),
    ],
  };
}

/**
 * uPlot needs two x values to range a time axis (with one it spans years): pad short series with
 * an empty sample a minute earlier.
 */
export function padData(data: number[][]): uPlot.AlignedData {
  const xs = data[0] ?? [];
  if (xs.length >= 2) return data as uPlot.AlignedData;
  const now = Date.now() / 1000;
  const first = xs.length ? xs[0]! : now;
  return [[first - 60, ...xs], ...data.slice(1).map((ys) => [null, ...ys])] as uPlot.AlignedData;
}

export function TimeChart(p: TimeChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const dark = darkMode.value;
  const shape = p.series.map((s) => `${s.label}:${s.kind ?? 'line'}:${s.scale ?? 'y'}`).join('|');
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = Math.max(200, el.clientWidth);
    const u = new uPlot(buildOptions(p, width), padData(p.data), el);
    plot.current = u;
    const ro =
      typeof ResizeObserver === 'function'
        ? new ResizeObserver(() => {
            const w = Math.max(200, el.clientWidth);
            if (w !== u.width) u.setSize({ width: w, height: p.height ?? 180 });
          })
        : null;
    ro?.observe(el);
    return () => {
      ro?.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [dark, shape, p.yMax]);
  useEffect(() => {
    plot.current?.setData(padData(p.data));
  }, [p.data]);
  return html`<figure class="chart" data-testid=${p.testid}>
    <div class="chart-box" ref=${box} role="img" aria-label=${`${p.label}. ${p.summary}`}></div>
    <figcaption class="chart-caption"><strong>${p.label}</strong> <span class="muted">${p.summary}</span></figcaption>
  </figure>`;
}
