import { offsetFigures, StreamInfo } from '../monitor';

function info(next: number, epoch = 'e1', first = 0): StreamInfo {
  return {
    name: 's',
    epoch,
    first,
    next,
    history_messages: next - first,
    history_bytes: 10 * (next - first),
    rate: 1000,
    subscribers: 1,
    drops: 0
  };
}

describe('offsetFigures', () => {
  it('never shows a next offset at or below the last offset this view received', () => {
    // The server's numbers were fetched a second ago; messages kept arriving since.
    const figures = offsetFigures(info(10879), { offset: 11843, epoch: 'e1' }, 0);
    expect(figures.offset).toBe('11843');
    expect(figures.next).toBe('11844');
    expect(figures.lag).toBe('0 messages');
    expect(figures.note).toBe('');
  });

  it('uses the server figures when they are newer than the last message', () => {
    const figures = offsetFigures(info(2000), { offset: 1499, epoch: 'e1' }, undefined);
    expect(figures.next).toBe('2000');
    expect(figures.lag).toBe('500 messages');
    expect(offsetFigures(info(2000), { offset: 1499, epoch: 'e1' }, 7).lag).toBe('7 messages');
  });

  it('does not compare offsets of two epochs', () => {
    const figures = offsetFigures(info(10, 'e2'), { offset: 11843, epoch: 'e1' }, undefined);
    expect(figures.next).toBe('10');
    expect(figures.lag).toBe('–');
    expect(figures.note).toContain('epoch e1');
    expect(figures.note).toContain('epoch e2');
  });

  it('shows what it has before the first message or the first poll', () => {
    expect(offsetFigures(null, null, undefined)).toEqual({
      offset: '–',
      next: '–',
      lag: '–',
      note: ''
    });
    expect(offsetFigures(info(5), null, undefined)).toEqual({
      offset: '–',
      next: '5',
      lag: '0 messages',
      note: ''
    });
    expect(offsetFigures(null, { offset: 3, epoch: 'e1' }, undefined).next).toBe('4');
  });
});
