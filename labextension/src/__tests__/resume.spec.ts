import { Backoff, ResumeState, resumeSince } from '../resume';

const reply = (epoch: string, first: number, next: number) => ({ epoch, first, next });

describe('ResumeState', () => {
  it('first subscribes with the initial since and no epoch', () => {
    expect(new ResumeState(-1000).resumePoint()).toEqual({ since: -1000 });
    expect(new ResumeState(null).resumePoint()).toEqual({ since: null });
  });

  it('resumes at last offset + 1 with the epoch it had', () => {
    const r = new ResumeState(-100);
    r.subscribed(reply('e1', 0, 50), -100);
    for (let offset = 0; offset < 50; offset++) {
      expect(r.accept({ offset, epoch: 'e1' })).toBe(true);
    }
    expect(r.resumePoint()).toEqual({ since: 50, epoch: 'e1' });
  });

  it('ignores an offset it already has (no duplicate rows after a reconnect)', () => {
    const r = new ResumeState(0);
    r.subscribed(reply('e1', 0, 3), 0);
    expect(r.accept({ offset: 0, epoch: 'e1' })).toBe(true);
    expect(r.accept({ offset: 1, epoch: 'e1' })).toBe(true);
    expect(r.accept({ offset: 1, epoch: 'e1' })).toBe(false);
    expect(r.accept({ offset: 0, epoch: 'e1' })).toBe(false);
    expect(r.duplicates).toBe(2);
    expect(r.received).toBe(2);
    expect(r.resumePoint()).toEqual({ since: 2, epoch: 'e1' });
  });

  it('after a subscription that delivered nothing, resumes where the server started', () => {
    const live = new ResumeState(null);
    live.subscribed(reply('e1', 0, 40), null);
    expect(live.resumePoint()).toEqual({ since: 40, epoch: 'e1' });

    const tail = new ResumeState(-10);
    tail.subscribed(reply('e1', 0, 40), -10);
    expect(tail.resumePoint()).toEqual({ since: 30, epoch: 'e1' });

    const short = new ResumeState(-100);
    short.subscribed(reply('e1', 25, 40), -100);
    expect(short.resumePoint()).toEqual({ since: 25, epoch: 'e1' });
  });

  it('starts over when the epoch changes (offsets are not comparable)', () => {
    const r = new ResumeState(0);
    r.subscribed(reply('e1', 0, 100), 0);
    r.accept({ offset: 99, epoch: 'e1' });
    expect(r.subscribed(reply('e2', 0, 5), 100)).toBe(true);
    expect(r.epochChanges).toBe(1);
    expect(r.lastOffset).toBeNull();
    expect(r.resumePoint()).toEqual({ since: 0, epoch: 'e2' });
    expect(r.accept({ offset: 0, epoch: 'e2' })).toBe(true);
  });

  it('accepts lower offsets of a new epoch announced by a gap', () => {
    const r = new ResumeState(0);
    r.subscribed(reply('e1', 0, 10), 0);
    r.accept({ offset: 9, epoch: 'e1' });
    r.gap({ from: 10, to: null, count: null, reason: 'epoch', epoch: 'e2' });
    expect(r.accept({ offset: 0, epoch: 'e2' })).toBe(true);
    expect(r.resumePoint()).toEqual({ since: 1, epoch: 'e2' });
  });

  it('keeps its epoch on an epoch gap whose new epoch is null (unknown)', () => {
    const r = new ResumeState(0);
    r.subscribed(reply('e1', 0, 10), 0);
    r.accept({ offset: 3, epoch: 'e1' });
    r.gap({ from: 4, to: null, count: null, reason: 'epoch', epoch: null });
    expect(r.epoch).toBe('e1');
    expect(r.epochChanges).toBe(0);
    expect(r.resumePoint()).toEqual({ since: 4, epoch: 'e1' });
  });

  it('resumes after a dropped or history gap, not inside it', () => {
    const r = new ResumeState(0);
    r.subscribed(reply('e1', 0, 10), 0);
    r.accept({ offset: 4, epoch: 'e1' });
    r.gap({ from: 5, to: 9, count: 4, reason: 'dropped', epoch: 'e1' });
    expect(r.resumePoint()).toEqual({ since: 9, epoch: 'e1' });
    expect(r.gaps).toBe(1);
    expect(r.missed).toBe(4);

    const h = new ResumeState(0);
    h.subscribed(reply('e1', 100, 120), 0);
    h.gap({ from: 0, to: 100, count: 100, reason: 'history', epoch: 'e1' });
    expect(h.resumePoint()).toEqual({ since: 100, epoch: 'e1' });
    expect(h.accept({ offset: 100, epoch: 'e1' })).toBe(true);
  });

  it('does not skip messages of other keys inside a conflated range', () => {
    const r = new ResumeState(0);
    r.subscribed(reply('e1', 0, 20), 0);
    r.accept({ offset: 9, epoch: 'e1' });
    r.gap({ from: 10, to: 15, count: 3, reason: 'conflated', epoch: 'e1' });
    expect(r.accept({ offset: 12, epoch: 'e1' })).toBe(true);
    expect(r.resumePoint()).toEqual({ since: 13, epoch: 'e1' });
  });

  it('never moves the resume point backwards on an old gap', () => {
    const r = new ResumeState(0);
    r.subscribed(reply('e1', 0, 50), 0);
    r.accept({ offset: 40, epoch: 'e1' });
    r.gap({ from: 10, to: 20, count: 10, reason: 'dropped', epoch: 'e1' });
    expect(r.resumePoint()).toEqual({ since: 41, epoch: 'e1' });
  });

  it('counts subscriptions (first + reconnects)', () => {
    const r = new ResumeState(null);
    r.subscribed(reply('e1', 0, 0), null);
    r.subscribed(reply('e1', 0, 0), 0);
    expect(r.subscriptions).toBe(2);
    expect(r.epochChanges).toBe(0);
  });
});

describe('Backoff', () => {
  it('doubles from initial to max and resets after a success', () => {
    const b = new Backoff(100, 1000, () => 1);
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([
      100, 200, 400, 800, 1000, 1000
    ]);
    expect(b.attempts).toBe(6);
    b.reset();
    expect(b.next()).toBe(100);
  });

  it('jitters down by at most 20%', () => {
    const b = new Backoff(1000, 1000, () => 0);
    expect(b.next()).toBe(800);
  });
});

describe('resumeSince', () => {
  it('is what ResumeState asks for after an empty subscription', () => {
    for (const requested of [null, 0, 7, -10, -100]) {
      const r = new ResumeState(requested);
      r.subscribed(reply('e1', 25, 40), requested);
      expect(r.resumePoint().since).toBe(resumeSince(null, requested, { first: 25, next: 40 }));
    }
  });
});
