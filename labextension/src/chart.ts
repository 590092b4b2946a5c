/**
 * A streaming line chart on uPlot (a canvas chart made for streaming data): one x
 * field, several y fields, a sliding window of the newest points, redrawn at most
 * once per animation frame.
 *
 * The render budget: points live in `Float64Array` rings (`ChartData`), so a frame
 * allocates no arrays and copies nothing; a window wider than the plot is M4-decimated
 * to its pixel columns, so a 100,000-point window draws like a 600-point one; uPlot gets
 * the result with `setData(data, false)` and explicit scales (computed from the same
 * points), never a rebuild or a pass of its own over the data.
 */

import uPlot from 'uplot';

import { animationFrameScheduler, Batch, Coalescer, GapTally } from './coalesce';
import { Decimated, extent, M4 } from './decimate';
import { count, el, StatusLine } from './dom';
import { recordDrops, recordRender } from './pagestats';
import { fieldOf, formatValue, numericValue, StreamMessage } from './protocol';
import { jupyterPageEndpoint } from './connection';
import type { Endpoint } from './link';
import { pageConnection, ViewSubscription } from './page';
import { ColumnRing } from './ring';

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

/** One frame's input for uPlot: aligned columns and the scales to show them with. */
export interface ChartFrame {
  data: uPlot.AlignedData;
  /** Points in each column. */
  length: number;
  x: { min: number; max: number };
  /** NaN when no y value is finite. */
  y: { min: number; max: number };
  decimated: boolean;
}

/**
 * The chart's window as rings (x, then each y) and what a frame hands uPlot. Pure (no
 * DOM), so its per-frame cost can be measured in a unit test.
 */
export class ChartData {
  readonly ring: ColumnRing;
  private readonly m4: M4;
  /** The newest point's message, for `recordRender`. */
  newestOffset = -1;
  newestTime = 0;
  /** Messages whose x was not a number (not plotted). */
  skipped = 0;

  constructor(
    readonly x: string,
    readonly y: readonly string[],
    window: number
  ) {
    this.ring = new ColumnRing(1 + y.length, Math.max(2, window));
    this.m4 = new M4(Math.max(1, y.length));
  }

  get length(): number {
    return this.ring.length;
  }

  /** Append the points of `messages`; returns how many were plotted. */
  apply(messages: readonly StreamMessage[]): number {
    const ring = this.ring;
    const ys = this.y;
    let applied = 0;
    for (const message of messages) {
      const x = numericValue(fieldOf(message, this.x));
      if (Number.isNaN(x)) {
        this.skipped += 1;
        continue;
      }
      ring.write(0, x);
      for (let i = 0; i < ys.length; i++) {
        ring.write(1 + i, numericValue(fieldOf(message, ys[i])));
      }
      ring.commit();
      this.newestOffset = message.offset;
      this.newestTime = message.time;
      applied += 1;
    }
    return applied;
  }

  /** The window for a plot `columns` pixels wide (views into the rings or the M4 output). */
  frame(columns: number): ChartFrame {
    const ring = this.ring;
    const ys: Float64Array[] = [];
    for (let i = 0; i < this.y.length; i++) {
      ys.push(ring.view(1 + i));
    }
    const out: Decimated =
      ys.length > 0
        ? this.m4.run(ring.view(0), ys, columns)
        : { length: ring.length, x: ring.view(0), ys: [], decimated: false };
    let [xMin, xMax] = extent([out.x], out.length);
    if (!(xMax > xMin)) {
      // One point, or all at the same x: give the scale some width.
      xMin -= 1;
      xMax += 1;
    }
    const [yMin, yMax] = extent(out.ys, out.length);
    return {
      data: [out.x, ...out.ys] as unknown as uPlot.AlignedData,
      length: out.length,
      x: { min: xMin, max: xMax },
      y: { min: yMin, max: yMax },
      decimated: out.decimated
    };
  }
}

export class LiveChart {
  readonly node: HTMLDivElement;
  private readonly statusLine: StatusLine;
  private readonly plotArea: HTMLDivElement;
  private readonly footer: HTMLDivElement;
  private readonly notice: HTMLDivElement;
  private points: ChartData;
  private coalescer: Coalescer<StreamMessage>;
  private subscription: ViewSubscription | null = null;
  private plot: uPlot | null = null;
  private timeAxis: boolean | null = null;
  private resizeObserver: ResizeObserver | null = null;
  /** The plot area's width as the ResizeObserver last saw it (0: not yet). */
  private areaWidth = 0;
  private gaps: GapTally;
  private disposed = false;

