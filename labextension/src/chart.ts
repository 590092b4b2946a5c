/**
 * A streaming line chart on uPlot (a canvas chart made for streaming data): one x
 * field, several y fields, a sliding window of the newest points, redrawn at most
 * once per animation frame.
 */

import uPlot from 'uplot';

import { animationFrameScheduler, Batch, Coalescer, Window } from './coalesce';
import { count, el, StatusLine } from './dom';
import { fieldOf, formatValue, numericValue, StreamMessage } from './protocol';
import { jupyterPageEndpoint } from './connection';
import type { Endpoint } from './link';
import { pageConnection, ViewSubscription } from './page';

export interface ChartOptions {
  stream: string;
  x: string;
  y: string[];
  /** Points kept (the newest ones). */
  window: number;
  height?: number;
  title?: string;
  /** The server to subscribe on (default: the page's own Jupyter server). */
  endpoint?: Endpoint;
}

const SERIES_COLOURS = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf'
];

/** Epoch seconds between 2001 and 2286: treat the x axis as time. */
function looksLikeEpochSeconds(value: number): boolean {
  return value > 1e9 && value < 1e10;
}

export class LiveChart {
  readonly node: HTMLDivElement;
  private readonly statusLine: StatusLine;
  private readonly plotArea: HTMLDivElement;
  private readonly footer: HTMLDivElement;
  private readonly notice: HTMLDivElement;
  private xs: Window<number>;
  private ys: Window<number>[];
  private coalescer: Coalescer<StreamMessage>;
  private subscription: ViewSubscription | null = null;
  private plot: uPlot | null = null;
  private timeAxis: boolean | null = null;
  private resizeObserver: ResizeObserver | null = null;
  private skippedPoints = 0;
  private gaps = 0;
  private missed = 0;
  private disposed = false;

  constructor(private options: ChartOptions) {
    this.node = el('div', 'nbws-view nbws-chart');
    this.statusLine = new StatusLine(`LiveChart · ${options.stream}`);
    this.plotArea = el('div', 'nbws-chart-plot');
    this.notice = el('div', 'nbws-notice');
    this.notice.hidden = true;
    this.footer = el('div', 'nbws-footer');
    this.node.append(this.statusLine.node, this.plotArea, this.notice, this.footer);
    this.xs = new Window(Math.max(2, options.window));
    this.ys = options.y.map(() => new Window<number>(Math.max(2, options.window)));
    this.coalescer = this.makeCoalescer();
    if (typeof ResizeObserver !== 'undefined') {
      this.resizeObserver = new ResizeObserver(() => this.resize());
      this.resizeObserver.observe(this.plotArea);
    }
    this.updateFooter();
  }

  /** Subscribe, replaying the last `window` messages. */
  start(): void {
    this.subscription?.dispose();
    const connection = pageConnection(this.options.endpoint ?? jupyterPageEndpoint());
    this.subscription = connection.subscribe(
      this.options.stream,
      { history: this.options.window },
      {
        message: m => this.coalescer.push(m),
        gap: g => {
          this.gaps += 1;
          this.missed += g.count ?? 0;
          this.notice.hidden = false;
          this.notice.textContent = `gap: ${g.count ?? 'unknown number of'} messages not delivered (${g.reason})`;
        },
        status: s => this.statusLine.set(s)
      }
    );
  }

  /** Apply changed options; a new stream or new fields start over. */
  update(options: ChartOptions): void {
    const old = this.options;
    this.options = options;
    const fieldsChanged = old.x !== options.x || old.y.join('\u0000') !== options.y.join('\u0000');
    if (fieldsChanged || old.window !== options.window || old.stream !== options.stream) {
      this.xs = new Window(Math.max(2, options.window));
      this.ys = options.y.map(() => new Window<number>(Math.max(2, options.window)));
      this.coalescer.dispose();
      this.coalescer = this.makeCoalescer();
      this.plot?.destroy();
      this.plot = null;
      this.timeAxis = null;
      this.statusLine.node.firstChild!.textContent = `LiveChart · ${options.stream}`;
      this.start();
    }
    this.resize();
  }

