/**
 * The Streams side panel: every stream with rate, offset, subscribers and drops from
 * `GET nbws/api/streams`, polled once a second while the panel is visible, and what this
 * page's connection carries (one WebSocket for every view on the page, page.ts). Clicking
 * a stream opens a live table of it in the main area, subscribed through the same
 * connection as the notebook's widgets.
 */

import { MainAreaWidget } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { diagnose, requestJson } from './connection';
import type { Endpoint } from './link';
import { pageConnections } from './page';
import { count, el } from './dom';
import { StreamInfo } from './monitor';
import { formatRate } from './protocol';
import { LiveTable } from './table';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<path class="jp-icon3" fill="#616161" d="M3 17h3l3-9 4 12 3-8 2 5h3v2h-4.3L16 16.6 13 24 9 13.4 7.4 19H3z"/>
<path class="jp-icon3" fill="#616161" d="M3 4h18v2H3zM3 8h5v2H3zM16 8h5v2h-5z"/></svg>`;

export const streamsIcon = new LabIcon({ name: 'nbws:streams', svgstr: ICON_SVG });

const POLL_MS = 1000;

/** The left-area panel listing streams. */
export class StreamsPanel extends Widget {
  private readonly list: HTMLTableSectionElement;
  private readonly message: HTMLDivElement;
  private readonly page: HTMLDivElement;
  private timer: ReturnType<typeof setInterval> | null = null;
  private busy = false;

  constructor(private readonly open: (stream: string) => void) {
    super();
    this.id = 'nbws-streams';
    this.addClass('nbws-streams-panel');
    this.title.icon = streamsIcon;
    this.title.caption = 'nbws streams';
    const heading = el('div', 'nbws-panel-heading', 'Streams');
    this.message = el('div', 'nbws-panel-message', 'loading…');
    this.page = el('div', 'nbws-panel-page');
    const table = el('table', 'nbws-streams-table');
    const head = el('thead');
    const row = el('tr');
    for (const name of ['stream', 'msg/s', 'offset', 'subs', 'drops']) {
      row.appendChild(el('th', undefined, name));
    }
    head.appendChild(row);
    this.list = el('tbody');
    table.append(head, this.list);
    this.node.append(heading, this.message, table, this.page);
  }

  protected onAfterShow(msg: Message): void {
    this.startPolling();
  }

  protected onAfterAttach(msg: Message): void {
    if (this.isVisible) {
      this.startPolling();
    }
  }

  protected onAfterHide(msg: Message): void {
    this.stopPolling();
  }

  protected onBeforeDetach(msg: Message): void {
    this.stopPolling();
  }

  dispose(): void {
    this.stopPolling();
    super.dispose();
  }

  private startPolling(): void {
    if (this.timer === null) {
      this.timer = setInterval(() => void this.refresh(), POLL_MS);
      void this.refresh();
    }
  }

  private stopPolling(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Fetch the list once and redraw it. */
  async refresh(): Promise<void> {
    if (this.busy) {
      return;
    }
    this.busy = true;
    try {
      const response = await requestJson<{ streams: StreamInfo[] }>('nbws/api/streams');
      if (response.ok && response.body) {
        this.showStreams(response.body.streams);
      } else {
        this.showProblem(await diagnose(null));
      }
    } catch {
      this.showProblem(await diagnose(null));
    } finally {
      this.busy = false;
      this.showPage();
    }
  }

  /** What this page's connections carry (the counters page.ts keeps). */
  private showPage(): void {
    const connections = pageConnections().filter(c => c.stats.views > 0);
    let views = 0;
    let streams = 0;
    for (const connection of connections) {
      views += connection.stats.views;
      streams += connection.stats.streams;
    }
    this.page.textContent = connections.length
      ? `this page: ${count(views)} view${views === 1 ? '' : 's'} on ${count(streams)} stream${
          streams === 1 ? '' : 's'
        } over ${connections.length} connection${connections.length === 1 ? '' : 's'} (${connections
          .map(c => `${c.endpoint.label}, ${c.endpoint.transport}`)
          .join('; ')})`
      : 'this page: no live views';
    this.node.dataset.pageConnections = String(connections.length);
  }

  private showProblem(text: string): void {
    this.message.textContent = text;
    this.message.classList.add('nbws-mod-problem');
  }

  private showStreams(streams: StreamInfo[]): void {
    this.message.classList.remove('nbws-mod-problem');
    this.message.textContent = streams.length
      ? `${streams.length} stream${streams.length === 1 ? '' : 's'} · click one to watch it`
      : 'no streams yet: publish to one (nbws.stream, the REST API or nbws/ws)';
    this.list.replaceChildren(
      ...streams.map(info => {
        const row = el('tr', 'nbws-streams-row');
        row.dataset.stream = info.name;
        row.title = `open a live table of ${info.name}`;
        const name = el('td', 'nbws-streams-name');
        const link = el('button', 'nbws-link', info.name);
        link.type = 'button';
        link.addEventListener('click', () => this.open(info.name));
        name.appendChild(link);
        row.append(
          name,
          el('td', undefined, formatRate(info.rate)),
          el('td', undefined, info.next > 0 ? String(info.next - 1) : '–'),
          el('td', undefined, count(info.subscribers)),
          el('td', undefined, count(info.drops))
        );
        return row;
      })
    );
  }
}

/** The main-area content that shows one stream live. */
export class StreamViewer extends Widget {
  private readonly table: LiveTable;

  constructor(
    readonly stream: string,
    endpoint?: Endpoint
  ) {
    super();
    this.addClass('nbws-stream-viewer');
    this.table = new LiveTable({ stream, columns: null, maxRows: 1000, height: 600, endpoint });
    this.node.appendChild(this.table.node);
    this.table.start();
  }

  protected onAfterShow(msg: Message): void {
    this.table.refresh();
  }

  protected onResize(msg: Widget.ResizeMessage): void {
    this.table.refresh();
  }

  dispose(): void {
    this.table.dispose();
    super.dispose();
  }
}

/** A main-area tab with a live view of `stream`. */
export function createStreamViewer(
  stream: string,
  endpoint?: Endpoint
): MainAreaWidget<StreamViewer> {
  const content = new StreamViewer(stream, endpoint);
  const widget = new MainAreaWidget({ content });
  widget.id = `nbws-stream-${stream.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  widget.title.label = `stream: ${stream}`;
  widget.title.icon = streamsIcon;
  widget.title.closable = true;
  return widget;
}
