/**
 * The page connection manager over an in-memory endpoint: the test plays the server, every
 * request the page sends is decoded with protocol.ts `decodeRequest` (so it is valid
 * nbws.v1), and timers and animation frames are driven by hand.
 */
import {
  MAX_PENDING_INFO,
  PageConnection,
  pageConnection,
  resetPageConnections,
  ViewSubscription
} from '../page';
import { FieldSpec, REQUEST_FIELDS } from '../protocol';
import { Backoff } from '../resume';
import {
  batch,
  FakeEndpoint,
  FakeLink,
  flushMicrotasks,
  Frames,
  range,
  Recorder,
  subscribed
} from './pagefakes';

describe('PageConnection', () => {
  let endpoint: FakeEndpoint;
  let frames: Frames;
  let page: PageConnection;

  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['queueMicrotask', 'setImmediate'] });
    endpoint = new FakeEndpoint();
    frames = new Frames();
    page = new PageConnection(endpoint, {
      backoff: new Backoff(250, 10000, () => 1),
      frame: frames.schedule,
      idleGraceMs: 1000
    });
  });

  afterEach(() => {
    page.close();
    jest.useRealTimers();
  });

  /** Views subscribe, the link opens, the server confirms each stream. */
  async function start(
    views: [string, number][],
    replies: Record<string, [number, number]>
  ): Promise<{ link: FakeLink; recorders: Recorder[]; subs: ViewSubscription[] }> {
    const recorders = views.map(() => new Recorder());
    const subs = views.map(([stream, history], i) =>
      page.subscribe(stream, { history }, recorders[i].handlers)
    );
    await flushMicrotasks();
    const link = endpoint.last;
    link.open();
    for (const request of link.of('subscribe')) {
      const [first, next] = replies[String(request.stream)];
      link.receive(subscribed(String(request.stream), request.id, first, next));
    }
    return { link, recorders, subs };
  }

  it('opens one link and one server subscription per stream for many views', async () => {
    const { link, recorders } = await start(
      [
        ['a', 3],
        ['a', 2],
        ['a', 0],
        ['b', 0]
      ],
      { a: [0, 5], b: [0, 0] }
    );
    expect(endpoint.links).toHaveLength(1);
    const subscribes = link.of('subscribe');
    expect(subscribes.map(s => [s.stream, s.since])).toEqual([
      ['a', -3],
      ['b', undefined] // live only
    ]);
    link.receive(batch('a', [2, 3, 4]));
    link.receive(batch('a', [5]));
    link.receive(batch('b', [0, 1]));
    // Each view gets the history it asked for, then the live messages, once.
    expect(recorders.map(r => r.got)).toEqual([[2, 3, 4, 5], [3, 4, 5], [5], [0, 1]]);
    expect(page.stats).toMatchObject({ sockets: 1, subscriptions: 2, messages: 6, views: 4 });
    expect(recorders.map(r => r.detail)).toEqual(['live', 'live', 'live', 'live']);
  });

  it('unsubscribes when the last view of a stream leaves, and closes the link when idle', async () => {
    const { link, subs } = await start(
      [
        ['a', 0],
        ['a', 0],
        ['b', 0]
      ],
      { a: [0, 0], b: [0, 0] }
    );
    subs[0].dispose();
    expect(link.of('unsubscribe')).toEqual([]);
    subs[1].dispose();
    expect(link.of('unsubscribe').map(m => m.stream)).toEqual(['a']);
    expect(subs[1].status.state).toBe('closed');
    subs[2].dispose();
    expect(link.of('unsubscribe').map(m => m.stream)).toEqual(['a', 'b']);
    jest.advanceTimersByTime(999);
    expect(link.closedWith).toBeNull();
    jest.advanceTimersByTime(1);
    expect(link.closedWith).toEqual([1000, 'no views left']);
    expect(page.stats.views).toBe(0);
  });

  it('keeps the link when a view comes back within the idle grace', async () => {
    const { link, subs } = await start([['a', 0]], { a: [0, 0] });
    subs[0].dispose();
    jest.advanceTimersByTime(500);
    const again = new Recorder();
    page.subscribe('a', { history: 0 }, again.handlers);
    await flushMicrotasks();
    jest.advanceTimersByTime(5000);
    expect(link.closedWith).toBeNull();
    expect(endpoint.links).toHaveLength(1);
    expect(link.of('subscribe')).toHaveLength(2);
  });

  it('gives a late view its history from the ring, without asking the server', async () => {
    const { link, recorders } = await start([['a', 5]], { a: [0, 10] });
    link.receive(batch('a', range(5, 10)));
    const late = new Recorder();
    page.subscribe('a', { history: 3 }, late.handlers);
    await flushMicrotasks();
    link.receive(batch('a', [10]));
    expect(late.got).toEqual([7, 8, 9, 10]);
    expect(recorders[0].got).toEqual([5, 6, 7, 8, 9, 10]);
    expect(link.of('subscribe')).toHaveLength(1);
  });

  it('reaches back for a late view that wants more history than was kept', async () => {
    const { link, recorders } = await start([['a', 0]], { a: [0, 100] });
    link.receive(batch('a', range(100, 105)));
    const late = new Recorder();
    page.subscribe('a', { history: 3 }, late.handlers);
    await flushMicrotasks();
    const again = link.of('subscribe')[1];
    // Far enough back for the late view, never past where the first one stopped.
    expect(again).toMatchObject({ stream: 'a', since: 102, epoch: 'e1' });
    link.receive(batch('a', [105])); // in flight from the old subscription
    link.receive(subscribed('a', again.id, 0, 106));
    expect(late.detail).toBe('live, replaying 3 messages of history');
    link.receive(batch('a', range(102, 107)));
    expect(late.got).toEqual([103, 104, 105, 106]);
    expect(recorders[0].got).toEqual([100, 101, 102, 103, 104, 105, 106]);
    expect(late.detail).toBe('live');
    expect(recorders[0].detail).toBe('live');
  });

  it('ignores what an abandoned subscribe brings when a stream is left and joined again', async () => {
    const first = new Recorder();
    const sub = page.subscribe('a', { history: 5 }, first.handlers);
    const link = endpoint.last;
    link.open();
    const old = link.of('subscribe')[0];
    sub.dispose();
    expect(link.of('unsubscribe').map(m => m.stream)).toEqual(['a']);
    const again = new Recorder();
    page.subscribe('a', { history: 3 }, again.handlers);
    await flushMicrotasks();
    const fresh = link.of('subscribe')[1];
    expect(fresh).toMatchObject({ stream: 'a', since: -3 });
    link.receive(subscribed('a', old.id, 0, 10));
    link.receive(batch('a', range(5, 10))); // the abandoned subscription's replay
    link.receive({ type: 'unsubscribed', stream: 'a', ref: null });
    link.receive(subscribed('a', fresh.id, 0, 10));
    expect(again.detail).toBe('live, replaying 3 messages of history');
    link.receive(batch('a', [7, 8, 9]));
    expect(again.got).toEqual([7, 8, 9]);
    expect(again.detail).toBe('live');
    expect(first.got).toEqual([]);
  });

  it('resumes every stream together after the link drops', async () => {
    const { link, recorders } = await start(
      [
        ['a', 0],
        ['b', 2],
        ['b', 0]
      ],
      { a: [0, 0], b: [0, 0] }
    );
    link.receive(batch('a', [0, 1, 2]));
    link.receive(batch('b', [0]));
    link.drop(1006);
    expect(recorders[0].detail).toBe(
      'connection lost (1006); reconnecting in 0.3 s (resuming from offset 3)'
    );
    expect(recorders[1].detail).toBe(
      'connection lost (1006); reconnecting in 0.3 s (resuming from offset 1)'
    );
    expect(recorders[0].statuses[recorders[0].statuses.length - 1].problem).toBe(true);
    jest.advanceTimersByTime(250);
    expect(endpoint.links).toHaveLength(2);
    const second = endpoint.last;
    second.open();
    const requests = second.of('subscribe');
    expect(requests.map(r => [r.stream, r.since, r.epoch])).toEqual([
      ['a', 3, 'e1'],
      ['b', 1, 'e1']
    ]);
    second.receive(subscribed('a', requests[0].id, 0, 5));
    second.receive(subscribed('b', requests[1].id, 0, 2));
    expect(recorders[0].detail).toBe(
      'live again, resumed at offset 3, replaying 2 messages of history'
    );
    expect(recorders[1].detail).toBe(
      'live again, resumed at offset 1, replaying 1 message of history'
    );
    second.receive(batch('a', [3, 4]));
    second.receive(batch('b', [1]));
    expect(recorders.map(r => r.got)).toEqual([
      [0, 1, 2, 3, 4],
      [0, 1],
      [0, 1]
    ]);
    expect(recorders[0].detail).toBe('live again, resumed at offset 3');
    expect(page.stats).toMatchObject({ sockets: 2, reconnects: 1, subscriptions: 4 });
  });

  it("explains a refused connection with the endpoint's diagnosis, then retries", async () => {
    const view = new Recorder();
    page.subscribe('a', { history: 0 }, view.handlers);
    endpoint.last.drop(1006, '', false);
    expect(view.detail).toBe('connection refused; finding out why');
    await flushMicrotasks();
    expect(view.detail).toBe(
      'the fake server says no; reconnecting in 0.3 s (resuming with live messages)'
    );
    jest.advanceTimersByTime(250);
    expect(endpoint.links).toHaveLength(2);
  });

  it('shows a missing stream on its views only', async () => {
    const a = new Recorder();
    const b = new Recorder();
    page.subscribe('a', { history: 0 }, a.handlers);
    page.subscribe('b', { history: 0 }, b.handlers);
    const link = endpoint.last;
    link.open();
    const [subA, subB] = link.of('subscribe');
    link.receive(subscribed('a', subA.id, 0, 0));
    link.receive({
      type: 'error',
      ref: subB.id,
      code: 'unknown-stream',
      message: 'no such stream'
    });
    expect(b.detail).toMatch(
      /^stream "b" does not exist \(no such stream\); trying again in 0\.[23] s$/
    );
    expect(b.statuses[b.statuses.length - 1].problem).toBe(true);
    expect(a.detail).toBe('live');
    // Tried again after the backoff, on the same link; once it exists, the view is live.
    jest.advanceTimersByTime(300);
    const retried = link.of('subscribe')[2];
    expect(retried).toMatchObject({ stream: 'b' });
    link.receive(subscribed('b', retried.id, 0, 0));
    expect(b.detail).toBe('live');
    expect(endpoint.links).toHaveLength(1);
  });

  it('says why a stream name cannot be subscribed, and subscribes the others', async () => {
    const bad = new Recorder();
    const good = new Recorder();
    page.subscribe('no spaces allowed', { history: 0 }, bad.handlers);
    page.subscribe('a', { history: 0 }, good.handlers);
    const link = endpoint.last;
    link.open();
    expect(link.of('subscribe').map(m => m.stream)).toEqual(['a']);
    expect(bad.detail).toBe(
      'cannot subscribe to "no spaces allowed": subscribe needs a \'stream\' of 1-200 characters from A-Z a-z 0-9 . _ : / -'
    );
    expect(bad.statuses[bad.statuses.length - 1].problem).toBe(true);
  });

  it('hands the welcome to views that join later', async () => {
    const { link } = await start([['a', 0]], { a: [0, 0] });
    link.receive({
      type: 'welcome',
      protocol: 'nbws.v1',
      server: 'nbws',
      connection: 'c1',
      max_message_size: 1,
      heartbeat_interval: 30,
      dedupe_window: 0
    });
    const late = new Recorder();
    page.subscribe('b', { history: 0 }, late.handlers);
    await flushMicrotasks();
    expect(late.controls).toEqual(['welcome']);
  });

  it('asks for batches', async () => {
    const { link } = await start([['a', 0]], { a: [0, 0] });
    expect(link.of('subscribe')[0]).toMatchObject({ max_batch: 1000, linger_ms: 10 });
  });
});

