/**
 * Windowing for long tables that scroll with the page: only the rows near the viewport are in
 * the DOM, with spacer rows standing in for the others. Rows have a fixed height.
 */
import type { RefObject } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/** Rows rendered above and below the visible ones. */
const OVERSCAN = 8;
/**
 * Rows rendered before the first measurement: half a screen of 44 px rows (a table starts below
 * the page's header and summary). The rest of the screen fills in right after the first paint,
 * which stays cheap whatever the number of nodes.
 */
const INITIAL_ROWS = Math.min(40, Math.ceil((typeof window === 'object' ? window.innerHeight || 900 : 900) / 88) + 2);

export interface RowWindow {
  start: number;
  end: number;
}

function same(a: RowWindow, b: RowWindow): boolean {
  return a.start === b.start && a.end === b.end;
}

export function computeWindow(count: number, rowHeight: number, bodyTop: number, viewportHeight: number): RowWindow {
  if (count === 0) return { start: 0, end: 0 };
  // The part of the body inside the viewport, in px from the body's top.
  const visTop = Math.max(0, -bodyTop);
  const visBottom = Math.max(0, viewportHeight - bodyTop);
  const first = Math.floor(visTop / rowHeight);
  const last = Math.ceil(visBottom / rowHeight);
  const start = Math.max(0, Math.min(count, first) - OVERSCAN);
  const end = Math.min(count, Math.max(start, last) + OVERSCAN);
  return { start, end };
}

/**
 * The range of rows to render for a body element of `count` rows of `rowHeight` px, following
 * the page's scroll and size.
 */
export function useRowWindow(count: number, rowHeight: number, body: RefObject<HTMLElement | null>): RowWindow {
  // The window and the row count it was measured for.
  const [win, setWin] = useState<RowWindow & { count: number }>({ start: 0, end: Math.min(count, INITIAL_ROWS), count });
  const measure = (): RowWindow & { count: number } => {
    const el = body.current;
    if (!el) return { start: 0, end: Math.min(count, INITIAL_ROWS), count };
    const top = el.getBoundingClientRect().top;
    return { ...computeWindow(count, rowHeight, top, window.innerHeight || document.documentElement.clientHeight), count };
  };
  const update = (w: RowWindow & { count: number }) => setWin((prev) => (same(prev, w) && prev.count === w.count ? prev : w));
  // Re-measure after a render that changed the count (sorting keeps it: nothing to do). After
  // the paint, not before: the first rows show at once, without a forced synchronous layout.
  useEffect(() => update(measure()), [count, rowHeight]);
  useEffect(() => {
    let frame = 0;
    const onScroll = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        update(measure());
      });
    };
    window.addEventListener('scroll', onScroll, { passive: true });
    window.addEventListener('resize', onScroll, { passive: true });
    return () => {
      window.removeEventListener('scroll', onScroll);
      window.removeEventListener('resize', onScroll);
      if (frame) cancelAnimationFrame(frame);
    };
  }, [count, rowHeight]);
  if (win.count === count) return { start: win.start, end: win.end };
  // The count changed since the measurement (a snapshot arrived, rows came or went): render at
  // least a first screenful now; the effect above measures after the paint.
  const start = Math.min(win.start, count);
  return { start, end: Math.min(count, Math.max(win.end, start + INITIAL_ROWS)) };
}
