/**
 * A live table of the newest rows of one stream: bounded to `maxRows`, newest at the
 * bottom, virtualised (only the rows in view exist in the DOM), rendered at most once
 * per animation frame. Used by the LiveTable widget and the Streams panel's viewer.
 *
 * The render budget: a frame applies only the last `maxRows` messages that arrived since
 * the previous one (the coalescer drops the rest unformatted); the rows in view are a
 * fixed pool of DOM elements (`RowPool`), each keeping the message it shows while that
 * message stays in view, so a frame writes the text of new rows only and moves the others;
 * and a frame never reads layout: the viewport's size comes from a ResizeObserver and its
 * scroll position from scroll events, both outside the frame.
 */

import { animationFrameScheduler, Batch, Coalescer, GapTally } from './coalesce';
import { count, el, StatusLine } from './dom';
import { recordDrops, recordRender } from './pagestats';
import { fieldOf, formatValue, GapMessage, payloadFields, StreamMessage } from './protocol';
import { jupyterPageEndpoint } from './connection';
import type { Endpoint } from './link';
import { pageConnection, ViewSubscription } from './page';
import { Ring } from './ring';

export interface TableOptions {
  stream: string;
  /** Fields to show (payload fields, or `offset`/`time`/`key`); null: inferred. */
  columns: string[] | null;
  maxRows: number;
  /** Height of the scrolling area in pixels. */
  height?: number;
  /** The server to subscribe on (default: the page's own Jupyter server). */
  endpoint?: Endpoint;
}

export const ROW_HEIGHT = 22;
export const OVERSCAN = 6;
const MAX_INFERRED_COLUMNS = 24;

/** Rows `[first, last)` of `total` to have in the DOM. */
export interface RowRange {
  first: number;
  last: number;
}

/**
 * The rows a viewport `height` pixels high shows at `scrollTop`, with `OVERSCAN` rows
 * either side; when following the newest rows, the last ones whatever `scrollTop` says.
 */
export function visibleRange(
  total: number,
  scrollTop: number,
  height: number,
  follow: boolean
): RowRange {
  const inView = Math.ceil(Math.max(0, height) / ROW_HEIGHT);
  if (follow) {
    return { first: Math.max(0, total - inView - OVERSCAN), last: total };
  }
  const first = Math.min(
    Math.max(0, Math.floor(Math.max(0, scrollTop) / ROW_HEIGHT) - OVERSCAN),
    Math.max(0, total - inView - OVERSCAN)
  );
  return { first, last: Math.min(total, first + inView + 2 * OVERSCAN) };
}

/** Pool size for a viewport at most `height` pixels high: enough for any `visibleRange`. */
export function poolSize(height: number): number {
  return Math.ceil(Math.max(0, height) / ROW_HEIGHT) + 2 * OVERSCAN + 1;
}

/**
 * Which of `size` pooled DOM rows shows which row, rows being numbered by arrival
 * (`Ring.seqAt`). Rows in view are consecutive numbers, so row `key` always goes to slot
 * `key % size`: a row keeps its element for as long as it is in view, and a frame touches
 * only the slots whose row changed. Pure (the DOM work is the callbacks').
 */
export class RowPool {
  private readonly keys: Float64Array;

  constructor(readonly size: number) {
    if (!(size >= 1)) {
      throw new RangeError('a RowPool needs at least one slot');
    }
    this.keys = new Float64Array(size).fill(-1);
  }

  /** The row slot `slot` shows, or -1. */
  keyOf(slot: number): number {
    return this.keys[slot];
  }

  /** The slot row `key` goes to. */
  slotOf(key: number): number {
    return key % this.size;
  }

  /**
   * Show rows `[first, first + n)` (n at most `size`): `show(slot, key)` for each slot
   * that gets a new row, `hide(slot)` for each that had a row no longer in view and
   * gets none.
   */
  place(
    first: number,
    n: number,
    show: (slot: number, key: number) => void,
    hide: (slot: number) => void
  ): void {
    if (n > this.size) {
      throw new RangeError(`${n} rows do not fit a pool of ${this.size}`);
    }
    const end = first + n;
    const size = this.size;
    for (let slot = 0; slot < size; slot++) {
      const key = this.keys[slot];
      // A slot some row in view goes to is refilled below, not hidden first.
      const reused = (((slot - first) % size) + size) % size < n;
      if (key >= 0 && (key < first || key >= end) && !reused) {
        this.keys[slot] = -1;
        hide(slot);
      }
    }
    for (let key = first; key < end; key++) {
      const slot = key % this.size;
      if (this.keys[slot] !== key) {
        this.keys[slot] = key;
        show(slot, key);
      }
    }
  }

