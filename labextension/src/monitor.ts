/**
 * Live health of one stream: rate, offsets, lag, gap/drop notices, subscribers and
 * their policies. Rate and notices come from this view's own subscription; the
 * server-side numbers are polled once a second: from `GET nbws/api/streams/{name}` when
 * the view's server is the page's own Jupyter server, otherwise (kernel-hosted, relay, any
 * other server) with an nbws.v1 `info` request on the view's page connection
 * (`PageConnection.info`), so they show on every transport. REST is kept where it works
 * because it also lists the stream's subscriptions (the per-subscription table and this
 * view's own lag as the server counts it), which the `info` reply does not, and because
 * polling over the link would count as the page talking (a listening page would never
 * reach the server's `idle_timeout`). Without REST the table says it is unavailable.
 *
 * The render budget: the monitor keeps counters and figures, not messages. Of what
 * arrives between two frames it holds the newest message only (the one it shows), and
 * of the gap notices the newest `MAX_NOTICES`; both are formatted once per frame.
 */

import { animationFrameScheduler, Coalescer, GapTally } from './coalesce';
import { jupyterPageEndpoint, requestJson, streamPath } from './connection';
import { count, el, StatusLine } from './dom';
import { recordDrops, recordRender } from './pagestats';
import {
  formatRate,
  formatValue,
  GapMessage,
  InfoMessage,
  StreamMessage,
  SubscribedReply
} from './protocol';
import type { Endpoint } from './link';
import { InfoError, pageConnection, PageConnection, ViewSubscription } from './page';

/** One subscription as `GET nbws/api/streams/{name}` describes it. */
export interface SubscriptionInfo {
  connection: string;
  remote?: string;
  policy: string;
  mode?: string;
  lag: number;
  queue_messages: number;
  delivered: number;
  dropped: number;
  conflated?: number;
  gaps?: number;
}

/** `GET nbws/api/streams[/{name}]` entry. */
export interface StreamInfo {
  name: string;
  epoch: string;
  first: number;
  next: number;
  history_messages: number;
  history_bytes: number;
  rate: number;
  subscribers: number;
  drops: number;
  subscriptions?: SubscriptionInfo[];
}

/** The last message this view received. */
export interface Received {
  offset: number;
  epoch: string | null;
}

/** The offset cells of the monitor, all from one consistent reading. */
export interface OffsetFigures {
  offset: string;
  next: string;
  lag: string;
  /** Why the figures cannot be compared (two epochs), or ''. */
  note: string;
}

/**
 * The last/next offset and lag cells. They come from two sources: the last offset from
 * this view's subscription (live), `next` and the server's lag from `GET
 * nbws/api/streams/{name}` (polled, so up to a second old). Shown side by side, a stale
 * poll read "last offset 11843, next offset 10879". The server has at least what this view
 * received, so in one epoch `next` is at least `last + 1`; offsets of two epochs are not
 * compared at all.
 */
export function offsetFigures(
  info: StreamInfo | null,
  last: Received | null,
  ownLag: number | undefined
): OffsetFigures {
  const offset = last === null ? '–' : String(last.offset);
  if (info === null) {
    return { offset, next: last === null ? '–' : String(last.offset + 1), lag: '–', note: '' };
  }
  if (last !== null && last.epoch !== null && last.epoch !== info.epoch) {
    return {
      offset,
      next: String(info.next),
      lag: '–',
      note: `offsets of two epochs: this view's last message is from epoch ${last.epoch}, the server's figures from epoch ${info.epoch}`
    };
  }
  if (last === null) {
    return { offset, next: String(info.next), lag: `${count(ownLag ?? 0)} messages`, note: '' };
  }
  const stale = info.next <= last.offset;
  const next = Math.max(info.next, last.offset + 1);
  const lag = stale ? 0 : (ownLag ?? Math.max(0, next - 1 - last.offset));
  return { offset, next: String(next), lag: `${count(lag)} messages`, note: '' };
}

/** The figures of an `info` reply in the shape of a `GET nbws/api/streams` entry. */
export function streamInfoOf(reply: InfoMessage): StreamInfo {
  return {
    name: reply.stream,
    epoch: reply.epoch,
    first: reply.first,
    next: reply.next,
    history_messages: reply.history_messages,
    history_bytes: reply.history_bytes,
    rate: reply.rate,
    subscribers: reply.subscribers,
    drops: reply.drops
  };
}