describe('PageConnection decodes only what views keep', () => {
  let endpoint: FakeEndpoint;
  let page: PageConnection;

  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['queueMicrotask', 'setImmediate'] });
    endpoint = new FakeEndpoint();
    page = new PageConnection(endpoint, {
      backoff: new Backoff(250, 10000, () => 1),
      frame: new Frames().schedule,
      idleGraceMs: 1000
    });
  });

  afterEach(() => {
    page.close();
    jest.useRealTimers();
  });

  /** A view that also counts what it was told was skipped. */
  class Counting extends Recorder {
    skipped = 0;
    constructor(skips = true) {
      super();
      if (skips) {
        this.handlers.skipped = n => (this.skipped += n);
      }
    }
  }

  async function live(
    views: [number, Counting][],
    next = 0
  ): Promise<{ link: FakeLink; subs: ViewSubscription[] }> {
    const subs = views.map(([history, view]) => page.subscribe('a', { history }, view.handlers));
    await flushMicrotasks();
    const link = endpoint.last;
    link.open();
    const request = link.of('subscribe')[0];
    link.receive(subscribed('a', request.id, 0, next));
    return { link, subs };
  }

  /** A batch whose older messages `decodeEvent` would refuse (time is not a number). */
  function poisoned(offsets: number[], bad: number): Record<string, unknown> {
    const frame = batch('a', offsets);
    const messages = frame.messages as Record<string, unknown>[];
    messages.slice(0, bad).forEach(m => (m.time = 'not a time'));
    return frame;
  }

  it('hands over only the newest messages the views show and counts the rest', async () => {
    const table = new Counting();
    const monitor = new Counting();
    const { link, subs } = await live([
      [3, table],
      [0, monitor]
    ]);
    // The seven older messages are invalid: had they been decoded the link would drop.
    link.receive(poisoned(range(0, 10), 7));
    expect(link.closedWith).toBeNull();
    expect(table.got).toEqual([7, 8, 9]);
    expect(table.skipped).toBe(7);
    expect(monitor.got.length + monitor.skipped).toBe(10);
    expect(page.stats).toMatchObject({ messages: 10, skipped: 7 });
    // The books moved past the skipped offsets: the next reconnect resumes at 10.
    expect(subs[0].resume.lastOffset).toBe(9);
    expect(subs[0].resume.received).toBe(10);
    link.drop();
    jest.advanceTimersByTime(300);
    endpoint.last.open();
    expect(endpoint.last.of('subscribe')[0].since).toBe(10);
  });

  it('keeps the counts adding up over many batches, with the keep a view asks for', async () => {
    const monitor = new Counting();
    const chart = new Counting();
    const { link } = await live([[0, monitor]]);
    page.subscribe('a', { history: 0, keep: 4 }, chart.handlers);
    link.receive(batch('a', range(0, 50)));
    link.receive(batch('a', range(50, 51)));
    link.receive(batch('a', range(51, 130)));
    expect(chart.got.slice(0, 4)).toEqual([46, 47, 48, 49]);
    expect(chart.got.slice(4, 5)).toEqual([50]);
    expect(chart.got.slice(5)).toEqual([126, 127, 128, 129]);
    for (const view of [monitor, chart]) {
      expect(view.got.length + view.skipped).toBe(130);
    }
    expect(page.stats.skipped).toBe(46 + 75);
  });

  it('gives a late view consecutive history from the ring after a skip', async () => {
    const first = new Counting();
    const { link } = await live([[5, first]]);
    link.receive(batch('a', range(0, 40)));
    const late = new Counting();
    page.subscribe('a', { history: 5 }, late.handlers);
    await flushMicrotasks();
    expect(late.got).toEqual([35, 36, 37, 38, 39]);
    expect(link.of('subscribe')).toHaveLength(1);
  });

  it('decodes every message for a view that cannot be told about skips', async () => {
    const skipping = new Counting();
    const counting = new Counting(false);
    const { link } = await live([
      [0, skipping],
      [0, counting]
    ]);
    link.receive(batch('a', range(0, 20)));
    expect(counting.got).toEqual(range(0, 20));
    expect(skipping.skipped).toBe(0);
    expect(page.stats.skipped).toBe(0);
  });

  it('does not count again what a view already had when the share reaches back', async () => {
    const first = new Counting();
    const { link } = await live([[0, first]]);
    link.receive(batch('a', range(0, 10)));
    const late = new Counting();
    page.subscribe('a', { history: 8 }, late.handlers);
    await flushMicrotasks();
    const again = link.of('subscribe')[1];
    link.receive(subscribed('a', again.id, 0, 10));
    // The server replays from 2 for the late view, then live messages follow.
    link.receive(batch('a', range(2, 30)));
    expect(late.got.length + late.skipped).toBe(28);
    expect(first.got.length + first.skipped).toBe(30);
  });

  it('still drops the link for an invalid message among the newest', async () => {
    const view = new Counting();
    const { link } = await live([[0, view]]);
    link.receive(poisoned(range(0, 3), 3));
    expect(link.closedWith).not.toBeNull();
    expect(view.got).toEqual([]);
  });
});

