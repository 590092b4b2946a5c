/**
 * The view side of the transport handshake: the hello a view sends, which answer it takes,
 * and the transport it picks for each answer (fastest first, relay last).
 */
import {
  AnyModel,
  canOpen,
  ChoiceDeps,
  choose,
  EndpointAnswer,
  handshake,
  PageInfo
} from '../handshake';
import type { Endpoint, Link, LinkEvents, TransportName } from '../link';

type Listener = (content: Record<string, unknown>) => void;

class FakeModel implements AnyModel {
  sent: Record<string, unknown>[] = [];
  listeners: Listener[] = [];
  state: Record<string, unknown> = {};
  get(name: string): unknown {
    return this.state[name];
  }
  set(name: string, value: unknown): void {
    this.state[name] = value;
  }
  save_changes(): void {}
  send(content: Record<string, unknown>): void {
    this.sent.push(content);
  }
  on(_event: string, callback: (...args: never[]) => void): void {
    this.listeners.push(callback as unknown as Listener);
  }
  off(_event?: string | null, callback?: ((...args: never[]) => void) | null): void {
    this.listeners = this.listeners.filter(l => l !== (callback as unknown));
  }
  deliver(content: Record<string, unknown>): void {
    for (const listener of [...this.listeners]) {
      listener(content);
    }
  }
}

class Probe implements Endpoint {
  readonly key: string;
  readonly label: string;
  opened: Link[] = [];
  closed: [number, string][] = [];
  constructor(
    readonly transport: TransportName,
    private readonly behaviour: 'open' | 'refuse' | 'hang',
    url = 'ws://127.0.0.1:1/nbws/ws'
  ) {
    this.key = `${transport} ${url}`;
    this.label = url;
  }
  open(events: LinkEvents): Link {
    const link = {
      send: () => undefined,
      close: (code: number, reason: string) => void this.closed.push([code, reason])
    };
    this.opened.push(link);
    if (this.behaviour === 'open') {
      setTimeout(() => events.opened(), 0);
    } else if (this.behaviour === 'refuse') {
      setTimeout(() => events.closed(1006, '', false), 0);
    }
    return link;
  }
  diagnose(): Promise<string> {
    return Promise.resolve('no');
  }
}

const JUPYTER_PAGE: PageInfo = { origin: 'http://127.0.0.1:8888', jupyter: true };
const OTHER_PAGE: PageInfo = { origin: 'http://localhost:2718', jupyter: false };

function deps(
  socket: 'open' | 'refuse',
  relay: Endpoint | null = null
): ChoiceDeps & { made: [string, string, string][] } {
  const made: [string, string, string][] = [];
  return {
    made,
    direct: () => new Probe('direct', 'open', 'nbws/ws'),
    socket: (url, token, transport) => {
      made.push([url, token, transport]);
      return new Probe(transport, socket, url);
    },
    relay: () => relay,
    canOpen: endpoint => canOpen(endpoint, 1000)
  };
}

