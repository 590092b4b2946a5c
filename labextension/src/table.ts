/**
 * A live table of the newest rows of one stream: bounded to `maxRows`, newest at the
 * bottom, virtualised (only the rows in view exist in the DOM), rendered at most once
 * per animation frame. Used by the LiveTable widget and the Streams panel's viewer.
 */

import { animationFrameScheduler, Batch, Coalescer, Window } from './coalesce';
import { count, el, StatusLine } from './dom';
import { fieldOf, formatValue, GapMessage, payloadFields, StreamMessage } from './protocol';
import { jupyterPageEndpoint } from './connection';
import type { Endpoint } from './link';
import { pageConnection, ViewSubscription } from './page';

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

const ROW_HEIGHT = 22;
const OVERSCAN = 6;
const MAX_INFERRED_COLUMNS = 24;

export class LiveTable {
  readonly node: HTMLDivElement;
  private readonly statusLine: StatusLine;
  private readonly notice: HTMLDivElement;
  private readonly header: HTMLDivElement;
  private readonly viewport: HTMLDivElement;
  private readonly sizer: HTMLDivElement;
  private readonly body: HTMLDivElement;
  private readonly footer: HTMLDivElement;
  private rows: Window<StreamMessage>;
  private coalescer: Coalescer<StreamMessage>;
  private subscription: ViewSubscription | null = null;
  private columns: string[] = [];
  private inferred: boolean;
  private follow = true;
  private scrollPending = false;
  private gaps = 0;
  private missed = 0;
  private disposed = false;

  constructor(private options: TableOptions) {
    this.node = el('div', 'nbws-view nbws-table');
    this.statusLine = new StatusLine(`LiveTable · ${options.stream}`);
    this.notice = el('div', 'nbws-notice');
    this.notice.hidden = true;
    this.header = el('div', 'nbws-table-header');
    this.viewport = el('div', 'nbws-table-viewport');
    this.viewport.style.maxHeight = `${options.height ?? 320}px`;
    this.sizer = el('div', 'nbws-table-sizer');
    this.body = el('div', 'nbws-table-body');
    this.sizer.appendChild(this.body);
    this.viewport.appendChild(this.sizer);
    this.footer = el('div', 'nbws-footer');
    this.node.append(this.statusLine.node, this.header, this.viewport, this.notice, this.footer);
    this.viewport.addEventListener('scroll', () => this.onScroll());

    this.inferred = options.columns === null || options.columns.length === 0;
    if (!this.inferred) {
      this.setColumns(options.columns as string[]);
    }
    this.rows = new Window(Math.max(1, options.maxRows));
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
        gap: g => this.onGap(g),
        status: s => this.statusLine.set(s)
      }
    );
  }

  /** Apply changed options (from the widget model); restarts only when needed. */
  update(options: TableOptions): void {
    const restart = options.stream !== this.options.stream;
    const resized = options.maxRows !== this.options.maxRows;
    this.options = options;
    this.inferred = options.columns === null || options.columns.length === 0;
    if (!this.inferred) {
      this.setColumns(options.columns as string[]);
    } else if (this.rows.length > 0) {
      this.inferColumns(this.rows.toArray());
    }
    this.viewport.style.maxHeight = `${options.height ?? 320}px`;
    if (resized || restart) {
      const kept = restart ? [] : this.rows.toArray();
      this.rows = new Window(Math.max(1, options.maxRows));
      this.rows.extend(kept);
      this.coalescer.dispose();
      this.coalescer = this.makeCoalescer();
    }
    if (restart) {
      this.statusLine.node.firstChild!.textContent = `LiveTable · ${options.stream}`;
      this.start();
    }
    this.renderRows();
  }

  dispose(): void {
    this.disposed = true;
    this.subscription?.dispose();
    this.coalescer.dispose();
  }

  /** Re-render after the node was attached or resized. */
  refresh(): void {
    if (this.follow) {
      this.viewport.scrollTop = this.viewport.scrollHeight;
    }
    this.renderRows();
  }

  private makeCoalescer(): Coalescer<StreamMessage> {
    return new Coalescer<StreamMessage>({
      capacity: Math.max(1, this.options.maxRows),
      schedule: animationFrameScheduler(),
      render: batch => this.render(batch)
    });
  }

  private onGap(gap: GapMessage): void {
    this.gaps += 1;
    this.missed += gap.count ?? 0;
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
    this.sizer.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    if (this.follow) {
      this.viewport.scrollTop = this.viewport.scrollHeight;
    }
    this.renderRows();
    this.updateFooter();
  }

  private inferColumns(items: StreamMessage[]): void {
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
    this.columns = [...columns];
    const template = `repeat(${Math.max(1, columns.length)}, minmax(5em, 1fr))`;
    this.header.style.gridTemplateColumns = template;
    this.body.style.setProperty('--nbws-columns', template);
    this.header.replaceChildren(...columns.map(c => el('div', 'nbws-cell', c)));
  }

  private onScroll(): void {
    const v = this.viewport;
    this.follow = v.scrollTop + v.clientHeight >= v.scrollHeight - ROW_HEIGHT;
    if (!this.scrollPending) {
      this.scrollPending = true;
      requestAnimationFrame(() => {
        this.scrollPending = false;
        this.renderRows();
      });
    }
  }

  /** Build DOM rows for what is in view only. */
  private renderRows(): void {
    const total = this.rows.length;
    const height = this.viewport.clientHeight || 320;
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(total, first + Math.ceil(height / ROW_HEIGHT) + 2 * OVERSCAN);
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const message = this.rows.at(i);
      const row = el('div', 'nbws-row');
      row.dataset.offset = String(message.offset);
      for (const column of this.columns) {
        const text = formatValue(fieldOf(message, column));
        const cell = el('div', 'nbws-cell', text);
        cell.title = text;
        row.appendChild(cell);
      }
      fragment.appendChild(row);
    }
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    this.body.replaceChildren(fragment);
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
    if (this.gaps) {
      parts.push(`${count(this.gaps)} gaps (${count(this.missed)} messages)`);
    }
    const last = this.subscription?.resume.lastOffset;
    if (last !== null && last !== undefined) {
      parts.push(`offset ${last}`);
    }
    this.footer.textContent = parts.join(' · ');
    this.node.dataset.rows = String(this.rows.length);
    this.node.dataset.received = String(received);
    this.node.dataset.skipped = String(skipped);
    this.node.dataset.missed = String(this.missed);
  }
}
