import { ChartData } from '../chart';
import { StreamMessage } from '../protocol';

function message(offset: number, payload: unknown): StreamMessage {
  return { type: 'message', stream: 's', offset, epoch: 'e', time: 1000 + offset, payload };
}

const xs = (data: ChartData, columns: number): number[] =>
  Array.from(data.frame(columns).data[0] as Float64Array);

describe('ChartData', () => {
  it('keeps the newest window of points and the newest message for the render record', () => {
    const data = new ChartData('t', ['v'], 3);
    const applied = data.apply([0, 1, 2, 3, 4].map(i => message(i, { t: i, v: i * i })));
    expect(applied).toBe(5);
    expect(data.length).toBe(3);
    expect(xs(data, 100)).toEqual([2, 3, 4]);
    expect(Array.from(data.frame(100).data[1] as Float64Array)).toEqual([4, 9, 16]);
    expect([data.newestOffset, data.newestTime]).toEqual([4, 1004]);
  });

  it('skips messages without a numeric x and keeps a missing y as NaN', () => {
    const data = new ChartData('t', ['v', 'w'], 10);
    data.apply([message(0, { t: 'soon', v: 1 }), message(1, { t: 5, w: 2 })]);
    expect(data.skipped).toBe(1);
    const frame = data.frame(100);
    expect(frame.length).toBe(1);
    expect(Array.from(frame.data[1] as Float64Array)).toEqual([NaN]);
    expect(frame.y).toEqual({ min: 2, max: 2 });
    expect(data.newestOffset).toBe(1);
  });

  it('hands out the rings themselves when the window fits the plot', () => {
    const data = new ChartData('offset', ['v'], 50);
    data.apply([...Array(20).keys()].map(i => message(i, { v: 10 - i })));
    const frame = data.frame(20);
    expect(frame.decimated).toBe(false);
    expect((frame.data[0] as Float64Array).buffer).toBe(data.ring.view(0).buffer);
    expect(frame.x).toEqual({ min: 0, max: 19 });
    expect(frame.y).toEqual({ min: -9, max: 10 });
  });

  it('decimates a window wider than the plot, keeping its ranges', () => {
    const data = new ChartData('offset', ['v'], 10_000);
    data.apply([...Array(10_000).keys()].map(i => message(i, { v: Math.sin(i / 50) * i })));
    const frame = data.frame(100);
    expect(frame.decimated).toBe(true);
    expect(frame.length).toBeLessThanOrEqual(400);
    expect(frame.x).toEqual({ min: 0, max: 9999 });
    const all = data.ring.view(1);
    expect(frame.y).toEqual({ min: Math.min(...all), max: Math.max(...all) });
  });

  it('gives one point or equal x a scale of some width', () => {
    const data = new ChartData('t', ['v'], 5);
    data.apply([message(0, { t: 7, v: 1 }), message(1, { t: 7, v: 2 })]);
    expect(data.frame(100).x).toEqual({ min: 6, max: 8 });
  });

  it('measures a frame of a 100,000-point window (printed, not asserted)', () => {
    const window = 100_000;
    const data = new ChartData('offset', ['v'], window);
    let offset = 0;
    const batch = (n: number): StreamMessage[] =>
      Array.from({ length: n }, () => {
        const i = offset++;
        return message(i, { v: Math.sin(i / 100) });
      });
    data.apply(batch(window));
    // 50k msg/s at 60 frames/s: ~833 new points a frame.
    const frames = 120;
    const inputs = Array.from({ length: frames }, () => batch(833));
    let applyMs = 0;
    let frameMs = 0;
    let points = 0;
    for (const input of inputs) {
      const t0 = performance.now();
      data.apply(input);
      const t1 = performance.now();
      points = data.frame(1200).length;
      frameMs += performance.now() - t1;
      applyMs += t1 - t0;
    }
    expect(points).toBeLessThanOrEqual(4 * 1200);
    console.log(
      `(under jest's vm, several times slower than node or a browser) 100,000-point window, 833 new points a frame, 1200 px: apply ${(
        applyMs / frames
      ).toFixed(
        3
      )} ms + decimate ${(frameMs / frames).toFixed(3)} ms per frame, ${points} points to uPlot`
    );
  });
});
