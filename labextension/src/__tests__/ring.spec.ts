import { ColumnRing, Ring } from '../ring';

describe('ColumnRing', () => {
  it('holds the newest capacity rows, oldest first, in every column', () => {
    const ring = new ColumnRing(2, 3);
    for (let i = 0; i < 5; i++) {
      ring.push(i, 10 * i);
    }
    expect(ring.length).toBe(3);
    expect(ring.pushed).toBe(5);
    expect(Array.from(ring.view(0))).toEqual([2, 3, 4]);
    expect(Array.from(ring.view(1))).toEqual([20, 30, 40]);
    expect(ring.at(0, 0)).toBe(2);
    expect(ring.last(1)).toBe(40);
  });

  it('gives the newest n as one contiguous view at every head position', () => {
    const capacity = 7;
    const ring = new ColumnRing(1, capacity);
    for (let i = 0; i < 3 * capacity; i++) {
      ring.push(i);
      for (let n = 0; n <= ring.length; n++) {
        const expected = Array.from({ length: n }, (_, k) => i - n + 1 + k);
        expect(Array.from(ring.view(0, n))).toEqual(expected);
      }
    }
  });

  it('hands out views into its own storage (no copy)', () => {
    const ring = new ColumnRing(1, 4);
    ring.push(1);
    ring.push(2);
    const a = ring.view(0);
    const b = ring.view(0);
    expect(a.buffer).toBe(b.buffer);
    expect(a.byteOffset).toBe(b.byteOffset);
  });

  it('clamps n to what it holds', () => {
    const ring = new ColumnRing(1, 4);
    expect(ring.view(0).length).toBe(0);
    ring.push(5);
    expect(Array.from(ring.view(0, 10))).toEqual([5]);
    expect(Array.from(ring.view(0, -1))).toEqual([]);
    expect(ring.last(0)).toBe(5);
  });

  it('keeps NaN for a missing value and for columns push does not give', () => {
    const ring = new ColumnRing(3, 2);
    ring.push(1, NaN);
    expect(ring.at(1, 0)).toBeNaN();
    expect(ring.at(2, 0)).toBeNaN();
  });

  it('writes a row column by column, visible only after commit', () => {
    const ring = new ColumnRing(2, 2);
    ring.write(0, 1);
    ring.write(1, 2);
    expect(ring.length).toBe(0);
    ring.commit();
    expect([ring.at(0, 0), ring.at(1, 0)]).toEqual([1, 2]);
  });

  it('throws outside what it holds, empties on clear, rejects a capacity below one', () => {
    const ring = new ColumnRing(1, 2);
    ring.push(1);
    expect(() => ring.at(0, 1)).toThrow(RangeError);
    ring.clear();
    expect(ring.length).toBe(0);
    expect(ring.last(0)).toBeNaN();
    expect(() => new ColumnRing(1, 0)).toThrow(RangeError);
    expect(() => new ColumnRing(0, 3)).toThrow(RangeError);
  });
});

describe('Ring', () => {
  it('keeps the newest items and numbers each by arrival', () => {
    const ring = new Ring<string>(3);
    ['a', 'b', 'c', 'd', 'e'].forEach(x => ring.push(x));
    expect(ring.toArray()).toEqual(['c', 'd', 'e']);
    expect(ring.firstSeq).toBe(2);
    expect([ring.seqAt(0), ring.seqAt(2)]).toEqual([2, 4]);
    expect(ring.last()).toBe('e');
  });

  it('returns what a push evicted', () => {
    const ring = new Ring<number>(2);
    expect(ring.push(1)).toBeUndefined();
    expect(ring.push(2)).toBeUndefined();
    expect(ring.push(3)).toBe(1);
  });

  it('stores only the last capacity items of a long extend, counting all of them', () => {
    const ring = new Ring<number>(3);
    ring.push(-1);
    const items = Array.from({ length: 10_000 }, (_, i) => i);
    ring.extend(items);
    expect(ring.toArray()).toEqual([9997, 9998, 9999]);
    expect(ring.pushed).toBe(10_001);
    expect(ring.seqAt(2)).toBe(10_000);
  });

  it('throws outside what it holds and empties on clear', () => {
    const ring = new Ring<number>(2);
    expect(ring.last()).toBeUndefined();
    ring.push(1);
    expect(() => ring.at(1)).toThrow(RangeError);
    expect(() => ring.at(-1)).toThrow(RangeError);
    ring.clear();
    expect(ring.length).toBe(0);
    expect(ring.pushed).toBe(0);
    expect(() => new Ring<number>(0)).toThrow(RangeError);
  });
});
