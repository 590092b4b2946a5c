import { FrameLog, FrameRecordJson } from '../frames';

function frame(seq: number | undefined, preview = `f${seq}`, direction = 'out'): FrameRecordJson {
  return {
    time: 100 + (seq ?? 0),
    direction,
    opcode: 1,
    opcode_name: 'TEXT',
    fin: true,
    rsv: [false, false, false],
    masked: true,
    length: preview.length,
    preview,
    preview_kind: 'text',
    seq
  };
}

function listed(log: FrameLog): (number | string)[] {
  return log.toArray().map(e => (e.kind === 'frame' ? e.index : `note: ${e.text}`));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

describe('FrameLog', () => {
  it('shows each frame once when the replay repeats what arrived live ("Run All")', () => {
    // The view listens from the start; the kernel answers its replay only after the
    // cells ran, so all 15 frames arrive live and then again in the replay.
    const log = new FrameLog(500);
    range(1, 15).forEach(seq => log.addFrame(frame(seq)));
    const added = range(1, 15).map(seq => log.addFrame(frame(seq)));
    expect(added.every(a => !a)).toBe(true);
    expect(listed(log)).toEqual(range(1, 15));
    expect(log.frames).toBe(15);
    expect(log.byDirection).toEqual({ out: 15 });
  });

  it('puts replayed frames older than the live ones before them, in order', () => {
    const log = new FrameLog(500);
    range(10, 15).forEach(seq => log.addFrame(frame(seq)));
    range(1, 16).forEach(seq => log.addFrame(frame(seq)));
    log.addFrame(frame(16));
    log.addFrame(frame(17));
    expect(listed(log)).toEqual(range(1, 17));
    expect(log.frames).toBe(17);
    expect(log.firstTime).toBe(101);
  });

  it('keeps notes where they came and appends frames without a number', () => {
    const log = new FrameLog(500);
    log.addFrame(frame(undefined, 'a'));
    log.addNote('reconnected');
    log.addFrame(frame(undefined, 'a'));
    expect(listed(log)).toEqual([1, 'note: reconnected', 2]);
    expect(log.frames).toBe(2);
  });

  it('never brings back a frame trimmed away or cleared', () => {
    const log = new FrameLog(3);
    range(1, 5).forEach(seq => log.addFrame(frame(seq)));
    expect(listed(log)).toEqual([3, 4, 5]);
    expect(log.addFrame(frame(2))).toBe(false);
    log.clear();
    expect(log.addFrame(frame(5))).toBe(false);
    expect(log.addFrame(frame(6))).toBe(true);
    expect(listed(log)).toEqual([6]);
    expect(log.frames).toBe(6);
  });
});
