/**
 * Coalescing of high-rate input into at most one render per animation frame.
 *
 * A stream may deliver 10k messages per second; rendering each one would freeze the
 * page. Items are kept in a bounded ring (the newest `capacity` items win, because a
 * view never shows more than that many) and handed to `render` once per scheduled
 * frame. Items pushed out of the ring before they were ever rendered are counted as
 * skipped, so a view can say how far behind it fell. Pure: the scheduler is injected
 * (requestAnimationFrame in the browser, a manual queue in tests).
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

/**
 * Bounded FIFO of the newest `capacity` items (what a table or chart shows).
 * Appending is O(1); `toArray()` is oldest first.
 */
export class Window<T> {
  private readonly ring: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(capacity: number) {
    if (!(capacity >= 1)) {
      throw new RangeError('capacity must be at least 1');
    }
    this.ring = new Array(Math.floor(capacity));
  }

  get capacity(): number {
    return this.ring.length;
  }

  get length(): number {
    return this.count;
  }

  /** Append items; returns how many old items were evicted. */
  extend(items: T[]): number {
    let evicted = 0;
    const capacity = this.ring.length;
    for (const item of items) {
      if (this.count === capacity) {
        this.ring[this.start] = item;
        this.start = (this.start + 1) % capacity;
        evicted += 1;
      } else {
        this.ring[(this.start + this.count) % capacity] = item;
        this.count += 1;
      }
    }
    return evicted;
  }

  /** Item `i` (0 = oldest kept). */
  at(i: number): T {
    if (i < 0 || i >= this.count) {
      throw new RangeError(`index ${i} out of range`);
    }
    return this.ring[(this.start + i) % this.ring.length] as T;
  }

  toArray(): T[] {
    const out: T[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) {
      out[i] = this.at(i);
    }
    return out;
  }

  clear(): void {
    this.ring.fill(undefined);
    this.start = 0;
    this.count = 0;
  }
}
