import {
  jupyterPageEndpoint,
  PageSettings,
  readPageSettings,
  redactSecrets,
  wsUrl
} from '../connection';
import { WebSocketEndpoint, WebSocketLike } from '../link';

describe('redactSecrets', () => {
  it('hides secret query values and keeps the rest', () => {
    expect(redactSecrets('nbws/echo?tap=L&token=abc123&fragment=4')).toBe(
      'nbws/echo?tap=L&token=…&fragment=4'
    );
    expect(redactSecrets("The URL 'ws://h/nbws/ws?access_token=xyz' is invalid.")).toBe(
      "The URL 'ws://h/nbws/ws?access_token=…' is invalid."
    );
    expect(redactSecrets('password=hunter2 api_key=k1')).toBe('password=… api_key=…');
    expect(redactSecrets('nbws/echo?fragment=4')).toBe('nbws/echo?fragment=4');
  });

  it("hides the page's own token wherever it appears", () => {
    const settings = { token: 's3cr3t-token-value' };
    expect(redactSecrets('failed: s3cr3t-token-value was refused', settings)).toBe(
      'failed: … was refused'
    );
  });
});

describe('wsUrl', () => {
  const base = {
    baseUrl: 'http://lab.example/user/a/',
    wsUrl: 'ws://lab.example/user/a/',
    token: 'secret-token'
  } as const;

  it('leaves the token out when the cookie authenticates (same host)', () => {
    const settings = { ...base, appendToken: false } as unknown as Parameters<typeof wsUrl>[2];
    expect(wsUrl('nbws/ws', { a: '1' }, settings)).toBe('ws://lab.example/user/a/nbws/ws?a=1');
  });

  it('appends the token when JupyterLab would (another host)', () => {
    const settings = { ...base, appendToken: true } as unknown as Parameters<typeof wsUrl>[2];
    expect(wsUrl('nbws/ws', {}, settings)).toBe(
      'ws://lab.example/user/a/nbws/ws?token=secret-token'
    );
  });
});

/** Records the sockets a link opens; the test closes them. */
class RecordingSocket implements WebSocketLike {
  static made: RecordingSocket[] = [];
  binaryType = 'blob';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  sent: string[] = [];
  closed: [number | undefined, string | undefined] | null = null;

  constructor(
    readonly url: string,
    readonly protocol: string
  ) {
    RecordingSocket.made.push(this);
  }

  send(data: string): void {
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closed = [code, reason];
  }
}

describe('jupyterPageEndpoint', () => {
  const page: PageSettings = {
    baseUrl: 'http://lab.example/user/a/',
    wsUrl: 'ws://hub.example/user/a/',
    token: 'page-token-123',
    appendToken: true
  };

  beforeEach(() => {
    RecordingSocket.made = [];
  });

  it('opens nbws/ws with nbws.v1, binary as ArrayBuffer, the token only in the attempt URL', () => {
    const endpoint = jupyterPageEndpoint(page, { WebSocket: RecordingSocket });
    const events = { opened: jest.fn(), received: jest.fn(), closed: jest.fn() };
    const link = endpoint.open(events);
    const socket = RecordingSocket.made[0];
    expect(socket.url).toBe('ws://hub.example/user/a/nbws/ws?token=page-token-123');
    expect(socket.protocol).toBe('nbws.v1');
    expect(socket.binaryType).toBe('arraybuffer');
    expect(endpoint.transport).toBe('direct');
    expect(endpoint.key).not.toContain('page-token-123');
    expect(endpoint.label).not.toContain('page-token-123');
    socket.onopen?.({});
    socket.onmessage?.({ data: '{"type":"status","state":"ok"}' });
    expect(events.opened).toHaveBeenCalledTimes(1);
    expect(events.received).toHaveBeenCalledWith('{"type":"status","state":"ok"}');
    socket.onclose?.({ code: 1008, reason: 'bad token page-token-123' });
    expect(events.closed).toHaveBeenCalledWith(1008, 'bad token …', true);
    link.close(1000, 'bye');
    expect(socket.closed).toEqual([1000, 'bye']);
  });

  it('leaves the token out when the cookie authenticates', () => {
    const endpoint = jupyterPageEndpoint(
      { ...page, wsUrl: 'ws://lab.example/user/a/', appendToken: false },
      { WebSocket: RecordingSocket }
    );
    endpoint.open({ opened: jest.fn(), received: jest.fn(), closed: jest.fn() });
    expect(RecordingSocket.made[0].url).toBe('ws://lab.example/user/a/nbws/ws');
  });

  it('is one key for one server, whatever the token', () => {
    const one = jupyterPageEndpoint(page);
    const two = jupyterPageEndpoint({ ...page, token: 'another' });
    expect(one.key).toBe(two.key);
    expect(jupyterPageEndpoint({ ...page, wsUrl: 'ws://other/' }).key).not.toBe(one.key);
  });

  it('reports a browser error on open as a failed attempt, without the token', async () => {
    class Refusing {
      constructor(url: string) {
        throw new Error(`Failed to construct 'WebSocket': The URL '${url}' is invalid.`);
      }
    }
    const endpoint = new WebSocketEndpoint({
      url: 'ws://lab.invalid/nbws/ws',
      token: () => 'page-token-123',
      WebSocket: Refusing as unknown as typeof RecordingSocket
    });
    const closed = jest.fn();
    endpoint.open({ opened: jest.fn(), received: jest.fn(), closed });
    await new Promise(resolve => setTimeout(resolve, 5));
    expect(closed).toHaveBeenCalledTimes(1);
    const [code, reason, wasOpen] = closed.mock.calls[0] as [number, string, boolean];
    expect([code, wasOpen]).toEqual([1006, false]);
    expect(reason).toContain("The URL 'ws://lab.invalid/nbws/ws?token=…' is invalid");
    expect(reason).not.toContain('page-token-123');
  });
});

describe('readPageSettings', () => {
  it("falls back to the page's own origin when the page has no Jupyter config", () => {
    const holder = globalThis as { location?: unknown };
    const saved = holder.location;
    holder.location = { origin: 'https://voila.example', protocol: 'https:' };
    try {
      expect(readPageSettings()).toEqual({
        baseUrl: 'https://voila.example/',
        wsUrl: 'wss://voila.example/',
        token: '',
        appendToken: false
      });
    } finally {
      holder.location = saved;
    }
  });
});
