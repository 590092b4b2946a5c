import { extent, M4 } from '../decimate';

const f64 = (values: number[]): Float64Array => Float64Array.from(values);

/** A deterministic pseudo-random sequence (no Math.random in tests). */
function noise(n: number, seed = 1): number[] {
  let state = seed;
  return Array.from({ length: n }, () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648 - 0.5;
  });
}

/**
 * The reference: for each pixel column (by x value), the sorted union of each series'
 * first, last, lowest and highest non-NaN index, written the slow and obvious way.
 */
function reference(x: number[], ys: number[][], width: number): number[] {
  const finite = x.filter(v => !Number.isNaN(v));
  const x0 = Math.min(...finite);
  const x1 = Math.max(...finite);
  const columns = new Map<number, number[]>();
  x.forEach((v, i) => {
    if (Number.isNaN(v)) {
      return;
    }
    const c = x1 > x0 ? Math.min(width - 1, Math.floor(((v - x0) * width) / (x1 - x0))) : 0;
    columns.set(c, [...(columns.get(c) ?? []), i]);
  });
  const out: number[] = [];
  for (const c of [...columns.keys()].sort((a, b) => a - b)) {
    const picked = new Set<number>();
    for (const y of ys) {
      const idx = (columns.get(c) as number[]).filter(i => !Number.isNaN(y[i]));
      if (idx.length === 0) {
        continue;
      }
      const lo = idx.reduce((a, b) => (y[b] < y[a] ? b : a));
      const hi = idx.reduce((a, b) => (y[b] > y[a] ? b : a));
      [idx[0], idx[idx.length - 1], lo, hi].forEach(i => picked.add(i));
    }
    out.push(...[...picked].sort((a, b) => a - b));
  }
  return out;
}

describe('M4', () => {
  it('passes a window that fits through untouched (same arrays, exact)', () => {
    const x = f64([1, 2, 3]);
    const y = f64([5, NaN, 7]);
    const out = new M4(1).run(x, [y], 3);
    expect(out.decimated).toBe(false);
    expect(out.length).toBe(3);
    expect(out.x).toBe(x);
    expect(out.ys[0]).toBe(y);
  });

  it('keeps the first, last, lowest and highest point of every pixel column', () => {
    const n = 10_000;
    const xs = Array.from({ length: n }, (_, i) => 1000 + i * 0.5);
    const ys = noise(n);
    const out = new M4(1).run(f64(xs), [f64(ys)], 97);
    expect(out.decimated).toBe(true);
    const expected = reference(xs, [ys], 97);
    expect(Array.from(out.x)).toEqual(expected.map(i => xs[i]));
    expect(Array.from(out.ys[0])).toEqual(expected.map(i => ys[i]));
    expect(out.length).toBeLessThanOrEqual(4 * 97);
  });

  it('keeps every series extremes with a shared x (union of indices, in order)', () => {
    const n = 3000;
    const xs = Array.from({ length: n }, (_, i) => i);
    const a = noise(n, 7);
    const b = noise(n, 11).map(v => v * 100);
    const out = new M4(2).run(f64(xs), [f64(a), f64(b)], 50);
    const expected = reference(xs, [a, b], 50);
    expect(Array.from(out.x)).toEqual(expected.map(i => xs[i]));
    expect(Array.from(out.ys[0])).toEqual(expected.map(i => a[i]));
    expect(Array.from(out.ys[1])).toEqual(expected.map(i => b[i]));
    expect(extent([out.ys[1]], out.length)).toEqual(extent([f64(b)], n));
  });

  it('never picks a NaN y, and a column of NaN only yields nothing', () => {
    const n = 400;
    const xs = Array.from({ length: n }, (_, i) => i);
    // The first half is missing; the second half has NaN holes at its lows.
    const ys = xs.map(i => (i < n / 2 || i % 7 === 0 ? NaN : Math.sin(i)));
    const out = new M4(1).run(f64(xs), [f64(ys)], 10);
    expect(Array.from(out.ys[0]).some(Number.isNaN)).toBe(false);
    expect(Math.min(...Array.from(out.x))).toBeGreaterThanOrEqual(n / 2);
    expect(Array.from(out.x)).toEqual(reference(xs, [ys], 10).map(i => xs[i]));
  });

  it('leaves out points whose x is NaN', () => {
    const xs = [0, NaN, 1, 2, NaN, 3, 4, 5, 6, 7];
    const ys = [0, 99, 1, 2, -99, 3, 4, 5, 6, 7];
    const out = new M4(1).run(f64(xs), [f64(ys)], 2);
    expect(Array.from(out.ys[0])).not.toContain(99);
    expect(Array.from(out.ys[0])).not.toContain(-99);
    expect(Array.from(out.x)).toEqual(reference(xs, [ys], 2).map(i => xs[i]));
  });

  it('puts points of equal x in one column: at most first, min, max, last', () => {
    const ys = [3, 9, -4, 2, 8, 1];
    const out = new M4(1).run(f64(ys.map(() => 42)), [f64(ys)], 3);
    expect(Array.from(out.x)).toEqual([42, 42, 42, 42]);
    expect(Array.from(out.ys[0])).toEqual([3, 9, -4, 1]);
  });

  it('cuts by index when x decreases somewhere, still bounded and in order', () => {
    const n = 1000;
    const xs = noise(n, 3);
    const ys = noise(n, 5);
    const out = new M4(1).run(f64(xs), [f64(ys)], 20);
    expect(out.length).toBeLessThanOrEqual(80);
    // Every kept point is an input point, in input order, and the extremes survive.
    let from = 0;
    for (let j = 0; j < out.length; j++) {
      const i = ys.indexOf(out.ys[0][j], from);
      expect(i).toBeGreaterThanOrEqual(from);
      expect(xs[i]).toBe(out.x[j]);
      from = i + 1;
    }
    expect(extent([out.ys[0]], out.length)).toEqual(extent([f64(ys)], n));
  });

  it('returns nothing for a window with no finite x', () => {
    const out = new M4(1).run(f64([NaN, NaN, NaN]), [f64([1, 2, 3])], 1);
    expect(out.length).toBe(0);
  });

  it('bounds a 100,000-point window to four points per pixel column', () => {
    const n = 100_000;
    const x = new Float64Array(n).map((_, i) => i);
    const y = Float64Array.from(noise(n));
    const m4 = new M4(1);
    const started = performance.now();
    const out = m4.run(x, [y], 600);
    const ms = performance.now() - started;
    expect(out.length).toBeLessThanOrEqual(2400);
    expect(out.length).toBeGreaterThan(600);
    expect(extent([out.ys[0]], out.length)).toEqual(extent([y], n));
    // Printed, not asserted (the machine is shared).
    console.log(`M4 of ${n} points to 600 columns: ${ms.toFixed(2)} ms (first run)`);
  });

  it('rejects a y column count other than its series', () => {
    expect(() => new M4(2).run(f64([1]), [f64([1])], 10)).toThrow(RangeError);
    expect(() => new M4(0)).toThrow(RangeError);
  });
});

describe('extent', () => {
  it('skips NaN and infinite values', () => {
    expect(extent([f64([NaN, 3, Infinity, -1, -Infinity])], 5)).toEqual([-1, 3]);
    expect(extent([f64([NaN])], 1)).toEqual([NaN, NaN]);
    expect(extent([f64([1, 2, 3])], 2)).toEqual([1, 2]);
  });
});