  /** Forget every row (the rows were renumbered): `hide(slot)` for each that had one. */
  reset(hide: (slot: number) => void): void {
    for (let slot = 0; slot < this.size; slot++) {
      if (this.keys[slot] >= 0) {
        this.keys[slot] = -1;
        hide(slot);
      }
    }
  }
}

/** One pooled DOM row: its element, cells, and what was last written to them. */
interface PooledRow {
  node: HTMLDivElement;
  cells: HTMLDivElement[];
  texts: string[];
  top: number;
}

export class LiveTable {
  readonly node: HTMLDivElement;
  private readonly statusLine: StatusLine;
  private readonly notice: HTMLDivElement;
  private readonly header: HTMLDivElement;
  private readonly viewport: HTMLDivElement;
  private readonly sizer: HTMLDivElement;
  private readonly body: HTMLDivElement;
  private readonly footer: HTMLDivElement;
  private rows: Ring<StreamMessage>;
  private coalescer: Coalescer<StreamMessage>;
  private subscription: ViewSubscription | null = null;
  private columns: string[] = [];
  private inferred: boolean;
  private follow = true;
  private scrollPending = false;
  private gaps: GapTally;
  private disposed = false;
  private pool: RowPool;
  private pooled: PooledRow[] = [];
  /** The sizer height last written (px). */
  private sizerHeight = -1;
  /** Layout as last observed outside a frame (scroll events, ResizeObserver). */
  private scrollTop = 0;
  private viewHeight: number;
  private resizeObserver: ResizeObserver | null = null;

  constructor(private options: TableOptions) {
    this.node = el('div', 'nbws-view nbws-table');
    this.statusLine = new StatusLine(`LiveTable · ${options.stream}`);
    this.notice = el('div', 'nbws-notice');
    this.notice.hidden = true;
    this.header = el('div', 'nbws-table-header');
    this.viewport = el('div', 'nbws-table-viewport');
    this.viewport.style.maxHeight = `${this.maxHeight}px`;
    this.viewHeight = this.maxHeight;
    this.sizer = el('div', 'nbws-table-sizer');
    this.body = el('div', 'nbws-table-body');
    this.sizer.appendChild(this.body);
    this.viewport.appendChild(this.sizer);
    this.footer = el('div', 'nbws-footer');
    this.node.append(this.statusLine.node, this.header, this.viewport, this.notice, this.footer);
    this.viewport.addEventListener('scroll', () => this.onScroll());
    if (typeof ResizeObserver !== 'undefined') {
      this.resizeObserver = new ResizeObserver(entries => {
        const height = entries[entries.length - 1].contentRect.height;
        // An empty viewport is 0 high: plan for its full height then.
        this.viewHeight = height > 0 ? height : this.maxHeight;
      });
      this.resizeObserver.observe(this.viewport);
    }
    this.pool = new RowPool(poolSize(this.maxHeight));

    this.inferred = options.columns === null || options.columns.length === 0;
    if (!this.inferred) {
      this.setColumns(options.columns as string[]);
    }
    this.rows = new Ring(Math.max(1, options.maxRows));
    this.gaps = this.makeTally();
    this.coalescer = this.makeCoalescer();
    this.updateFooter();
  }

  /** Subscribe (replaying the last `maxRows` messages, so a reload shows history). */
  start(): void {
    this.subscription?.dispose();
    const connection = pageConnection(this.options.endpoint ?? jupyterPageEndpoint());
    this.subscription = connection.subscribe(
      this.options.stream,
      { history: this.options.maxRows },
      {
        message: m => this.coalescer.push(m),
        batch: messages => this.coalescer.pushAll(messages),
        skipped: n => this.coalescer.skip(n),
        gap: g => this.onGap(g),
        status: s => this.statusLine.set(s)
      }
    );
  }

