import { offsetFigures, ServerFigures, StreamInfo } from '../monitor';
import { PageConnection } from '../page';
import { FakeEndpoint, FakeLink, flushMicrotasks, Frames, Recorder } from './pagefakes';

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

describe('ServerFigures', () => {
  let endpoint: FakeEndpoint;
  let page: PageConnection;

  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['queueMicrotask', 'setImmediate'] });
    endpoint = new FakeEndpoint();
    page = new PageConnection(endpoint, { frame: new Frames().schedule });
  });

  afterEach(() => {
    page.close();
    jest.useRealTimers();
  });

  function reply(ref: unknown, next: number): Record<string, unknown> {
    return {
      type: 'info',
      stream: 's',
      epoch: 'e1',
      first: 2,
      next,
      history_messages: next - 2,
      history_bytes: 40,
      rate: 12.5,
      subscribers: 3,
      drops: 1,
      held_acks: 0,
      ref
    };
  }

  /** A view on `s` (the link the figures travel on), opened, as on any transport. */
  async function opened(transport: string): Promise<FakeLink> {
    Object.defineProperty(endpoint, 'transport', { value: transport });
    page.subscribe('s', { history: 0 }, new Recorder().handlers);
    await flushMicrotasks();
    endpoint.last.open();
    return endpoint.last;
  }

  it.each(['direct', 'kernel-hosted', 'relay'])(
    'reads the figures with an info request on the page link (%s)',
    async transport => {
      const link = await opened(transport);
      const figures = new ServerFigures(() => page.info('s'));
      const done = figures.refresh(0, 0);
      const [ask] = link.of('info');
      expect(ask.stream).toBe('s');
      link.receive(reply(ask.id, 10));
      expect(await done).toBe(true);
      expect(figures.info).toEqual({
        name: 's',
        epoch: 'e1',
        first: 2,
        next: 10,
        history_messages: 8,
        history_bytes: 40,
        rate: 12.5,
        subscribers: 3,
        drops: 1
      });
      expect(figures.error).toBe('');
    }
  );

  it('takes a REST entry as it is, subscriptions included', async () => {
    const entry = {
      ...info(4),
      subscriptions: [
        {
          connection: 'c1',
          policy: 'drop-oldest',
          lag: 0,
          queue_messages: 0,
          delivered: 4,
          dropped: 0
        }
      ]
    };
    const figures = new ServerFigures(() => Promise.resolve(entry));
    expect(await figures.refresh(0, 0)).toBe(true);
    expect(figures.info).toEqual(entry);
  });

  it('asks one at a time and not more often than asked', async () => {
    const link = await opened('relay');
    const figures = new ServerFigures(() => page.info('s'));
    const first = figures.refresh(1000, 250);
    expect(await figures.refresh(1100, 0)).toBe(false); // one is out
    link.receive(reply(link.of('info')[0].id, 5));
    await first;
    expect(await figures.refresh(1100, 250)).toBe(false); // too soon
    expect(link.of('info')).toHaveLength(1);
  });

  it('keeps the last figures through a lost link and forgets them for a missing stream', async () => {
    const link = await opened('kernel-hosted');
    const figures = new ServerFigures(() => page.info('s'));
    const first = figures.refresh(0, 0);
    link.receive(reply(link.of('info')[0].id, 5));
    await first;
    const second = figures.refresh(1000, 0);
    link.drop(1006);
    await second;
    expect(figures.info?.next).toBe(5);
    expect(figures.error).toMatch(/^stream info: the connection to the fake server was lost/);
    jest.advanceTimersByTime(20000);
    endpoint.last.open();
    const third = figures.refresh(2000, 0);
    const [ask] = endpoint.last.of('info');
    endpoint.last.receive({
      type: 'error',
      code: 'unknown-stream',
      message: "no stream named 's'",
      ref: ask.id
    });
    await third;
    expect(figures.info).toBeNull();
    expect(figures.error).toBe(`stream info: stream "s" does not exist (no stream named 's')`);
  });
});