describe('handshake', () => {
  it('sends one hello with what the page knows and takes only the answer to this view', async () => {
    const model = new FakeModel();
    const asked = handshake(model, OTHER_PAGE);
    expect(model.sent).toHaveLength(1);
    const hello = model.sent[0];
    expect(hello).toMatchObject({
      nbws: 'hello',
      page: { origin: 'http://localhost:2718', jupyter: false }
    });
    const view = hello.view as string;
    expect(view).toMatch(/^[a-z0-9]+$/);
    model.deliver({ type: 'frames', frames: [] }); // the inspector's traffic
    model.deliver({ nbws: 'endpoint', view: 'another-view', kind: 'jupyter' });
    model.deliver({
      nbws: 'endpoint',
      view,
      kind: 'embedded',
      url: 'ws://127.0.0.1:5/nbws/ws',
      token: 't'
    });
    await expect(asked.answer).resolves.toEqual({
      kind: 'embedded',
      url: 'ws://127.0.0.1:5/nbws/ws',
      token: 't',
      error: undefined
    });
    expect(model.listeners).toHaveLength(0);
  });

  it('tells the view when the kernel is slow to answer', () => {
    jest.useFakeTimers();
    try {
      const model = new FakeModel();
      const waiting = jest.fn();
      const asked = handshake(model, JUPYTER_PAGE, waiting, 5000);
      jest.advanceTimersByTime(4999);
      expect(waiting).not.toHaveBeenCalled();
      jest.advanceTimersByTime(1);
      expect(waiting).toHaveBeenCalledTimes(1);
      asked.cancel();
      expect(model.listeners).toHaveLength(0);
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('choose', () => {
  it('uses the page’s own server when the kernel publishes to it (direct)', async () => {
    const choice = await choose({ kind: 'jupyter' }, JUPYTER_PAGE, deps('refuse'));
    expect(choice.transport).toBe('direct');
    expect(choice.endpoint?.transport).toBe('direct');
    expect(choice.detail).toMatch(/^direct: /);
  });

  it('opens the kernel’s own server when it can (kernel-hosted), token kept out of the text', async () => {
    const d = deps('open');
    const answer: EndpointAnswer = {
      kind: 'embedded',
      url: 'ws://127.0.0.1:5/nbws/ws',
      token: 'sekrit'
    };
    const choice = await choose(answer, OTHER_PAGE, d);
    expect(choice.transport).toBe('kernel-hosted');
    expect(d.made).toEqual([['ws://127.0.0.1:5/nbws/ws', 'sekrit', 'kernel-hosted']]);
    expect(choice.detail).toMatch(/^kernel-hosted: .*ws:\/\/127\.0\.0\.1:5\/nbws\/ws$/);
    expect(choice.detail).not.toContain('sekrit');
    const probe = choice.endpoint as Probe;
    expect(probe.closed).toEqual([[1000, 'probe done']]); // the probe link is not kept open
  });

  it('names an explicit NBWS_URL server direct', async () => {
    const choice = await choose(
      { kind: 'explicit', url: 'ws://h:1/nbws/ws', token: '' },
      OTHER_PAGE,
      deps('open')
    );
    expect(choice.transport).toBe('direct');
  });

  it('falls back to the relay when the kernel’s server cannot be reached', async () => {
    const relay = new Probe('relay', 'open');
    const choice = await choose(
      { kind: 'embedded', url: 'ws://127.0.0.1:5/nbws/ws', token: 't' },
      OTHER_PAGE,
      deps('refuse', relay)
    );
    expect(choice.endpoint).toBe(relay);
    expect(choice.transport).toBe('relay');
    expect(choice.detail).toMatch(/^relay: .*updates pause while the kernel/);
  });

  it('uses the relay when the kernel’s Jupyter server is not the page’s', async () => {
    const relay = new Probe('relay', 'open');
    const choice = await choose({ kind: 'jupyter' }, OTHER_PAGE, deps('open', relay));
    expect(choice.transport).toBe('relay');
  });

  it('says the relay is needed when this build has none', async () => {
    const choice = await choose(
      { kind: 'embedded', url: 'ws://127.0.0.1:5/nbws/ws', token: 't' },
      OTHER_PAGE,
      deps('refuse')
    );
    expect(choice.endpoint).toBeNull();
    expect(choice.transport).toBeNull();
    expect(choice.detail).toMatch(/relay through the kernel is needed/);
  });

  it('passes on why the kernel has no server', async () => {
    const choice = await choose(
      { kind: 'none', error: 'cannot find an nbws server: x' },
      JUPYTER_PAGE,
      deps('open')
    );
    expect(choice.endpoint).toBeNull();
    expect(choice.detail).toContain('cannot find an nbws server: x');
  });
});

describe('canOpen', () => {
  it('gives up after the timeout and closes the attempt', async () => {
    const hanging = new Probe('kernel-hosted', 'hang');
    await expect(canOpen(hanging, 20)).resolves.toBe(false);
    expect(hanging.closed).toEqual([[1000, 'probe timed out']]);
  });
});