  dispose(): void {
    this.disposed = true;
    this.subscription?.dispose();
    this.coalescer.dispose();
    this.resizeObserver?.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }

  /** Fit the plot to its box (after attach or resize). */
  resize(): void {
    if (this.plot !== null) {
      const { width, height } = this.size();
      if (width !== this.plot.width || height !== this.plot.height) {
        this.plot.setSize({ width, height });
      }
    }
  }

  private makeCoalescer(): Coalescer<StreamMessage> {
    return new Coalescer<StreamMessage>({
      capacity: Math.max(2, this.options.window),
      schedule: animationFrameScheduler(),
      render: batch => this.render(batch)
    });
  }

  private size(): { width: number; height: number } {
    const width = Math.max(200, this.plotArea.clientWidth || 600);
    const height = Math.max(120, this.options.height ?? 300);
    return { width, height };
  }

  private render(batch: Batch<StreamMessage>): void {
    if (this.disposed) {
      return;
    }
    const xs: number[] = [];
    const ys: number[][] = this.options.y.map(() => []);
    for (const message of batch.items) {
      const x = numericValue(fieldOf(message, this.options.x));
      if (Number.isNaN(x)) {
        this.skippedPoints += 1;
        continue;
      }
      xs.push(x);
      this.options.y.forEach((name, i) => {
        const y = numericValue(fieldOf(message, name));
        ys[i].push(Number.isNaN(y) ? (null as unknown as number) : y);
      });
    }
    if (xs.length > 0) {
      this.xs.extend(xs);
      this.ys.forEach((w, i) => w.extend(ys[i]));
      if (this.timeAxis === null) {
        this.timeAxis = looksLikeEpochSeconds(xs[0]);
      }
      this.draw();
    }
    this.updateFooter();
  }

  private draw(): void {
    const data = [this.xs.toArray(), ...this.ys.map(w => w.toArray())] as uPlot.AlignedData;
    if (this.plot === null) {
      const { width, height } = this.size();
      const opts: uPlot.Options = {
        width,
        height,
        title: this.options.title,
        scales: { x: { time: this.timeAxis === true } },
        series: [
          { label: this.options.x },
          ...this.options.y.map((name, i) => ({
            label: name,
            stroke: SERIES_COLOURS[i % SERIES_COLOURS.length],
            width: 1.5,
            spanGaps: true
          }))
        ],
        axes: [{}, {}],
        legend: { live: true }
      };
      this.plot = new uPlot(opts, data, this.plotArea);
    } else {
      this.plot.setData(data);
    }
  }

  private updateFooter(): void {
    const points = this.xs.length;
    const parts = [
      `${count(points)} points (window ${count(this.options.window)})`,
      `${count(this.coalescer.totalReceived)} received`
    ];
    if (this.coalescer.totalSkipped) {
      parts.push(`${count(this.coalescer.totalSkipped)} skipped while rendering was behind`);
    }
    if (this.skippedPoints) {
      parts.push(`${count(this.skippedPoints)} without a numeric ${this.options.x}`);
    }
    if (this.gaps) {
      parts.push(`${count(this.gaps)} gaps (${count(this.missed)} messages)`);
    }
    if (points > 0) {
      const lastX = this.xs.at(points - 1);
      const lastYs = this.ys.map((w, i) => {
        const y = w.at(points - 1);
        return `${this.options.y[i]}=${y === null || Number.isNaN(y) ? '–' : formatValue(y)}`;
      });
      parts.push(`last ${this.options.x}=${formatValue(lastX)} ${lastYs.join(' ')}`);
    }
    this.footer.textContent = parts.join(' · ');
    this.node.dataset.points = String(points);
    this.node.dataset.received = String(this.coalescer.totalReceived);
    this.node.dataset.skipped = String(this.coalescer.totalSkipped);
    this.node.dataset.missed = String(this.missed);
  }
}
