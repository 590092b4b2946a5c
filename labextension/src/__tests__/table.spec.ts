import { OVERSCAN, poolSize, ROW_HEIGHT, RowPool, visibleRange } from '../table';

/** Record what a `place` call asks of the DOM. */
function placed(pool: RowPool, first: number, n: number): { shown: number[]; hidden: number[] } {
  const shown: number[] = [];
  const hidden: number[] = [];
  pool.place(
    first,
    n,
    (_slot, key) => shown.push(key),
    slot => hidden.push(slot)
  );
  return { shown, hidden };
}

describe('visibleRange', () => {
  const height = 10 * ROW_HEIGHT;

  it('follows the newest rows whatever the scroll position says', () => {
    expect(visibleRange(1000, 0, height, true)).toEqual({
      first: 1000 - 10 - OVERSCAN,
      last: 1000
    });
    expect(visibleRange(5, 0, height, true)).toEqual({ first: 0, last: 5 });
  });

  it('shows the rows at the scroll position with overscan either side', () => {
    const top = 100 * ROW_HEIGHT;
    expect(visibleRange(1000, top, height, false)).toEqual({
      first: 100 - OVERSCAN,
      last: 100 + 10 + OVERSCAN
    });
    expect(visibleRange(1000, 0, height, false)).toEqual({ first: 0, last: 10 + 2 * OVERSCAN });
  });

  it('never starts past the end when the window shrank under the scroll position', () => {
    const range = visibleRange(20, 500 * ROW_HEIGHT, height, false);
    expect(range.last).toBe(20);
    expect(range.first).toBe(20 - 10 - OVERSCAN);
    expect(visibleRange(0, 123, height, false)).toEqual({ first: 0, last: 0 });
  });

  it('always fits the pool sized for the viewport height', () => {
    for (const total of [0, 1, 15, 16, 17, 100, 10_000]) {
      for (const top of [0, 7, ROW_HEIGHT * 3.5, ROW_HEIGHT * 9000]) {
        for (const follow of [true, false]) {
          for (const h of [0, 1, height, height + 1]) {
            const { first, last } = visibleRange(total, top, h, follow);
            expect(last - first).toBeLessThanOrEqual(poolSize(h));
            expect(first).toBeGreaterThanOrEqual(0);
            expect(last).toBeLessThanOrEqual(total);
          }
        }
      }
    }
  });
});

describe('RowPool', () => {
  it('fills each slot once, then touches only rows that came into view', () => {
    const pool = new RowPool(8);
    expect(placed(pool, 0, 5)).toEqual({ shown: [0, 1, 2, 3, 4], hidden: [] });
    // One new message while following: one row written, the others stay where they are.
    const next = placed(pool, 1, 5);
    expect(next.shown).toEqual([5]);
    expect(next.hidden).toEqual([pool.slotOf(0)]);
    expect(placed(pool, 1, 5)).toEqual({ shown: [], hidden: [] });
  });

  it('keeps a row in the same slot for as long as it is in view', () => {
    const pool = new RowPool(7);
    const slotOf42: number[] = [];
    for (let first = 36; first <= 42; first++) {
      placed(pool, first, 7);
      slotOf42.push([...Array(7).keys()].find(s => pool.keyOf(s) === 42) as number);
    }
    expect(new Set(slotOf42.filter(s => s !== undefined)).size).toBe(1);
  });

  it('rewrites every slot when the view jumps further than the pool', () => {
    const pool = new RowPool(4);
    placed(pool, 0, 4);
    const jump = placed(pool, 100, 4);
    expect(jump.shown).toEqual([100, 101, 102, 103]);
    expect(jump.hidden).toEqual([]); // every slot was reused, none left empty
    const shrink = placed(pool, 100, 2);
    expect(shrink.shown).toEqual([]);
    expect(shrink.hidden.sort()).toEqual([pool.slotOf(102), pool.slotOf(103)].sort());
  });

  it('hides every used slot on reset and then shows all rows again', () => {
    const pool = new RowPool(3);
    placed(pool, 0, 2);
    const hidden: number[] = [];
    pool.reset(slot => hidden.push(slot));
    expect(hidden).toEqual([0, 1]);
    expect(placed(pool, 0, 2).shown).toEqual([0, 1]);
  });

  it('refuses more rows than slots', () => {
    expect(() => placed(new RowPool(2), 0, 3)).toThrow(RangeError);
    expect(() => new RowPool(0)).toThrow(RangeError);
  });
});
