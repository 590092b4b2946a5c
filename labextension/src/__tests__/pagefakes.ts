/**
 * An in-memory endpoint for the page connection tests: the test plays the server, and
 * every request the page sends is decoded with protocol.ts `decodeRequest`, so what the
 * tests read is valid nbws.v1.
 */
import type { Endpoint, Link, LinkEvents } from '../link';
import { ControlMessage, decodeRequest, StreamMessage } from '../protocol';
import type { SubscriptionHandlers, SubscriptionStatus } from '../subscription';

export class FakeLink implements Link {
  sent: ControlMessage[] = [];
  closedWith: [number, string] | null = null;

  constructor(private readonly events: LinkEvents) {}

  send(text: string): void {
    this.sent.push(decodeRequest(text));
  }

  close(code: number, reason: string): void {
    this.closedWith = [code, reason];
  }

  open(): void {
    this.events.opened();
  }

  receive(message: Record<string, unknown>): void {
    this.events.received(JSON.stringify(message));
  }

  receiveBinary(data: ArrayBuffer): void {
    this.events.received(data);
  }

  drop(code = 1006, reason = '', wasOpen = true): void {
    this.events.closed(code, reason, wasOpen);
  }

  /** The requests of one type, e.g. every `subscribe`. */
  of(type: string): ControlMessage[] {
    return this.sent.filter(m => m.type === type);
  }
}

export class FakeEndpoint implements Endpoint {
  readonly transport = 'direct' as const;
  readonly label = 'the fake server';
  links: FakeLink[] = [];
  diagnosis = 'the fake server says no';

  constructor(readonly key = 'fake') {}

  open(events: LinkEvents): Link {
    const link = new FakeLink(events);
    this.links.push(link);
    return link;
  }

  diagnose(): Promise<string> {
    return Promise.resolve(this.diagnosis);
  }

  get last(): FakeLink {
    return this.links[this.links.length - 1];
  }
}

export function subscribed(
  stream: string,
  ref: unknown,
  first: number,
  next: number,
  epoch = 'e1'
): Record<string, unknown> {
  return {
    type: 'subscribed',
    ref,
    stream,
    epoch,
    first,
    next,
    since: null,
    policy: 'drop-oldest',
    max_messages: 1000,
    max_bytes: 1 << 20,
    max_batch: 1000,
    linger_ms: 10
  };
}

export function batch(stream: string, offsets: number[], epoch = 'e1'): Record<string, unknown> {
  return {
    type: 'batch',
    stream,
    epoch,
    messages: offsets.map(offset => ({ offset, time: 1, payload: { offset } }))
  };
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** A view that records what it got. */
export class Recorder {
  got: number[] = [];
  statuses: SubscriptionStatus[] = [];
  gaps = 0;
  controls: string[] = [];
  readonly handlers: SubscriptionHandlers = {
    message: (m: StreamMessage) => this.got.push(m.offset),
    gap: () => (this.gaps += 1),
    status: s => this.statuses.push(s),
    control: m => this.controls.push(m.type)
  };
  get detail(): string {
    return this.statuses[this.statuses.length - 1].detail;
  }
}

/** Animation frames run when the test says so. */
export class Frames {
  queued: (() => void)[] = [];
  readonly schedule = (callback: () => void): void => {
    this.queued.push(callback);
  };
  run(): void {
    const now = this.queued;
    this.queued = [];
    now.forEach(callback => callback());
  }
}

export const flushMicrotasks = (): Promise<void> => new Promise(resolve => setImmediate(resolve));
