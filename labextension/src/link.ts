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
