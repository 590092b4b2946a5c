import type { ServerConnection } from '@jupyterlab/services';

import type { StreamMessage } from '../protocol';
import { StreamSubscription, SubscriptionStatus } from '../subscription';

/** Just enough of a browser WebSocket: the test plays the server. */
class FakeSocket {
  static last: FakeSocket | null = null;
  binaryType = 'blob';
  readyState = 0;
  sent: string[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;

  constructor(
    readonly url: string,
    readonly protocol?: string
  ) {
    FakeSocket.last = this;
  }

  send(data: string): void {
    this.sent.push(data);
  }

  close(): void {
    this.readyState = 3;
  }

  open(): void {
    this.readyState = 1;
    this.onopen?.();
  }

  receive(message: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
}

const settings = {
  wsUrl: 'ws://lab.invalid/',
  baseUrl: 'http://lab.invalid/',
  token: ''
} as unknown as ServerConnection.ISettings;

function subscribed(first: number, next: number): Record<string, unknown> {
  return {
    type: 'subscribed',
    id: 1,
    stream: 's',
    epoch: 'e1',
    first,
    next,
    since: null,
    policy: 'drop-oldest',
    max_messages: 1000,
    max_bytes: 1 << 20
  };
}

function message(offset: number): Record<string, unknown> {
  return { type: 'message', stream: 's', offset, epoch: 'e1', time: 1, payload: { offset } };
}

describe('StreamSubscription status', () => {
  const original = (globalThis as { WebSocket?: unknown }).WebSocket;
  let statuses: SubscriptionStatus[];
  let subscription: StreamSubscription;

  beforeEach(() => {
    (globalThis as { WebSocket?: unknown }).WebSocket = FakeSocket;
    statuses = [];
  });

  afterEach(() => {
    subscription.dispose();
    (globalThis as { WebSocket?: unknown }).WebSocket = original;
  });

  function start(since: number | null): FakeSocket {
    subscription = new StreamSubscription(
      's',
      { since, settings },
      { message: () => undefined, status: s => statuses.push(s) }
    );
    subscription.start();
    const socket = FakeSocket.last!;
    socket.open();
    return socket;
  }

  it('says "replaying N messages" only until the replay has arrived', () => {
    const socket = start(-3);
    socket.receive(subscribed(0, 10));
    expect(subscription.status.detail).toBe('live, replaying 3 messages of history');
    socket.receive(message(7));
    socket.receive(message(8));
    expect(subscription.status.detail).toBe('live, replaying 3 messages of history');
    socket.receive(message(9));
    expect(subscription.status).toEqual({ state: 'live', detail: 'live', problem: false });
    socket.receive(message(10));
    expect(statuses.filter(s => s.detail === 'live')).toHaveLength(1);
  });

  it('ends the replay when a gap notice covers the rest of it', () => {
    const socket = start(0);
    socket.receive(subscribed(0, 100));
    expect(subscription.status.detail).toBe('live, replaying 100 messages of history');
    socket.receive(message(0));
    socket.receive({ type: 'gap', stream: 's', from: 1, to: 100, count: 99, reason: 'dropped' });
    expect(subscription.status.detail).toBe('live');
  });

  it('says nothing about a replay when there is none', () => {
    const socket = start(null);
    socket.receive(subscribed(0, 10));
    expect(subscription.status.detail).toBe('live');
    socket.receive(message(10));
    expect(statuses.map(s => s.detail)).toEqual(['connecting to nbws/ws for "s"', 'live']);
  });
});

describe('StreamSubscription errors', () => {
  const original = (globalThis as { WebSocket?: unknown }).WebSocket;

  afterEach(() => {
    (globalThis as { WebSocket?: unknown }).WebSocket = original;
  });

  it('never shows the token a browser error quotes', () => {
    (globalThis as { WebSocket?: unknown }).WebSocket = class {
      constructor(url: string) {
        throw new Error(`Failed to construct 'WebSocket': The URL '${url}' is invalid.`);
      }
    };
    const withToken = {
      ...settings,
      token: 'page-token-123',
      appendToken: true // a server on another host: the token goes into the URL
    } as unknown as ServerConnection.ISettings;
    const subscription = new StreamSubscription(
      's',
      { since: null, settings: withToken },
      { message: () => undefined }
    );
    subscription.start();
    expect(subscription.status.state).toBe('retrying');
    expect(subscription.status.detail).toContain(
      "The URL 'ws://lab.invalid/nbws/ws?token=…' is invalid"
    );
    expect(subscription.status.detail).not.toContain('page-token-123');
    subscription.dispose();
  });
});

describe('StreamSubscription batches', () => {
  const original = (globalThis as { WebSocket?: unknown }).WebSocket;
  let subscription: StreamSubscription;
  let got: StreamMessage[];

  beforeEach(() => {
    jest.useFakeTimers();
    (globalThis as { WebSocket?: unknown }).WebSocket = FakeSocket;
    got = [];
  });

  afterEach(() => {
    subscription.dispose();
    (globalThis as { WebSocket?: unknown }).WebSocket = original;
    jest.useRealTimers();
  });

  function start(since: number | null, extra: Record<string, unknown> = {}): FakeSocket {
    subscription = new StreamSubscription(
      's',
      { since, settings, ...extra },
      { message: m => got.push(m) }
    );
    subscription.start();
    const socket = FakeSocket.last!;
    socket.open();
    return socket;
  }

  function batch(offsets: number[], epoch = 'e1'): Record<string, unknown> {
    return {
      type: 'batch',
      stream: 's',
      epoch,
      messages: offsets.map(offset => ({ offset, time: 1, payload: { offset } }))
    };
  }

  it('asks for batches by default, and not when told', () => {
    const socket = start(0);
    expect(JSON.parse(socket.sent[0])).toMatchObject({ max_batch: 1000, linger_ms: 10 });
    subscription.dispose();
    const plain = start(0, { maxBatch: null });
    expect(JSON.parse(plain.sent[0])).not.toHaveProperty('max_batch');
    expect(JSON.parse(plain.sent[0])).not.toHaveProperty('linger_ms');
  });

  it('hands over each message of a batch once, in order, and ends the replay', () => {
    const socket = start(0);
    socket.receive(subscribed(0, 5));
    socket.receive(batch([0, 1, 2]));
    expect(subscription.status.detail).toBe('live, replaying 5 messages of history');
    socket.receive(batch([2, 3, 4])); // 2 again (a resent run): skipped
    expect(got.map(m => [m.offset, m.epoch, m.stream, m.type])).toEqual([
      [0, 'e1', 's', 'message'],
      [1, 'e1', 's', 'message'],
      [2, 'e1', 's', 'message'],
      [3, 'e1', 's', 'message'],
      [4, 'e1', 's', 'message']
    ]);
    expect(got[4].payload).toEqual({ offset: 4 });
    expect(subscription.status.detail).toBe('live');
  });

  it('resumes after the last batch, across gaps and a new epoch', () => {
    const socket = start(0);
    socket.receive(subscribed(0, 0));
    socket.receive(batch([0, 1]));
    socket.receive({ type: 'gap', stream: 's', from: 2, to: 5, count: 3, reason: 'dropped' });
    socket.receive(batch([5, 6]));
    socket.onclose?.({ code: 1006, reason: '' });
    jest.runOnlyPendingTimers();
    const again = FakeSocket.last!;
    again.open();
    expect(JSON.parse(again.sent[0])).toMatchObject({ since: 7, epoch: 'e1', max_batch: 1000 });
    again.receive({ ...subscribed(0, 2), epoch: 'e2' });
    again.receive({
      type: 'gap',
      stream: 's',
      from: 7,
      to: null,
      count: null,
      reason: 'epoch',
      epoch: 'e2'
    });
    again.receive(batch([0, 1], 'e2'));
    expect(got.map(m => `${m.epoch}:${m.offset}`)).toEqual([
      'e1:0',
      'e1:1',
      'e1:5',
      'e1:6',
      'e2:0',
      'e2:1'
    ]);
    again.onclose?.({ code: 1006, reason: '' });
    jest.runOnlyPendingTimers();
    const third = FakeSocket.last!;
    third.open();
    expect(JSON.parse(third.sent[0])).toMatchObject({ since: 2, epoch: 'e2' });
  });

  it('unpacks a binary batch into binary messages', () => {
    const socket = start(0);
    socket.receive(subscribed(0, 0));
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
    socket.onmessage?.({ data: bytes.buffer });
    expect(
      got.map(m => [m.offset, m.binary, Array.from(m.data as Uint8Array), m.content_type])
    ).toEqual([
      [0, true, [7, 8], 'a/b'],
      [1, true, [9], undefined]
    ]);
  });

  it('drops the connection on a malformed batch and says why', () => {
    const socket = start(0);
    socket.receive(subscribed(0, 0));
    socket.receive({ type: 'batch', stream: 's', epoch: 'e1', messages: [] });
    expect(socket.readyState).toBe(3);
    socket.onclose?.({ code: 1000, reason: 'invalid batch' });
    expect(subscription.status.detail).toContain(
      "the server sent an invalid batch (batch needs a non-empty list 'messages')"
    );
    expect(got).toEqual([]);
  });
});