/** `GET nbws/api/streams/{name}` of the page's own server, failing as `info` would. */
export async function restInfo(stream: string): Promise<StreamInfo> {
  let response;
  try {
    response = await requestJson<StreamInfo>(streamPath(stream));
  } catch {
    throw new InfoError('server gone');
  }
  if (response.ok && response.body) {
    return response.body;
  }
  if (response.status === 404) {
    throw new InfoError(`stream "${stream}" does not exist`, 'unknown-stream');
  }
  throw new InfoError(`HTTP ${response.status}`);
}

/**
 * The server's figures of one stream, asked with `ask` (REST or the page connection's
 * `info`), one request at a time. Pure apart from what `ask` does: time comes in as `now`.
 */
export class ServerFigures {
  /** The last figures (kept through a passing failure; null once the stream is gone). */
  info: StreamInfo | null = null;
  /** Why the last request failed, or ''. */
  error = '';
  private asking = false;
  private askedAt = -Infinity;

  constructor(private readonly ask: () => Promise<InfoMessage | StreamInfo>) {}

  /** Ask again, unless a request is out or one went out less than `minInterval` ms ago. */
  async refresh(now: number, minInterval: number): Promise<boolean> {
    if (this.asking || now - this.askedAt < minInterval) {
      return false;
    }
    this.asking = true;
    this.askedAt = now;
    try {
      const reply = await this.ask();
      this.info = 'type' in reply ? streamInfoOf(reply) : reply;
      this.error = '';
    } catch (error) {
      if (error instanceof InfoError && error.code === 'unknown-stream') {
        this.info = null;
      }
      this.error = `stream info: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      this.asking = false;
    }
    return true;
  }
}

const MAX_NOTICES = 20;
const POLL_MS = 1000;

export class StreamMonitor {
  readonly node: HTMLDivElement;
  private readonly statusLine: StatusLine;
  private readonly cells = new Map<string, HTMLElement>();
  private readonly notices: HTMLOListElement;
  private readonly subscriptionsTable: HTMLTableSectionElement;
  private readonly lastMessage: HTMLDivElement;
  private subscription: ViewSubscription | null = null;
  private coalescer: Coalescer<StreamMessage>;
  /** Gap notices not shown yet (the newest `MAX_NOTICES`), listed once per frame. */
  private pendingNotices: Coalescer<GapMessage>;
  private gaps: GapTally;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastTick = 0;
  private lastReceived = 0;
  private policy = '';
  private figures: ServerFigures = new ServerFigures(() =>
    Promise.reject(new Error('not started'))
  );
  /** The view's server is the page's own Jupyter server (its REST API can be used). */
  private ownServer = false;
  private connection = '';
  private disposed = false;

  constructor(
    private stream: string,
    /** The server to subscribe on (default: the page's own Jupyter server). */
    private readonly endpoint?: Endpoint
  ) {
    this.node = el('div', 'nbws-view nbws-monitor');
    this.statusLine = new StatusLine(`StreamMonitor · ${stream}`);
    const grid = el('dl', 'nbws-monitor-grid');
    const stats: [string, string][] = [
      ['rate', 'rate (this view)'],
      ['server_rate', 'rate (server)'],
      ['offset', 'last offset'],
      ['next', 'next offset'],
      ['lag', 'lag'],
      ['history', 'history'],
      ['subscribers', 'subscribers'],
      ['policy', 'policy'],
      ['drops', 'drops (all subscribers)'],
      ['gaps', 'gap notices (this view)'],
      ['epoch', 'epoch']
    ];
    for (const [key, label] of stats) {
      const value = el('dd', 'nbws-monitor-value', '–');
      value.dataset.stat = key;
      grid.append(el('dt', undefined, label), value);
      this.cells.set(key, value);
    }
    this.lastMessage = el('div', 'nbws-monitor-last');
    const table = el('table', 'nbws-monitor-subs');
    const head = el('thead');
    const headRow = el('tr');
    for (const title of ['connection', 'policy', 'lag', 'queued', 'delivered', 'dropped']) {
      headRow.appendChild(el('th', undefined, title));
    }
    head.appendChild(headRow);
    this.subscriptionsTable = el('tbody');
    table.append(head, this.subscriptionsTable);
    this.notices = el('ol', 'nbws-monitor-notices');
    this.node.append(
      this.statusLine.node,
      grid,
      this.lastMessage,
      el('div', 'nbws-monitor-heading', 'subscriptions'),
      table,
      el('div', 'nbws-monitor-heading', 'gap and drop notices'),
      this.notices
    );
    this.coalescer = new Coalescer<StreamMessage>({
      capacity: 1,
      schedule: animationFrameScheduler(),
      render: batch => {
        const last = batch.items[batch.items.length - 1];
        if (last === undefined) {
          return; // only skipped (never decoded) messages since the last frame
        }
        recordRender('monitor', this.stream, { offset: last.offset, time: last.time });
        this.lastMessage.textContent = `last message: offset ${last.offset} · ${formatValue(
          last.binary ? last.data : last.payload,
          300
        )}`;
        this.showOffsets();
        // The server's numbers are older than this message: refresh them now, at most
        // four times a second, instead of waiting for the next poll.
        const info = this.figures.info;
        if (info !== null && last.offset >= info.next) {
          void this.refreshInfo(250);
        }
      }
    });
    this.pendingNotices = this.makeNotices();
    this.gaps = this.makeTally();
  }

  start(): void {
    this.subscription?.dispose();
    const pageEndpoint = jupyterPageEndpoint();
    const endpoint = this.endpoint ?? pageEndpoint;
    this.ownServer = endpoint.key === pageEndpoint.key;
    const connection: PageConnection = pageConnection(endpoint);
    const stream = this.stream;
    this.figures = new ServerFigures(() =>
      this.ownServer ? restInfo(stream) : connection.info(stream)
    );
    this.subscription = connection.subscribe(
      this.stream,
      { history: 0 },
      {
        message: m => this.coalescer.push(m),
        batch: messages => this.coalescer.pushAll(messages),
        skipped: n => this.coalescer.skip(n),
        gap: g => this.onGap(g),
        subscribed: reply => this.onSubscribed(reply),
        control: message => {
          if (message.type === 'welcome') {
            this.connection = String(message.connection ?? '');
          }
        },
        status: s => this.statusLine.set(s)
      }
    );
    this.lastTick = performance.now();
    this.lastReceived = 0;
    if (this.timer === null) {
      this.timer = setInterval(() => void this.tick(), POLL_MS);
    }
    void this.tick();
  }

  /** Watch another stream. */
  setStream(stream: string): void {
    if (stream !== this.stream) {
      this.stream = stream;
      this.statusLine.node.firstChild!.textContent = `StreamMonitor · ${stream}`;
      this.notices.replaceChildren();
      this.pendingNotices.dispose();
      this.pendingNotices = this.makeNotices();
      this.gaps = this.makeTally();
      this.set('gaps', '–');
      this.start();
    }
  }

  dispose(): void {
    this.disposed = true;
    this.subscription?.dispose();
    this.coalescer.dispose();
    this.pendingNotices.dispose();
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private set(key: string, text: string): void {
    const cell = this.cells.get(key);
    if (cell) {
      cell.textContent = text;
    }
  }

  private onSubscribed(reply: SubscribedReply): void {
    this.policy = reply.policy;
    this.set('policy', `${reply.policy} (this view, buffer ${count(reply.max_messages)} messages)`);
    this.set('epoch', reply.epoch);
  }

  private makeNotices(): Coalescer<GapMessage> {
    return new Coalescer<GapMessage>({
      capacity: MAX_NOTICES,
      schedule: animationFrameScheduler(),
      render: batch => this.showNotices(batch.items)
    });
  }

  private makeTally(): GapTally {
    return new GapTally((dropped, conflated) =>
      recordDrops('monitor', this.stream, dropped, conflated)
    );
  }

  private onGap(gap: GapMessage): void {
    this.gaps.add(gap);
    this.pendingNotices.push(gap);
  }

  /** The newest notices first, at most `MAX_NOTICES` in the list. */
  private showNotices(gaps: readonly GapMessage[]): void {
    const time = new Date().toLocaleTimeString();
    const items = gaps.map(gap => {
      const range = gap.to === null ? `from ${gap.from}` : `${gap.from}-${gap.to - 1}`;
      return el(
        'li',
        undefined,
        `${time} gap (${gap.reason}): offsets ${range}, ${gap.count ?? '?'} messages`
      );
    });
    this.notices.prepend(...items.reverse());
    while (this.notices.childElementCount > MAX_NOTICES) {
      this.notices.lastElementChild?.remove();
    }
    const tally = this.gaps;
    const parts = [`${count(tally.dropped)} dropped`, `${count(tally.conflated)} conflated`];
    if (tally.other) {
      parts.push(`${count(tally.other)} other`);
    }
    this.set('gaps', `${count(tally.notices)} (${parts.join(', ')})`);
    const data = this.node.dataset;
    data.gaps = String(tally.notices);
    data.dropped = String(tally.dropped);
    data.conflated = String(tally.conflated);
  }

  private async tick(): Promise<void> {
    if (this.disposed) {
      return;
    }
    const now = performance.now();
    const received = this.coalescer.totalReceived;
    const seconds = (now - this.lastTick) / 1000;
    if (seconds > 0.2) {
      this.set('rate', `${formatRate((received - this.lastReceived) / seconds)} msg/s`);
      this.lastTick = now;
      this.lastReceived = received;
    }
    await this.refreshInfo(0);
  }

  /** The server's figures (ServerFigures), unless asked less than `minInterval` ms ago. */
  private async refreshInfo(minInterval: number): Promise<void> {
    const figures = this.figures;
    if ((await figures.refresh(performance.now(), minInterval)) && !this.disposed) {
      if (figures === this.figures) {
        this.showInfo();
      }
    }
  }

  /** Last offset, next offset and lag from one consistent reading (offsetFigures). */
  private showOffsets(): void {
    const resume = this.subscription?.resume;
    const last =
      resume && resume.lastOffset !== null
        ? { offset: resume.lastOffset, epoch: resume.epoch }
        : null;
    const mine = this.figures.info?.subscriptions?.find(s => s.connection === this.connection);
    const figures = offsetFigures(this.figures.info, last, mine?.lag);
    this.set('offset', figures.offset);
    this.set('next', figures.next);
    this.set('lag', figures.lag);
    this.node.dataset.offsetNote = figures.note;
    const next = this.cells.get('next');
    if (next) {
      next.title = figures.note;
    }
  }

  private showInfo(): void {
    const info = this.figures.info;
    const error = this.figures.error;
    this.node.dataset.infoError = error;
    if (info === null) {
      this.set('server_rate', error || '–');
      return;
    }
    this.set('server_rate', `${formatRate(info.rate)} msg/s`);
    const listed = info.subscriptions ?? null;
    const subs = listed ?? [];
    this.showOffsets();
    this.set(
      'history',
      `offsets ${info.first}-${info.next - 1} (${count(info.history_messages)} messages, ${count(info.history_bytes)} bytes)`
    );
    this.set('subscribers', count(info.subscribers));
    this.set('drops', count(info.drops));
    this.set('epoch', info.epoch);
    const others = subs.filter(s => s.connection !== this.connection).map(s => s.policy);
    if (subs.length > 0) {
      const own = this.policy ? [`${this.policy} (this view)`] : [];
      const rest = [...new Set(others)].map(
        p => `${p} (${others.filter(o => o === p).length} other)`
      );
      this.set('policy', [...own, ...rest].join(', '));
    }
    if (listed === null) {
      const row = el('tr');
      const cell = el(
        'td',
        'nbws-monitor-unavailable',
        `per-subscription figures are not available over ${this.endpoint?.transport ?? 'this'} connections (the info reply does not list subscriptions)`
      );
      cell.colSpan = 6;
      row.appendChild(cell);
      this.subscriptionsTable.replaceChildren(row);
      return;
    }
    this.subscriptionsTable.replaceChildren(
      ...subs.map(s => {
        const row = el('tr');
        row.classList.toggle('nbws-mod-self', s.connection === this.connection);
        for (const value of [
          s.connection,
          s.policy,
          s.lag,
          s.queue_messages,
          s.delivered,
          s.dropped
        ]) {
          row.appendChild(
            el('td', undefined, typeof value === 'number' ? count(value) : String(value))
          );
        }
        return row;
      })
    );
  }
}
