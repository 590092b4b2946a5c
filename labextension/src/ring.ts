/**
 * Fixed-capacity ring buffers for what the views keep between frames.
 *
 * A chart keeps its window as `Float64Array` columns (`ColumnRing`): a push is two
 * stores, nothing is allocated after construction, and the newest `n` values of a column
 * are always one contiguous `subarray` (each value is written twice, at `i` and
 * `i + capacity`, so the window never wraps). That view goes to uPlot or the decimator
 * as is: no `toArray()` copy per frame. A table keeps its rows in a `Ring` of objects
 * that numbers every item it was given (`seq`), so a DOM row can stay with the message it
 * shows while the window slides.
 */

/**
 * `columns` numeric columns of the newest `capacity` rows, oldest first. Write a row's
 * values with `write(column, value)` (every column, NaN for a missing value), then
 * `commit()`.
 */
export class ColumnRing {
  readonly capacity: number;
  private readonly data: Float64Array[];
  private head = 0;
  private count = 0;
  private total = 0;

  constructor(columns: number, capacity: number) {
    if (!(capacity >= 1) || !Number.isFinite(capacity)) {
      throw new RangeError('capacity must be at least 1');
    }
    if (!(columns >= 1)) {
      throw new RangeError('a ColumnRing needs at least one column');
    }
    this.capacity = Math.floor(capacity);
    this.data = [];
    for (let c = 0; c < columns; c++) {
      this.data.push(new Float64Array(2 * this.capacity).fill(NaN));
    }
  }

  get columns(): number {
    return this.data.length;
  }

  /** Rows held (at most `capacity`). */
  get length(): number {
    return this.count;
  }

  /** Rows committed since construction or `clear()` (evicted ones included). */
  get pushed(): number {
    return this.total;
  }

  /** Set `column` of the row being written (the next `commit()`). */
  write(column: number, value: number): void {
    const buffer = this.data[column];
    buffer[this.head] = value;
    buffer[this.head + this.capacity] = value;
  }

  /** The row being written is complete: it becomes the newest, the oldest may go. */
  commit(): void {
    this.head = this.head + 1 === this.capacity ? 0 : this.head + 1;
    if (this.count < this.capacity) {
      this.count += 1;
    }
    this.total += 1;
  }

  /** Append one row (a convenience over `write` + `commit`). */
  push(...values: number[]): void {
    for (let c = 0; c < this.data.length; c++) {
      this.write(c, c < values.length ? values[c] : NaN);
    }
    this.commit();
  }

  /**
   * The newest `n` values of `column` (default: all held), oldest first, as a view into
   * the ring (no copy). Valid until the next `commit()` (which may overwrite it).
   */
  view(column: number, n: number = this.count): Float64Array {
    const k = Math.max(0, Math.min(Math.floor(n), this.count));
    const end = this.head + this.capacity;
    return this.data[column].subarray(end - k, end);
  }

  /** Value `i` of `column` (0 = oldest held). */
  at(column: number, i: number): number {
    if (!(i >= 0 && i < this.count)) {
      throw new RangeError(`index ${i} out of range`);
    }
    return this.data[column][this.head + this.capacity - this.count + i];
  }

  /** The newest value of `column` (NaN when empty). */
  last(column: number): number {
    return this.count === 0 ? NaN : this.data[column][this.head + this.capacity - 1];
  }

  clear(): void {
    for (const buffer of this.data) {
      buffer.fill(NaN);
    }
    this.head = 0;
    this.count = 0;
    this.total = 0;
  }
}

/**
 * The newest `capacity` items, oldest first, each numbered by arrival (`seqAt`): push is
 * O(1) and never allocates; a number stays with its item until the item is evicted.
 */
export class Ring<T> {
  readonly capacity: number;
  private readonly items: (T | undefined)[];
  private head = 0;
  private count = 0;
  private total = 0;

  constructor(capacity: number) {
    if (!(capacity >= 1) || !Number.isFinite(capacity)) {
      throw new RangeError('capacity must be at least 1');
    }
    this.capacity = Math.floor(capacity);
    this.items = new Array(this.capacity).fill(undefined);
  }

  get length(): number {
    return this.count;
  }

  /** Items pushed since construction or `clear()`: the next item's `seq`. */
  get pushed(): number {
    return this.total;
  }

  /** The `seq` of the oldest item held. */
  get firstSeq(): number {
    return this.total - this.count;
  }

  /** Append one item; returns the item it evicted (undefined while not full). */
  push(item: T): T | undefined {
    const evicted = this.count === this.capacity ? this.items[this.head] : undefined;
    this.items[this.head] = item;
    this.head = this.head + 1 === this.capacity ? 0 : this.head + 1;
    if (this.count < this.capacity) {
      this.count += 1;
    }
    this.total += 1;
    return evicted;
  }

  /** Append many, oldest first; only the last `capacity` are stored at all. */
  extend(items: readonly T[]): void {
    const from = Math.max(0, items.length - this.capacity);
    this.total += from;
    for (let i = from; i < items.length; i++) {
      this.push(items[i]);
    }
  }

  /** Item `i` (0 = oldest held). */
  at(i: number): T {
    if (!(i >= 0 && i < this.count)) {
      throw new RangeError(`index ${i} out of range`);
    }
    let index = this.head - this.count + i;
    if (index < 0) {
      index += this.capacity;
    }
    return this.items[index] as T;
  }

  /** The arrival number of item `i` (0 = oldest held). */
  seqAt(i: number): number {
    return this.total - this.count + i;
  }

  /** The newest item, or undefined when empty. */
  last(): T | undefined {
    return this.count === 0 ? undefined : this.at(this.count - 1);
  }

  /** The items held, oldest first (a copy: for option changes, not for frames). */
  toArray(): T[] {
    const out: T[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) {
      out[i] = this.at(i);
    }
    return out;
  }

  clear(): void {
    this.items.fill(undefined);
    this.head = 0;
    this.count = 0;
    this.total = 0;
  }
}
