import type { ServerConnection } from '@jupyterlab/services';

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