  /** Apply changed options (from the widget model); restarts only when needed. */
  update(options: TableOptions): void {
    const restart = options.stream !== this.options.stream;
    const resized = options.maxRows !== this.options.maxRows;
    const heightChanged = (options.height ?? 320) !== this.maxHeight;
    this.options = options;
    this.inferred = options.columns === null || options.columns.length === 0;
    if (!this.inferred) {
      this.setColumns(options.columns as string[]);
    } else if (this.rows.length > 0) {
      this.inferColumns(this.rows.toArray());
    }
    if (heightChanged) {
      this.viewport.style.maxHeight = `${this.maxHeight}px`;
      this.viewHeight = this.maxHeight;
      this.setPool();
    }
    if (resized || restart) {
      const kept = restart ? [] : this.rows.toArray();
      this.rows = new Ring(Math.max(1, options.maxRows));
      this.rows.extend(kept);
      this.pool.reset(slot => this.blank(this.pooled[slot]));
      this.coalescer.dispose();
      this.coalescer = this.makeCoalescer();
    }
    if (restart) {
      this.gaps = this.makeTally();
      this.statusLine.node.firstChild!.textContent = `LiveTable · ${options.stream}`;
      this.start();
    }
    this.layout();
    this.renderRows();
  }

  dispose(): void {
    this.disposed = true;
    this.subscription?.dispose();
    this.coalescer.dispose();
    this.resizeObserver?.disconnect();
  }

  /** Re-render after the node was attached or resized. */
  refresh(): void {
    this.viewHeight = this.viewport.clientHeight || this.maxHeight;
    this.layout();
    this.renderRows();
  }

  private get maxHeight(): number {
    return this.options.height ?? 320;
  }

  private makeCoalescer(): Coalescer<StreamMessage> {
    return new Coalescer<StreamMessage>({
      capacity: Math.max(1, this.options.maxRows),
      schedule: animationFrameScheduler(),
      render: batch => this.render(batch)
    });
  }

  private makeTally(): GapTally {
    return new GapTally((dropped, conflated) =>
      recordDrops('table', this.options.stream, dropped, conflated)
    );
  }

  private onGap(gap: GapMessage): void {
    this.gaps.add(gap);
    const range = gap.to === null ? `from ${gap.from}` : `${gap.from}-${gap.to - 1}`;
    this.notice.hidden = false;
    this.notice.textContent = `gap: offsets ${range} not delivered (${gap.reason}${
      gap.count !== null ? `, ${gap.count} messages` : ''
    })`;
    this.updateFooter();
  }

  private render(batch: Batch<StreamMessage>): void {
    if (this.disposed) {
      return;
    }
    if (this.inferred) {
      this.inferColumns(batch.items);
    }
    this.rows.extend(batch.items);
    this.layout();
    this.renderRows();
    const newest = this.rows.last();
    if (newest !== undefined && batch.items.length > 0) {
      recordRender('table', this.options.stream, { offset: newest.offset, time: newest.time });
    }
    this.updateFooter();
  }

  /** Size the scroll area to the rows held, keeping the newest in view when following. */
  private layout(): void {
    const height = this.rows.length * ROW_HEIGHT;
    if (height === this.sizerHeight) {
      return; // Full window: nothing moves but the rows' content.
    }
    this.sizerHeight = height;
    this.sizer.style.height = `${height}px`;
    if (this.follow) {
      // Past the end: the browser clamps it to the bottom. Nothing is read back.
      this.viewport.scrollTop = height;
      this.scrollTop = Math.max(0, height - this.viewHeight);
    }
  }

  private inferColumns(items: readonly StreamMessage[]): void {
    if (this.columns.length >= MAX_INFERRED_COLUMNS) {
      return;
    }
    const known = new Set(this.columns);
    const next = this.columns.length ? [...this.columns] : ['offset'];
    known.add('offset');
    for (const item of items) {
      const fields = payloadFields(item);
      const names = fields.length ? fields : ['payload'];
      for (const name of names) {
        if (!known.has(name) && next.length < MAX_INFERRED_COLUMNS) {
          known.add(name);
          next.push(name);
        }
      }
    }
    if (next.length !== this.columns.length) {
      this.setColumns(next);
    }
  }