  constructor(private options: ChartOptions) {
    this.node = el('div', 'nbws-view nbws-chart');
    this.statusLine = new StatusLine(`LiveChart · ${options.stream}`);
    this.plotArea = el('div', 'nbws-chart-plot');
    this.notice = el('div', 'nbws-notice');
    this.notice.hidden = true;
    this.footer = el('div', 'nbws-footer');
    this.node.append(this.statusLine.node, this.plotArea, this.notice, this.footer);
    this.points = new ChartData(options.x, options.y, options.window);
    this.gaps = this.makeTally();
    this.coalescer = this.makeCoalescer();
    if (typeof ResizeObserver !== 'undefined') {
      this.resizeObserver = new ResizeObserver(entries => {
        // Sizes come from the observer (after layout), never read back in a frame.
        this.areaWidth = entries[entries.length - 1].contentRect.width;
        this.resize();
      });
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
        batch: messages => this.coalescer.pushAll(messages),
        skipped: n => this.coalescer.skip(n),
        gap: g => {
          this.gaps.add(g);
          this.notice.hidden = false;
          this.notice.textContent = `gap: ${g.count ?? 'unknown number of'} messages not delivered (${g.reason})`;
          this.updateFooter();
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
      this.points = new ChartData(options.x, options.y, options.window);
      if (old.stream !== options.stream) {
        this.gaps = this.makeTally();
      }
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

  private makeTally(): GapTally {
    return new GapTally((dropped, conflated) =>
      recordDrops('chart', this.options.stream, dropped, conflated)
    );
  }

  private size(): { width: number; height: number } {
    // Read once, when the plot is made, if the observer has not reported yet.
    const area = this.areaWidth || this.plotArea.clientWidth || 600;
    const width = Math.max(200, Math.floor(area));
    const height = Math.max(120, this.options.height ?? 300);
    return { width, height };
  }

  private render(batch: Batch<StreamMessage>): void {
    if (this.disposed) {
      return;
    }
    if (this.points.apply(batch.items) > 0) {
      if (this.timeAxis === null) {
        this.timeAxis = looksLikeEpochSeconds(this.points.ring.at(0, 0));
      }
      this.draw();
      recordRender('chart', this.options.stream, {
        offset: this.points.newestOffset,
        time: this.points.newestTime
      });
    }
    this.updateFooter();
  }

  private draw(): void {
    if (this.plot === null) {
      const { width, height } = this.size();
      const opts: uPlot.Options = {
        width,
        height,
        title: this.options.title,
        // Both ranges are set from the frame's points: uPlot does no pass of its own.
        scales: { x: { time: this.timeAxis === true, auto: false }, y: { auto: false } },
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
      const first = this.points.frame(width * pixelRatio());
      this.plot = new uPlot(opts, first.data, this.plotArea);
      this.show(first);
      return;
    }
    // The plotting area in canvas pixels: the most points a line can show.
    const columns = this.plot.bbox.width || this.plot.width * pixelRatio();
    const frame = this.points.frame(columns);
    const plot = this.plot;
    plot.batch(() => {
      plot.setData(frame.data, false);
      this.show(frame);
    });
  }

  private show(frame: ChartFrame): void {
    const plot = this.plot as uPlot;
    plot.setScale('x', frame.x);
    if (frame.y.min <= frame.y.max) {
      const [min, max] = uPlot.rangeNum(frame.y.min, frame.y.max, 0.1, true);
      plot.setScale('y', { min: min ?? frame.y.min, max: max ?? frame.y.max });
    }
  }

  private updateFooter(): void {
    const points = this.points.length;
    const parts = [
      `${count(points)} points (window ${count(this.options.window)})`,
      `${count(this.coalescer.totalReceived)} received`
    ];
    if (this.coalescer.totalSkipped) {
      parts.push(`${count(this.coalescer.totalSkipped)} skipped while rendering was behind`);
    }
    if (this.points.skipped) {
      parts.push(`${count(this.points.skipped)} without a numeric ${this.options.x}`);
    }
    const gaps = this.gaps.summary();
    if (gaps) {
      parts.push(gaps);
    }
    if (points > 0) {
      const ring = this.points.ring;
      const lastYs = this.options.y.map((name, i) => {
        const y = ring.last(1 + i);
        return `${name}=${Number.isNaN(y) ? '–' : formatValue(y)}`;
      });
      parts.push(`last ${this.options.x}=${formatValue(ring.last(0))} ${lastYs.join(' ')}`);
    }
    this.footer.textContent = parts.join(' · ');
    const data = this.node.dataset;
    data.points = String(points);
    data.received = String(this.coalescer.totalReceived);
    data.skipped = String(this.coalescer.totalSkipped);
    data.missed = String(this.gaps.missed);
    data.dropped = String(this.gaps.dropped);
    data.conflated = String(this.gaps.conflated);
  }
}

function pixelRatio(): number {
  return typeof devicePixelRatio === 'number' && devicePixelRatio > 0 ? devicePixelRatio : 1;
}
