/**
 * What the views rendered, recorded for `nbws bench --only browser`: each view reports the
 * newest message it drew once per rendered frame, and its drop totals. The records are kept
 * in bounded arrays on `globalThis.__nbwsStats`, which the bench reads after the measured
 * window (so no debugger is attached while it measures). Costs one array push per frame.
 */

export type ViewKind = 'table' | 'chart' | 'monitor';

/** One rendered frame: when, which view, the newest message shown and its header time. */
export interface RenderRecord {
  /** `performance.timeOrigin + performance.now()` at render, in ms since the epoch. */
  at: number;
  view: ViewKind;
  stream: string;
  offset: number;
  /** The message header's `time` (epoch seconds). */
  time: number;
}

export interface DropRecord {
  view: string;
  stream: string;
  dropped: number;
  conflated: number;
}

export interface PageStats {
  renders: RenderRecord[];
  drops: Record<string, DropRecord>;
}

/** Render records kept (a minute of three views at 60 fps is ~11k). */
export const MAX_RENDER_RECORDS = 50_000;

const KEY = '__nbwsStats';

/** The page-global record (shared by every bundle on the page). */
export function pageStats(): PageStats {
  const holder = globalThis as unknown as Record<string, PageStats | undefined>;
  let stats = holder[KEY];
  if (stats === undefined) {
    stats = { renders: [], drops: {} };
    holder[KEY] = stats;
  }
  return stats;
}

function now(): number {
  return performance.timeOrigin + performance.now();
}

/** Once per rendered frame: the newest message the view shows. */
export function recordRender(
  view: ViewKind,
  stream: string,
  newest: { offset: number; time: number }
): void {
  const renders = pageStats().renders;
  if (renders.length >= MAX_RENDER_RECORDS) {
    renders.splice(0, renders.length >> 1);
  }
  renders.push({ at: now(), view, stream, offset: newest.offset, time: newest.time });
}

/** The view's totals so far of messages the server dropped or conflated (gap notices). */
export function recordDrops(
  view: string,
  stream: string,
  dropped: number,
  conflated: number
): void {
  pageStats().drops[`${view}:${stream}`] = { view, stream, dropped, conflated };
}