  private setColumns(columns: string[]): void {
    if (columns.join('\u0000') === this.columns.join('\u0000') && this.pooled.length > 0) {
      return;
    }
    this.columns = [...columns];
    const template = `repeat(${Math.max(1, columns.length)}, minmax(5em, 1fr))`;
    this.header.style.gridTemplateColumns = template;
    this.body.style.setProperty('--nbws-columns', template);
    this.header.replaceChildren(...columns.map(c => el('div', 'nbws-cell', c)));
    this.setPool();
  }

  /** (Re)build the pooled rows: on a column change or a new viewport height. */
  private setPool(): void {
    this.pool = new RowPool(poolSize(this.maxHeight));
    this.pooled = [];
    for (let slot = 0; slot < this.pool.size; slot++) {
      const node = el('div', 'nbws-row');
      node.hidden = true;
      const cells = this.columns.map(() => el('div', 'nbws-cell'));
      node.append(...cells);
      this.pooled.push({ node, cells, texts: this.columns.map(() => ''), top: -1 });
    }
    this.body.replaceChildren(...this.pooled.map(row => row.node));
  }

  private onScroll(): void {
    // Read in the scroll event (outside the frame's writes), kept for the next frame.
    this.scrollTop = this.viewport.scrollTop;
    this.follow = this.scrollTop + this.viewHeight >= this.sizerHeight - ROW_HEIGHT;
    if (!this.scrollPending) {
      this.scrollPending = true;
      requestAnimationFrame(() => {
        this.scrollPending = false;
        this.renderRows();
      });
    }
  }

  /** Put the rows in view into the pool: new rows get text, the others only move. */
  private renderRows(): void {
    if (this.pooled.length === 0) {
      return;
    }
    const rows = this.rows;
    const height = Math.min(this.viewHeight, this.maxHeight);
    const { first, last } = visibleRange(rows.length, this.scrollTop, height, this.follow);
    const firstSeq = rows.firstSeq;
    this.pool.place(
      firstSeq + first,
      last - first,
      (slot, key) => this.fill(this.pooled[slot], rows.at(key - firstSeq), key),
      slot => {
        const row = this.pooled[slot];
        row.node.hidden = true;
        row.top = -1;
      }
    );
    for (let i = first; i < last; i++) {
      const row = this.pooled[this.pool.slotOf(firstSeq + i)];
      const top = i * ROW_HEIGHT;
      if (row.top !== top) {
        row.top = top;
        row.node.style.transform = `translateY(${top}px)`;
      }
    }
  }

  /** Hide a pooled row and forget its text (its message may now belong to another slot). */
  private blank(row: PooledRow): void {
    row.node.hidden = true;
    row.top = -1;
    for (let c = 0; c < row.cells.length; c++) {
      row.texts[c] = '';
      row.cells[c].textContent = '';
    }
  }

  /** Show `message` in a pooled row: only cells whose text changed are written. */
  private fill(row: PooledRow, message: StreamMessage, key: number): void {
    row.node.dataset.offset = String(message.offset);
    row.node.classList.toggle('nbws-mod-odd', key % 2 === 1);
    for (let c = 0; c < this.columns.length; c++) {
      const text = formatValue(fieldOf(message, this.columns[c]));
      if (row.texts[c] !== text) {
        row.texts[c] = text;
        row.cells[c].textContent = text;
        row.cells[c].title = text;
      }
    }
    if (row.node.hidden) {
      row.node.hidden = false;
    }
  }

  private updateFooter(): void {
    const received = this.coalescer.totalReceived;
    const skipped = this.coalescer.totalSkipped;
    const parts = [
      `${count(this.rows.length)} rows shown (max ${count(this.options.maxRows)})`,
      `${count(received)} received`
    ];
    if (skipped) {
      parts.push(`${count(skipped)} skipped while rendering was behind`);
    }
    const gaps = this.gaps.summary();
    if (gaps) {
      parts.push(gaps);
    }
    const last = this.subscription?.resume.lastOffset;
    if (last !== null && last !== undefined) {
      parts.push(`offset ${last}`);
    }
    this.footer.textContent = parts.join(' · ');
    const data = this.node.dataset;
    data.rows = String(this.rows.length);
    data.received = String(received);
    data.skipped = String(skipped);
    data.missed = String(this.gaps.missed);
    data.dropped = String(this.gaps.dropped);
    data.conflated = String(this.gaps.conflated);
  }
}