describe('PageConnection info', () => {
  let endpoint: FakeEndpoint;
  let page: PageConnection;

  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['queueMicrotask', 'setImmediate'] });
    endpoint = new FakeEndpoint();
    page = new PageConnection(endpoint, {
      backoff: new Backoff(250, 10000, () => 1),
      frame: new Frames().schedule,
      idleGraceMs: 1000,
      infoTimeoutMs: 5000
    });
  });

  afterEach(() => {
    page.close();
    jest.useRealTimers();
  });

  function figures(stream: string, ref: unknown, next = 7): Record<string, unknown> {
    return {
      type: 'info',
      stream,
      epoch: 'e1',
      first: 0,
      next,
      history_messages: next,
      history_bytes: 10 * next,
      rate: 2.5,
      subscribers: 1,
      drops: 0,
      held_acks: 0,
      ref
    };
  }

  /** A view on `a` and the link open. */
  async function connected(): Promise<{ link: FakeLink; view: Recorder }> {
    const view = new Recorder();
    page.subscribe('a', { history: 0 }, view.handlers);
    await flushMicrotasks();
    endpoint.last.open();
    return { link: endpoint.last, view };
  }

  /** The settled outcome of `promise`: the reply, or the rejection's message. */
  async function outcome<T>(promise: Promise<T>): Promise<T | string> {
    return promise.then(
      value => value,
      (error: Error) => `rejected: ${error.message}`
    );
  }

  it('answers each request with the reply carrying its id, in any order', async () => {
    const { link, view } = await connected();
    const a = outcome(page.info('a'));
    const b = outcome(page.info('b'));
    const [askA, askB] = link.of('info');
    expect([askA.stream, askB.stream]).toEqual(['a', 'b']);
    link.receive(figures('b', askB.id, 3));
    link.receive(figures('a', askA.id, 7));
    expect(await a).toMatchObject({ stream: 'a', next: 7, rate: 2.5 });
    expect(await b).toMatchObject({ stream: 'b', next: 3 });
    // Replies the page asked for are not handed to the views as control messages.
    expect(view.controls).not.toContain('info');
  });

  it('waits for the link to open before asking', async () => {
    const view = new Recorder();
    page.subscribe('a', { history: 0 }, view.handlers);
    await flushMicrotasks();
    const reply = outcome(page.info('a'));
    const link = endpoint.last;
    expect(link.of('info')).toHaveLength(0);
    link.open();
    const [ask] = link.of('info');
    link.receive(figures('a', ask.id));
    expect(await reply).toMatchObject({ stream: 'a', next: 7 });
  });

  it('rejects with a readable sentence on an error reply', async () => {
    const { link } = await connected();
    const reply = outcome(page.info('nope'));
    const [ask] = link.of('info');
    link.receive({
      type: 'error',
      code: 'unknown-stream',
      message: "no stream named 'nope'",
      ref: ask.id
    });
    expect(await reply).toBe(`rejected: stream "nope" does not exist (no stream named 'nope')`);
    expect(link.closedWith).toBeNull();
  });

  it('rejects what is waiting when the link is lost, and asks again on the new link', async () => {
    const { link } = await connected();
    const reply = outcome(page.info('a'));
    link.drop(1006);
    expect(await reply).toMatch(
      /^rejected: the connection to the fake server was lost: connection lost/
    );
    jest.advanceTimersByTime(300);
    endpoint.last.open();
    const again = outcome(page.info('a'));
    const [ask] = endpoint.last.of('info');
    endpoint.last.receive(figures('a', ask.id, 9));
    expect(await again).toMatchObject({ next: 9 });
  });

  it('bounds the requests waiting for a reply, and gives up on one after a timeout', async () => {
    const { link } = await connected();
    const waiting = Array.from({ length: MAX_PENDING_INFO }, () => outcome(page.info('a')));
    expect(await outcome(page.info('a'))).toMatch(/^rejected: \d+ info requests .* unanswered$/);
    expect(link.of('info')).toHaveLength(MAX_PENDING_INFO);
    jest.advanceTimersByTime(5000);
    for (const reply of waiting) {
      expect(await reply).toBe('rejected: no info reply from the fake server for "a" in 5 s');
    }
    // Answered late: nothing happens; room again for new requests.
    link.receive(figures('a', link.of('info')[0].id));
    const next = outcome(page.info('a'));
    link.receive(figures('a', link.of('info')[MAX_PENDING_INFO].id));
    expect(await next).toMatchObject({ stream: 'a' });
  });

  it('rejects an invalid reply and says why without a link', async () => {
    const { link } = await connected();
    const reply = outcome(page.info('a'));
    const [ask] = link.of('info');
    link.receive({ ...figures('a', ask.id), rate: 'fast' });
    expect(await reply).toMatch(/^rejected: the server sent an invalid info reply/);
    page.close();
    expect(await outcome(page.info('a'))).toMatch(/^rejected: not connected to the fake server/);
  });
});

