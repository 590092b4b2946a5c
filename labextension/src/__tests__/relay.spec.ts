import type { LinkEvents } from '../link';
import { RELAY_NOTICE, RELAY_UNREACHABLE, RelayEndpoint, type RelayModel } from '../relay';

type Handler = (content: unknown, buffers?: unknown[]) => void;

class FakeModel implements RelayModel {
  sent: Record<string, unknown>[] = [];
  handlers: Handler[] = [];
  send(content: unknown): void {
    this.sent.push(content as Record<string, unknown>);
  }
  on(_event: 'msg:custom', callback: Handler): void {
    this.handlers.push(callback);
  }
  off(_event: 'msg:custom', callback: Handler): void {
    this.handlers = this.handlers.filter(h => h !== callback);
  }
  fromKernel(content: unknown, buffers: unknown[] = []): void {
    for (const handler of [...this.handlers]) {
      handler(content, buffers);
    }
  }
}

function recorder(): LinkEvents & { log: unknown[] } {
  const log: unknown[] = [];
  return {
    log,
    opened: () => log.push('opened'),
    received: data => log.push(data),
    closed: (code, reason, wasOpen) => log.push({ code, reason, wasOpen })
  };
}

/** The id of the link the endpoint opened last. */
function lastOpen(model: FakeModel): number {
  const opens = model.sent.filter(m => m.nbws === 'relay-open');
  return opens[opens.length - 1].link as number;
}

function setup() {
  const model = new FakeModel();
  const acks: (() => void)[] = [];
  const endpoint = new RelayEndpoint(model, ack => acks.push(ack));
  return { model, acks, endpoint };
}

describe('RelayEndpoint', () => {
  it('opens a link through the kernel and passes requests through', () => {
    const { model, endpoint } = setup();
    const events = recorder();
    const link = endpoint.open(events);
    const id = lastOpen(model);
    expect(endpoint.transport).toBe('relay');
    expect(model.sent).toEqual([{ nbws: 'relay-open', link: id }]);
    model.fromKernel({ nbws: 'relay-opened', link: id });
    expect(events.log).toEqual(['opened']);
    link.send('{"type":"subscribe","stream":"s"}');
    expect(model.sent[1]).toEqual({
      nbws: 'relay-send',
      link: id,
      text: '{"type":"subscribe","stream":"s"}'
    });
  });

  it('hands over text and binary frames in order and acks after the page took them', () => {
    const { model, acks, endpoint } = setup();
    const events = recorder();
    endpoint.open(events);
    const id = lastOpen(model);
    model.fromKernel({ nbws: 'relay-opened', link: id });
    const bytes = new Uint8Array([9, 8, 7, 6]);
    const view = new DataView(bytes.buffer, 1, 2); // ipywidgets hands buffers as DataViews
    model.fromKernel({ nbws: 'relay-batch', link: id, batch: 1, frames: ['a', 0, 'b'] }, [view]);
    expect(events.log.slice(1, 2)).toEqual(['a']);
    const binary = events.log[2] as ArrayBuffer;
    expect(Array.from(new Uint8Array(binary))).toEqual([8, 7]);
    expect(events.log[3]).toBe('b');
    expect(model.sent.filter(m => m.nbws === 'relay-ack')).toEqual([]); // not before the frame
    acks.forEach(ack => ack());
    expect(model.sent.filter(m => m.nbws === 'relay-ack')).toEqual([
      { nbws: 'relay-ack', link: id, batch: 1 }
    ]);
  });

  it('ignores messages for other links and other kinds of custom message', () => {
    const { model, endpoint } = setup();
    const events = recorder();
    endpoint.open(events);
    const id = lastOpen(model);
    model.fromKernel({ nbws: 'relay-opened', link: id + 1 });
    model.fromKernel({ nbws: 'endpoint', kind: 'jupyter' });
    model.fromKernel('not an object');
    expect(events.log).toEqual([]);
  });

  it('reports a link that never opened and says why', async () => {
    const { model, endpoint } = setup();
    const events = recorder();
    expect(await endpoint.diagnose('s')).toBe(RELAY_UNREACHABLE);
    endpoint.open(events);
    const id = lastOpen(model);
    const reason = 'the kernel could not reach the nbws server (ConnectionRefusedError)';
    model.fromKernel({ nbws: 'relay-closed', link: id, code: 1011, reason, was_open: false });
    expect(events.log).toEqual([{ code: 1011, reason, wasOpen: false }]);
    expect(await endpoint.diagnose('s')).toBe(reason);
    expect(endpoint.openLinks).toBe(0);
    expect(model.handlers).toEqual([]); // no listener left behind
  });

  it('closes a link: tells the kernel, reports it once, and acks nothing after', () => {
    const { model, acks, endpoint } = setup();
    const events = recorder();
    const link = endpoint.open(events);
    const id = lastOpen(model);
    model.fromKernel({ nbws: 'relay-opened', link: id });
    model.fromKernel({ nbws: 'relay-batch', link: id, batch: 1, frames: ['x'] });
    link.close(1000, 'idle');
    model.fromKernel({
      nbws: 'relay-closed',
      link: id,
      code: 1000,
      reason: 'idle',
      was_open: true
    });
    acks.forEach(ack => ack());
    expect(model.sent.map(m => m.nbws)).toEqual(['relay-open', 'relay-close']);
    expect(events.log).toEqual(['opened', 'x', { code: 1000, reason: 'idle', wasOpen: true }]);
    link.send('late');
    expect(model.sent).toHaveLength(2);
  });

  it('reconnects with a new link id, and keys page connections by model', () => {
    const { model, endpoint } = setup();
    endpoint.open(recorder());
    const id = lastOpen(model);
    model.fromKernel({ nbws: 'relay-closed', link: id, code: 1006, reason: '', was_open: true });
    endpoint.open(recorder());
    const [first, second] = model.sent.map(m => m.link as number);
    expect(second).toBeGreaterThan(first);
    expect(new RelayEndpoint(model).key).toBe(endpoint.key);
    expect(new RelayEndpoint(new FakeModel()).key).not.toBe(endpoint.key);
  });

  it('says what relay costs and how to get the direct path, with no secret in its label', () => {
    expect(RELAY_NOTICE).toContain('pause while the kernel is busy');
    expect(RELAY_NOTICE).toContain('pip install nbws');
    expect(setup().endpoint.label).not.toMatch(/token/i);
  });
});
