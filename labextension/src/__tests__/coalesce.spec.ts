import { Batch, Coalescer, Window } from '../coalesce';

/** A scheduler that runs callbacks only when the test says a frame happened. */
function manualFrames(): {
  schedule: (cb: () => void) => void;
  frame: () => void;
  queued: () => number;
} {
  let callbacks: (() => void)[] = [];
  return {
    schedule: cb => callbacks.push(cb),
    frame: () => {
      const now = callbacks;
      callbacks = [];
      now.forEach(cb => cb());
    },
    queued: () => callbacks.length
  };
}

describe('Coalescer', () => {
  it('renders nothing until a frame, then everything pushed since, once', () => {
    const frames = manualFrames();
    const batches: Batch<number>[] = [];
    const c = new Coalescer<number>({
      capacity: 10,
      schedule: frames.schedule,
      render: b => batches.push(b)
    });
    c.push(1);
    c.push(2);
    c.push(3);
    expect(batches).toHaveLength(0);
    expect(frames.queued()).toBe(1);
    frames.frame();
    expect(batches).toEqual([{ items: [1, 2, 3], skipped: 0, received: 3 }]);
    expect(c.pending).toBe(0);
  });

  it('schedules one flush per frame however many items arrive', () => {
    const frames = manualFrames();
    const c = new Coalescer<number>({
      capacity: 100,
      schedule: frames.schedule,
      render: () => undefined
    });
    for (let i = 0; i < 10000; i++) {
      c.push(i);
    }
    expect(frames.queued()).toBe(1);
    frames.frame();
    expect(c.renders).toBe(1);
    c.push(1);
    expect(frames.queued()).toBe(1);
  });

  it('keeps the newest items when behind and counts the skipped ones', () => {
    const frames = manualFrames();
    const batches: Batch<number>[] = [];
    const c = new Coalescer<number>({
      capacity: 3,
      schedule: frames.schedule,
      render: b => batches.push(b)
    });
    for (let i = 0; i < 10; i++) {
      c.push(i);
    }
    expect(c.pending).toBe(3);
    frames.frame();
    expect(batches[0]).toEqual({ items: [7, 8, 9], skipped: 7, received: 10 });
    expect(c.totalSkipped).toBe(7);
    expect(c.totalReceived).toBe(10);
  });

  it('holds at most capacity items at 10k pushes between frames', () => {
    const frames = manualFrames();
    let largest = 0;
    const c = new Coalescer<number>({
      capacity: 1000,
      schedule: frames.schedule,
      render: b => {
        largest = Math.max(largest, b.items.length);
      }
    });
    let next = 0;
    for (let frame = 0; frame < 5; frame++) {
      for (let i = 0; i < 10000; i++) {
        c.push(next++);
        expect(c.pending).toBeLessThanOrEqual(1000);
      }
      frames.frame();
    }
    expect(largest).toBe(1000);
    expect(c.totalSkipped).toBe(5 * 9000);
  });

  it('resets the per-batch counters after each render', () => {
    const frames = manualFrames();
    const batches: Batch<string>[] = [];
    const c = new Coalescer<string>({
      capacity: 2,
      schedule: frames.schedule,
      render: b => batches.push(b)
    });
    ['a', 'b', 'c'].forEach(x => c.push(x));
    frames.frame();
    c.push('d');
    frames.frame();
    expect(batches[1]).toEqual({ items: ['d'], skipped: 0, received: 1 });
    expect(c.totalSkipped).toBe(1);
  });

  it('ignores pushes and pending flushes after dispose', () => {
    const frames = manualFrames();
    const render = jest.fn();
    const c = new Coalescer<number>({ capacity: 5, schedule: frames.schedule, render });
    c.push(1);
    c.dispose();
    c.push(2);
    frames.frame();
    expect(render).not.toHaveBeenCalled();
  });

  it('rejects a capacity below one', () => {
    expect(
      () =>
        new Coalescer<number>({ capacity: 0, schedule: () => undefined, render: () => undefined })
    ).toThrow(RangeError);
  });
});

describe('Window', () => {
  it('keeps the newest capacity items, oldest first, and reports evictions', () => {
    const w = new Window<number>(3);
    expect(w.extend([1, 2])).toBe(0);
    expect(w.toArray()).toEqual([1, 2]);
    expect(w.extend([3, 4, 5])).toBe(2);
    expect(w.toArray()).toEqual([3, 4, 5]);
    expect(w.at(0)).toBe(3);
    expect(w.at(2)).toBe(5);
    expect(w.length).toBe(3);
  });

  it('throws for an index outside what it holds', () => {
    const w = new Window<number>(2);
    w.extend([1]);
    expect(() => w.at(1)).toThrow(RangeError);
    expect(() => w.at(-1)).toThrow(RangeError);
  });

  it('empties on clear', () => {
    const w = new Window<number>(2);
    w.extend([1, 2, 3]);
    w.clear();
    expect(w.length).toBe(0);
    w.extend([9]);
    expect(w.toArray()).toEqual([9]);
  });
});
