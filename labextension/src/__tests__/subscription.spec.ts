/**
 * One stream's shared state (subscription.ts `StreamShare`) as views see it through a page
 * connection: replay status texts, batches, resuming across gaps and epochs.
 */
import { PageConnection } from '../page';
import { Backoff } from '../resume';
import { HistoryRing } from '../subscription';
import type { StreamMessage } from '../protocol';
import {
  batch,
  FakeEndpoint,
  FakeLink,
  flushMicrotasks,
  Frames,
  Recorder,
  subscribed
} from './pagefakes';

describe('StreamShare through a page connection', () => {
  let endpoint: FakeEndpoint;
  let page: PageConnection;
  let view: Recorder;

  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['queueMicrotask', 'setImmediate'] });
    endpoint = new FakeEndpoint();
    page = new PageConnection(endpoint, {
      backoff: new Backoff(250, 10000, () => 1),
      frame: new Frames().schedule
    });
    view = new Recorder();
  });

  afterEach(() => {
    page.close();
    jest.useRealTimers();
  });

  async function start(history: number, first: number, next: number): Promise<FakeLink> {
    page.subscribe('s', { history }, view.handlers);
    await flushMicrotasks();
    const link = endpoint.last;
    link.open();
    link.receive(subscribed('s', link.of('subscribe')[0].id, first, next));
    return link;
  }

  it('says "replaying N messages" only until the replay has arrived', async () => {
    const link = await start(3, 0, 10);
    expect(view.detail).toBe('live, replaying 3 messages of history');
    link.receive(batch('s', [7, 8]));
    expect(view.detail).toBe('live, replaying 3 messages of history');
    link.receive(batch('s', [9]));
    expect(view.statuses[view.statuses.length - 1]).toEqual({
      state: 'live',
      detail: 'live',
      problem: false
    });
    link.receive(batch('s', [10]));
    expect(view.statuses.filter(s => s.detail === 'live')).toHaveLength(1);
  });

  it('ends the replay when a gap notice covers the rest of it', async () => {
    const link = await start(100, 0, 100);
    expect(view.detail).toBe('live, replaying 100 messages of history');
    link.receive(batch('s', [0]));
    link.receive({ type: 'gap', stream: 's', from: 1, to: 100, count: 99, reason: 'dropped' });
    expect(view.detail).toBe('live');
    expect(view.gaps).toBe(1);
  });

  it('says nothing about a replay when there is none', async () => {
    const link = await start(0, 0, 10);
    link.receive(batch('s', [10]));
    expect(view.statuses.map(s => s.detail)).toEqual([
      'connecting to the fake server for "s"',
      'live'
    ]);
  });

  it('hands over each message once, in order, even when a run is sent again', async () => {
    const link = await start(5, 0, 5);
    link.receive(batch('s', [0, 1, 2]));
    link.receive(batch('s', [2, 3, 4]));
    expect(view.got).toEqual([0, 1, 2, 3, 4]);
  });

  it('resumes after the last batch, across gaps and a new epoch', async () => {
    const got: string[] = [];
    view.handlers.message = (m: StreamMessage) => got.push(`${m.epoch}:${m.offset}`);
    const link = await start(1000, 0, 0);
    link.receive(batch('s', [0, 1]));
    link.receive({ type: 'gap', stream: 's', from: 2, to: 5, count: 3, reason: 'dropped' });
    link.receive(batch('s', [5, 6]));
    link.drop(1006);
    jest.runOnlyPendingTimers();
    const again = endpoint.last;
    again.open();
    const request = again.of('subscribe')[0];
    expect(request).toMatchObject({ since: 7, epoch: 'e1', max_batch: 1000 });
    again.receive(subscribed('s', request.id, 0, 2, 'e2'));
    again.receive({
      type: 'gap',
      stream: 's',
      from: 7,
      to: null,
      count: null,
      reason: 'epoch',
      epoch: 'e2'
    });
    again.receive(batch('s', [0, 1], 'e2'));
    expect(got).toEqual(['e1:0', 'e1:1', 'e1:5', 'e1:6', 'e2:0', 'e2:1']);
    again.drop(1006);
    jest.runOnlyPendingTimers();
    const third = endpoint.last;
    third.open();
    expect(third.of('subscribe')[0]).toMatchObject({ since: 2, epoch: 'e2' });
  });

  it('unpacks a binary batch into binary messages', async () => {
    const messages: StreamMessage[] = [];
    view.handlers.message = (m: StreamMessage) => messages.push(m);
    const link = await start(0, 0, 0);
    const header = JSON.stringify({
      type: 'batch',
      stream: 's',
      epoch: 'e1',
      binary: true,
      messages: [
        { offset: 0, time: 1, content_type: 'a/b' },
        { offset: 1, time: 1 }
      ],
      sizes: [2, 1]
    });
    const head = new TextEncoder().encode(header);
    const bytes = new Uint8Array(4 + head.byteLength + 3);
    new DataView(bytes.buffer).setUint32(0, head.byteLength, false);
    bytes.set(head, 4);
    bytes.set([7, 8, 9], 4 + head.byteLength);
    link.receiveBinary(bytes.buffer);
    expect(
      messages.map(m => [m.offset, m.binary, Array.from(m.data as Uint8Array), m.content_type])
    ).toEqual([
      [0, true, [7, 8], 'a/b'],
      [1, true, [9], undefined]
    ]);
  });

  it('drops the link on a malformed batch, says why, and resumes', async () => {
    const link = await start(0, 0, 0);
    link.receive({ type: 'batch', stream: 's', epoch: 'e1', messages: [] });
    expect(link.closedWith).toEqual([1000, 'invalid message']);
    expect(view.detail).toBe(
      "the server sent an invalid batch (batch needs a non-empty list 'messages'); reconnecting in 0.3 s (resuming from offset 0)"
    );
    expect(view.got).toEqual([]);
    jest.runOnlyPendingTimers();
    expect(endpoint.links).toHaveLength(2);
  });

  it('batch handlers get a batch at once instead of one call each', async () => {
    const batches: number[][] = [];
    view.handlers.batch = (messages: StreamMessage[]) => batches.push(messages.map(m => m.offset));
    const link = await start(0, 0, 0);
    link.receive(batch('s', [0, 1, 2]));
    expect(batches).toEqual([[0, 1, 2]]);
    expect(view.got).toEqual([]);
  });
});

describe('HistoryRing', () => {
  const message = (offset: number): StreamMessage => ({
    type: 'message',
    stream: 's',
    offset,
    epoch: 'e',
    time: 0
  });

  it('keeps the newest `capacity` messages in order', () => {
    const ring = new HistoryRing(3);
    for (let offset = 0; offset < 10; offset++) {
      ring.push(message(offset));
    }
    expect(ring.length).toBe(3);
    expect(ring.tail(2).map(m => m.offset)).toEqual([8, 9]);
    expect(ring.tail(5).map(m => m.offset)).toEqual([7, 8, 9]);
    expect([ring.firstOffset, ring.lastOffset]).toEqual([7, 9]);
  });

  it('keeps nothing at capacity 0', () => {
    const ring = new HistoryRing(0);
    ring.push(message(0));
    expect(ring.length).toBe(0);
    expect(ring.firstOffset).toBeNull();
  });
});
