import { Batch, Coalescer, GapTally } from '../coalesce';

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

describe('Coalescer: dropping early', () => {
  it('keeps only the newest capacity items of pushAll and counts the rest as skipped', () => {
    const frames = manualFrames();
    const batches: Batch<number>[] = [];
    const c = new Coalescer<number>({
      capacity: 3,
      schedule: frames.schedule,
      render: b => batches.push(b)
    });
    c.push(-1);
    c.pushAll(Array.from({ length: 1000 }, (_, i) => i));
    expect(frames.queued()).toBe(1);
    frames.frame();
    expect(batches).toEqual([{ items: [997, 998, 999], skipped: 998, received: 1001 }]);
    expect(c.totalSkipped + c.capacity).toBe(c.totalReceived);
  });

  it('counts skipped items that were never pushed, and renders for them', () => {
    const frames = manualFrames();
    const batches: Batch<string>[] = [];
    const c = new Coalescer<string>({
      capacity: 2,
      schedule: frames.schedule,
      render: b => batches.push(b)
    });
    c.skip(40);
    c.push('newest');
    frames.frame();
    expect(batches).toEqual([{ items: ['newest'], skipped: 40, received: 41 }]);
    c.skip(0);
    expect(frames.queued()).toBe(0);
  });
});

describe('GapTally', () => {
  it('adds up dropped, conflated and other gaps, reporting drop totals as they grow', () => {
    const reports: [number, number][] = [];
    const tally = new GapTally((d, c) => reports.push([d, c]));
    expect(tally.summary()).toBe('');
    tally.add({ count: 100, reason: 'dropped' });
    tally.add({ count: 5, reason: 'conflated' });
    tally.add({ count: 7, reason: 'history' });
    tally.add({ count: null, reason: 'epoch' });
    tally.add({ count: 1_000, reason: 'dropped' });
    expect([tally.notices, tally.missed, tally.dropped, tally.conflated, tally.other]).toEqual([
      5, 1112, 1100, 5, 7
    ]);
    expect(reports).toEqual([
      [100, 0],
      [100, 5],
      [1100, 5]
    ]);
    expect(tally.summary()).toBe(
      '5 gaps: 1,100 dropped, 5 conflated, 7 not delivered (1,112 messages)'
    );
  });

  it('says what one gap of unknown size was', () => {
    const tally = new GapTally(() => undefined);
    tally.add({ count: null, reason: 'epoch' });
    expect(tally.summary()).toBe('1 gap: 0 not delivered (0 messages)');
  });
});