describe('PageConnection credit', () => {
  // The wire names of the credit protocol (`credit` on subscribe, `consumed {stream,
  // offset}`); added to the field tables here when this build's protocol.ts lacks them.
  const tables = REQUEST_FIELDS as unknown as Record<string, FieldSpec[]>;
  const original = { subscribe: tables.subscribe, consumed: tables.consumed };

  beforeAll(() => {
    if (!tables.subscribe.some(spec => spec.wire === 'credit')) {
      tables.subscribe = [...tables.subscribe, { wire: 'credit', kind: 'positive' }];
    }
    if (tables.consumed === undefined) {
      tables.consumed = [
        { wire: 'stream', kind: 'stream', required: true },
        { wire: 'offset', kind: 'nat', required: true },
        { wire: 'id', kind: 'ref' }
      ];
    }
  });

  afterAll(() => {
    tables.subscribe = original.subscribe;
    if (original.consumed === undefined) {
      delete tables.consumed;
    }
  });

  it('subscribes with credit and reports consumed once per frame per stream', async () => {
    const endpoint = new FakeEndpoint();
    const frames = new Frames();
    const page = new PageConnection(endpoint, { frame: frames.schedule, credit: 64 });
    const a = new Recorder();
    const b = new Recorder();
    page.subscribe('a', { history: 0 }, a.handlers);
    page.subscribe('b', { history: 0 }, b.handlers);
    const link = endpoint.last;
    link.open();
    const [subA, subB] = link.of('subscribe');
    expect(subA).toMatchObject({ credit: 64, max_batch: 1000 });
    link.receive(subscribed('a', subA.id, 0, 0));
    link.receive(subscribed('b', subB.id, 0, 0));
    link.receive(batch('a', [0, 1]));
    link.receive(batch('a', [2, 3]));
    link.receive(batch('b', [0]));
    // Nothing before the frame: the views apply messages in their own frame callbacks.
    expect(link.of('consumed')).toEqual([]);
    expect(a.got).toEqual([0, 1, 2, 3]);
    frames.run();
    expect(link.of('consumed')).toEqual([
      { type: 'consumed', stream: 'a', offset: 3 },
      { type: 'consumed', stream: 'b', offset: 0 }
    ]);
    frames.run();
    expect(link.of('consumed')).toHaveLength(2); // nothing new, nothing sent
    link.receive(batch('a', [4]));
    frames.run();
    expect(link.of('consumed').slice(2)).toEqual([{ type: 'consumed', stream: 'a', offset: 4 }]);
    expect(page.stats.consumed).toBe(3);
    page.close();
  });

  it("reports nothing while a subscribe that replaces the stream's is unanswered", async () => {
    const endpoint = new FakeEndpoint();
    const frames = new Frames();
    const page = new PageConnection(endpoint, { frame: frames.schedule, credit: 64 });
    page.subscribe('a', { history: 0 }, new Recorder().handlers);
    const link = endpoint.last;
    link.open();
    link.receive(subscribed('a', link.of('subscribe')[0].id, 0, 0));
    link.receive(batch('a', [0, 1, 2]));
    frames.run();
    expect(link.of('consumed')).toEqual([{ type: 'consumed', stream: 'a', offset: 2 }]);
    const late = new Recorder();
    page.subscribe('a', { history: 10 }, late.handlers);
    await flushMicrotasks();
    const again = link.of('subscribe')[1];
    expect(again).toMatchObject({ since: 0, credit: 64 });
    link.receive(batch('a', [3])); // the old subscription's, read before the new subscribe
    frames.run();
    expect(link.of('consumed')).toHaveLength(1);
    link.receive(subscribed('a', again.id, 0, 4));
    link.receive(batch('a', [0, 1, 2, 3]));
    frames.run();
    expect(link.of('consumed').slice(1)).toEqual([{ type: 'consumed', stream: 'a', offset: 3 }]);
    expect(late.got).toEqual([0, 1, 2, 3]);
    page.close();
  });

  it('does not report what an unrendered page did not consume', async () => {
    const endpoint = new FakeEndpoint();
    const frames = new Frames();
    const page = new PageConnection(endpoint, { frame: frames.schedule, credit: 64 });
    page.subscribe('a', { history: 0 }, new Recorder().handlers);
    const link = endpoint.last;
    link.open();
    link.receive(subscribed('a', link.of('subscribe')[0].id, 0, 0));
    link.receive(batch('a', range(0, 64)));
    // No animation frame ran (a hidden or frozen page): no consumed, so the server's
    // credit is spent and its policy for this subscriber acts.
    expect(link.of('consumed')).toEqual([]);
    expect(frames.queued).toHaveLength(1);
    page.close();
  });
});

describe('pageConnection registry', () => {
  afterEach(() => resetPageConnections());

  it('is one connection per endpoint key, shared on the page through a global symbol', () => {
    const first = pageConnection(new FakeEndpoint('k1'));
    expect(pageConnection(new FakeEndpoint('k1'))).toBe(first);
    expect(pageConnection(new FakeEndpoint('k2'))).not.toBe(first);
    const registry = (
      globalThis as unknown as Record<symbol, { connections: Map<string, unknown> }>
    )[Symbol.for('nbws.page.v1')];
    expect(registry.connections.get('k1')).toBe(first);
  });
});
