/**
 * Coalescing of high-rate input into at most one render per animation frame.
 *
 * A stream may deliver 10k messages per second; rendering each one would freeze the
 * page. Items are kept in a bounded ring (the newest `capacity` items win, because a
 * view never shows more than that many) and handed to `render` once per scheduled
 * frame. Items pushed out of the ring before they were ever rendered are counted as
 * skipped, so a view can say how far behind it fell. Pure: the scheduler is injected
 * (requestAnimationFrame in the browser, a manual queue in tests).
 *
 * This is where a view drops early: what falls out of the ring was never formatted,
 * drawn or kept, and `skip(n)` counts messages a caller dropped before even decoding
 * them. `GapTally` keeps a view's totals of the server's gap notices.
 */

/** Runs `callback` later, once (e.g. `requestAnimationFrame`). */
export type Scheduler = (callback: () => void) => void;

/** What one render receives. */
export interface Batch<T> {
  /** The items to render, oldest first (at most `capacity`). */
  items: T[];
  /** Items received since the last render that were dropped unseen. */
  skipped: number;
  /** Items received since the last render (rendered + skipped). */
  received: number;
}

export interface CoalescerOptions<T> {
  /** Most items kept between two renders; older ones are dropped. */
  capacity: number;
  /** How to defer the flush (once per frame). */
  schedule: Scheduler;
  /** Called with each batch. */
  render: (batch: Batch<T>) => void;
}

/** A bounded ring that flushes into `render` once per scheduled frame. */
export class Coalescer<T> {
  private readonly ring: (T | undefined)[];
  private start = 0;
  private size = 0;
  private skipped = 0;
  private received = 0;
  private scheduled = false;
  private disposed = false;
  private readonly schedule: Scheduler;
  private readonly render: (batch: Batch<T>) => void;

  /** Items dropped unseen since this coalescer was created. */
  totalSkipped = 0;
  /** Items received since this coalescer was created. */
  totalReceived = 0;
  /** Renders done. */
  renders = 0;

  constructor(options: CoalescerOptions<T>) {
    if (!(options.capacity >= 1)) {
      throw new RangeError('capacity must be at least 1');
    }
    this.ring = new Array(Math.floor(options.capacity));
    this.schedule = options.schedule;
    this.render = options.render;
  }

  /** Most items kept between renders. */
  get capacity(): number {
    return this.ring.length;
  }

  /** Items waiting for the next render. */
  get pending(): number {
    return this.size;
  }

  /** Add one item; drops the oldest pending item when the ring is full. */
  push(item: T): void {
    if (this.disposed) {
      return;
    }
    const capacity = this.ring.length;
    if (this.size === capacity) {
      this.ring[this.start] = item;
      this.start = (this.start + 1) % capacity;
      this.skipped += 1;
      this.totalSkipped += 1;
    } else {
      this.ring[(this.start + this.size) % capacity] = item;
      this.size += 1;
    }
    this.received += 1;
    this.totalReceived += 1;
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => this.flush());
    }
  }

  /** Add many, oldest first: only the newest `capacity` are kept, the rest counted. */
  pushAll(items: readonly T[]): void {
    const from = Math.max(0, items.length - this.ring.length);
    if (from > 0) {
      this.skip(from);
    }
    for (let i = from; i < items.length; i++) {
      this.push(items[i]);
    }
  }

  /**
   * Count `n` items received and dropped unseen without being pushed (e.g. the older
   * part of a batch that was never decoded); they count as skipped since the last render.
   */
  skip(n: number): void {
    if (this.disposed || !(n > 0)) {
      return;
    }
    this.received += n;
    this.totalReceived += n;
    this.skipped += n;
    this.totalSkipped += n;
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => this.flush());
    }
  }

  /** Render what is pending now (the scheduler calls this; safe to call any time). */
  flush(): void {
    this.scheduled = false;
    if (this.disposed || this.received === 0) {
      return;
    }
    const capacity = this.ring.length;
    const items: T[] = new Array(this.size);
    for (let i = 0; i < this.size; i++) {
      const index = (this.start + i) % capacity;
      items[i] = this.ring[index] as T;
      this.ring[index] = undefined;
    }
    const batch: Batch<T> = { items, skipped: this.skipped, received: this.received };
    this.start = 0;
    this.size = 0;
    this.skipped = 0;
    this.received = 0;
    this.renders += 1;
    this.render(batch);
  }

  /** Drop pending items and ignore later pushes. */
  dispose(): void {
    this.disposed = true;
    this.ring.fill(undefined);
    this.size = 0;
  }
}

/**
 * The browser's frame scheduler. Hidden tabs get no animation frames, so there a
 * short timer drains the ring instead (it stays bounded either way).
 */
export function animationFrameScheduler(): Scheduler {
  return (callback: () => void) => {
    const hidden = typeof document !== 'undefined' && document.hidden;
    if (!hidden && typeof requestAnimationFrame === 'function') {
      requestAnimationFrame(() => callback());
    } else {
      setTimeout(callback, 100);
    }
  };
}

/** What a gap notice says (a `GapMessage` has these fields). */
export interface GapNotice {
  count: number | null;
  reason: string;
}

/**
 * A view's totals of the server's gap notices: messages its policy dropped or
 * conflated, and those missing for other reasons (history trimmed, epoch changed).
 * `changed` is called with the dropped/conflated totals whenever one of them grows.
 */
export class GapTally {
  /** Gap notices received. */
  notices = 0;
  /** Messages all notices together say were not delivered. */
  missed = 0;
  dropped = 0;
  conflated = 0;
  /** Not delivered for another reason (history, epoch). */
  other = 0;

  constructor(private readonly changed: (dropped: number, conflated: number) => void) {}

  add(gap: GapNotice): void {
    const n = gap.count ?? 0;
    this.notices += 1;
    this.missed += n;
    if (gap.reason === 'dropped') {
      this.dropped += n;
    } else if (gap.reason === 'conflated') {
      this.conflated += n;
    } else {
      this.other += n;
    }
    if (n > 0 && (gap.reason === 'dropped' || gap.reason === 'conflated')) {
      this.changed(this.dropped, this.conflated);
    }
  }

  /** Footer text, e.g. "2 gaps: 120 dropped, 4 conflated" ('' before the first gap). */
  summary(): string {
    if (this.notices === 0) {
      return '';
    }
    const parts: string[] = [];
    if (this.dropped) {
      parts.push(`${this.dropped.toLocaleString('en-US')} dropped`);
    }
    if (this.conflated) {
      parts.push(`${this.conflated.toLocaleString('en-US')} conflated`);
    }
    if (this.other || parts.length === 0) {
      parts.push(`${this.other.toLocaleString('en-US')} not delivered`);
    }
    const gaps = `${this.notices.toLocaleString('en-US')} gap${this.notices === 1 ? '' : 's'}`;
    return `${gaps}: ${parts.join(', ')} (${this.missed.toLocaleString('en-US')} messages)`;
  }
}
