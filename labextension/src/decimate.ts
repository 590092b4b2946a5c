/**
 * M4 decimation: a line chart of n points on w pixel columns looks the same drawn from
 * at most four points per column and series (the first, last, lowest and highest), so a
 * 100,000-point window costs the canvas what a w-point one does. Windows that fit (n <= w)
 * are passed through untouched.
 *
 * Columns are cut by x value when x never decreases (time, offsets: what a streaming chart
 * has), else by index. Several series share one x array (uPlot's aligned data), so a
 * column keeps the union of every series' four indices, in index order. NaN y values are
 * missing values: they are never a first/last/min/max; a column where every series is NaN
 * yields nothing. Points whose x is NaN are left out. Pure; outputs are preallocated and
 * reused from one frame to the next.
 */

/** What `M4.run` produced: views valid until the next `run`. */
export interface Decimated {
  /** Points in `x` and each of `ys`. */
  length: number;
  x: Float64Array;
  ys: Float64Array[];
  /** False when the input fitted and `x`/`ys` are the input itself. */
  decimated: boolean;
}

/** A reusable M4 decimator for `series` y columns. */
export class M4 {
  private outX = new Float64Array(0);
  private outYs: Float64Array[] = [];
  private readonly picked: Int32Array;
  private readonly first: Int32Array;
  private readonly last: Int32Array;
  private readonly lo: Int32Array;
  private readonly hi: Int32Array;

  constructor(readonly series: number) {
    if (!(series >= 1)) {
      throw new RangeError('M4 needs at least one series');
    }
    this.picked = new Int32Array(4 * series);
    this.first = new Int32Array(series);
    this.last = new Int32Array(series);
    this.lo = new Int32Array(series);
    this.hi = new Int32Array(series);
  }

  /**
   * Decimate `x`/`ys` (equal lengths) to `width` pixel columns.
   *
   * Returns the input itself when it has at most `width` points (exact), otherwise at
   * most `4 * series * width` points that keep each column's extremes and ends.
   */
  run(x: Float64Array, ys: readonly Float64Array[], width: number): Decimated {
    const n = x.length;
    const columns = Math.max(1, Math.floor(width));
    if (ys.length !== this.series) {
      throw new RangeError(`expected ${this.series} y columns, got ${ys.length}`);
    }
    if (n <= columns) {
      return { length: n, x, ys: ys as Float64Array[], decimated: false };
    }
    this.reserve(4 * this.series * columns);
    let length = this.byValue(x, ys, columns);
    if (length < 0) {
      length = this.byIndex(x, ys, columns);
    }
    return {
      length,
      x: this.outX.subarray(0, length),
      ys: this.outYs.map(y => y.subarray(0, length)),
      decimated: true
    };
  }

  private reserve(points: number): void {
    if (this.outX.length < points) {
      this.outX = new Float64Array(points);
      this.outYs = [];
      for (let s = 0; s < this.series; s++) {
        this.outYs.push(new Float64Array(points));
      }
    }
  }

  /** Columns by x value; -1 when x decreases somewhere (then columns by index). */
  private byValue(x: Float64Array, ys: readonly Float64Array[], columns: number): number {
    const n = x.length;
    let x0 = NaN;
    let x1 = NaN;
    for (let i = 0; i < n; i++) {
      const v = x[i];
      if (v === v) {
        if (x0 !== x0) {
          x0 = v;
        } else if (v < x1) {
          return -1;
        }
        x1 = v;
      }
    }
    if (x0 !== x0) {
      return 0;
    }
    const scale = x1 > x0 ? columns / (x1 - x0) : 0;
    let out = 0;
    let column = -1;
    this.reset();
    for (let i = 0; i < n; i++) {
      const v = x[i];
      if (v !== v) {
        continue;
      }
      let c = Math.floor((v - x0) * scale);
      if (c >= columns) {
        c = columns - 1;
      }
      if (c !== column) {
        out = this.emit(x, ys, out);
        column = c;
      }
      this.take(ys, i);
    }
    return this.emit(x, ys, out);
  }

  /** Columns of equal point counts. */
  private byIndex(x: Float64Array, ys: readonly Float64Array[], columns: number): number {
    const n = x.length;
    let out = 0;
    let column = -1;
    this.reset();
    for (let i = 0; i < n; i++) {
      if (x[i] !== x[i]) {
        continue;
      }
      const c = Math.floor((i * columns) / n);
      if (c !== column) {
        out = this.emit(x, ys, out);
        column = c;
      }
      this.take(ys, i);
    }
    return this.emit(x, ys, out);
  }

  private reset(): void {
    this.first.fill(-1);
  }

  /** Point `i` joins the current column. */
  private take(ys: readonly Float64Array[], i: number): void {
    for (let s = 0; s < this.series; s++) {
      const y = ys[s][i];
      if (y !== y) {
        continue;
      }
      if (this.first[s] < 0) {
        this.first[s] = i;
        this.lo[s] = i;
        this.hi[s] = i;
      } else {
        const column = ys[s];
        if (y < column[this.lo[s]]) {
          this.lo[s] = i;
        } else if (y > column[this.hi[s]]) {
          this.hi[s] = i;
        }
      }
      this.last[s] = i;
    }
  }

  /** Write the current column's points (union of indices, ascending) at `out`. */
  private emit(x: Float64Array, ys: readonly Float64Array[], out: number): number {
    const picked = this.picked;
    let k = 0;
    for (let s = 0; s < this.series; s++) {
      if (this.first[s] < 0) {
        continue;
      }
      k = insert(picked, k, this.first[s]);
      k = insert(picked, k, this.lo[s]);
      k = insert(picked, k, this.hi[s]);
      k = insert(picked, k, this.last[s]);
    }
    for (let j = 0; j < k; j++) {
      const i = picked[j];
      this.outX[out] = x[i];
      for (let s = 0; s < this.series; s++) {
        this.outYs[s][out] = ys[s][i];
      }
      out += 1;
    }
    this.reset();
    return out;
  }
}

/** Insert `value` into the sorted `list[0:k]` unless present; returns the new k. */
function insert(list: Int32Array, k: number, value: number): number {
  let j = k;
  while (j > 0 && list[j - 1] > value) {
    j -= 1;
  }
  if (j > 0 && list[j - 1] === value) {
    return k;
  }
  list.copyWithin(j + 1, j, k);
  list[j] = value;
  return k + 1;
}

/**
 * The finite min and max over `columns[*][0:length]` ([NaN, NaN] when there is none):
 * after M4 the extremes of the whole window are among its output points.
 */
export function extent(columns: readonly Float64Array[], length: number): [number, number] {
  let min = Infinity;
  let max = -Infinity;
  for (const column of columns) {
    const n = Math.min(length, column.length);
    for (let i = 0; i < n; i++) {
      const v = column[i];
      if (v - v !== 0) {
        continue; // NaN or infinite
      }
      if (v < min) {
        min = v;
      }
      if (v > max) {
        max = v;
      }
    }
  }
  return min <= max ? [min, max] : [NaN, NaN];
}
