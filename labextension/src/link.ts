/**
 * How a page reaches one nbws server, whatever carries the bytes: a WebSocket to the page's
 * own Jupyter server (direct), a WebSocket to a server the kernel hosts (kernel-hosted), or
 * the widget's comm through the kernel (relay). The page connection manager (page.ts) opens
 * one `Link` per `Endpoint` and speaks nbws.v1 over it; nothing above this layer knows which
 * transport is in use except to name it in a status line.
 */

export type TransportName = 'direct' | 'kernel-hosted' | 'relay';

/** What a link tells its owner. */
export interface LinkEvents {
  opened(): void;
  /** One nbws.v1 message (a WebSocket message's data, text or binary). */
  received(data: string | ArrayBuffer): void;
  /** The link is gone; `wasOpen` false means it never opened (diagnose why). */
  closed(code: number, reason: string, wasOpen: boolean): void;
}

/** One open (or opening) link. */
export interface Link {
  send(text: string): void;
  close(code: number, reason: string): void;
}

/** A server and the way to reach it; `open` is called again for each reconnect. */
export interface Endpoint {
  /** One page connection per key (e.g. the WebSocket URL without credentials). */
  readonly key: string;
  readonly transport: TransportName;
  /** Shown to the user; never contains a token. */
  readonly label: string;
  open(events: LinkEvents): Link;
  /** One readable sentence: why the last `open` failed. */
  diagnose(stream: string | null): Promise<string>;
}

const SECRET_PAIR =
  /\b([A-Za-z0-9_.-]*(?:token|password|passwd|secret|api[_-]?key|auth)[A-Za-z0-9_.-]*)=([^&#\s'"<>]+)/gi;

/**
 * `text` as it may be shown: `token=...` (and other secret-named query values) and each of
 * `secrets` replaced by `…`. Browser errors quote the URL they were given (e.g. "The URL
 * '...' is invalid"), and that URL may carry a token.
 */
export function redact(text: string, secrets: readonly (string | null | undefined)[] = []): string {
  let shown = text.replace(SECRET_PAIR, (_match: string, name: string) => `${name}=…`);
  for (const secret of secrets) {
    if (secret) {
      shown = shown.split(secret).join('…');
    }
  }
  return shown;
}

/** The subprotocol every nbws.v1 link asks for. */
export const NBWS_PROTOCOL = 'nbws.v1';

/** The part of the browser's WebSocket a link uses (tests pass a fake constructor). */
export interface WebSocketLike {
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocol: string) => WebSocketLike;

export interface WebSocketEndpointOptions {
  /** `ws://` or `wss://` URL of `nbws/ws`, without credentials. */
  url: string;
  /** The token to send as `?token=`, asked for on each attempt (null: cookie only). */
  token?: () => string | null | undefined;
  transport?: TransportName;
  /** Shown to the user (default: the URL); must not contain a token. */
  label?: string;
  /** Why an attempt failed (default: a generic sentence naming the label). */
  diagnose?: (stream: string | null) => Promise<string>;
  /** Default: the browser's `WebSocket`. */
  WebSocket?: WebSocketConstructor;
}

/**
 * An nbws server reached by a WebSocket of its own (direct, or one a kernel hosts). The
 * token lives only in this object's callback: it is added to the URL of each attempt and
 * taken out of any text shown (labels, close reasons, browser errors).
 */
export class WebSocketEndpoint implements Endpoint {
  readonly key: string;
  readonly transport: TransportName;
  readonly label: string;

  constructor(private readonly options: WebSocketEndpointOptions) {
    this.transport = options.transport ?? 'direct';
    this.key = `${this.transport} ${stripCredentials(options.url)}`;
    this.label = this.redact(options.label ?? stripCredentials(options.url));
  }

  /** `text` without this endpoint's token (or any `token=` value). */
  redact(text: string): string {
    return redact(text, [this.options.token?.()]);
  }

  open(events: LinkEvents): Link {
    const Socket =
      this.options.WebSocket ??
      (globalThis as unknown as { WebSocket: WebSocketConstructor }).WebSocket;
    let socket: WebSocketLike;
    try {
      socket = new Socket(this.attemptUrl(), NBWS_PROTOCOL);
    } catch (error) {
      // Reported like any failed attempt, but after `open` returned (the caller holds the link).
      const reason = `cannot open a WebSocket: ${this.redact(String(error))}`;
      setTimeout(() => events.closed(1006, reason, false), 0);
      return { send: () => undefined, close: () => undefined };
    }
    socket.binaryType = 'arraybuffer';
    let opened = false;
    let closed = false;
    socket.onopen = () => {
      opened = true;
      events.opened();
    };
    socket.onmessage = event => {
      if (!closed) {
        events.received(event.data as string | ArrayBuffer);
      }
    };
    socket.onclose = event => {
      if (!closed) {
        closed = true;
        events.closed(event.code, this.redact(event.reason), opened);
      }
    };
    return {
      send: (text: string) => socket.send(text),
      close: (code: number, reason: string) => {
        // Closed by its owner: no `closed` event for it.
        closed = true;
        socket.onopen = null;
        socket.onmessage = null;
        socket.onclose = null;
        socket.close(code, reason);
      }
    };
  }

  diagnose(stream: string | null): Promise<string> {
    if (this.options.diagnose) {
      return this.options.diagnose(stream);
    }
    return Promise.resolve(
      `the WebSocket to ${this.label} could not be opened (server stopped, wrong address, or the upgrade was refused)`
    );
  }

  private attemptUrl(): string {
    const token = this.options.token?.();
    if (!token) {
      return this.options.url;
    }
    const url = this.options.url;
    const hash = url.indexOf('#');
    const base = hash < 0 ? url : url.slice(0, hash);
    const separator = base.includes('?') ? '&' : '?';
    return `${base}${separator}token=${encodeURIComponent(token)}`;
  }
}

/** The URL without user info and without secret-named query values. */
function stripCredentials(url: string): string {
  return redact(url.replace(/^([a-z]+:\/\/)[^/@]*@/i, '$1'));
}
