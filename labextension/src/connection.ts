/**
 * Where the nbws endpoints of the page's own Jupyter server are and how to reach them with
 * the page's credentials: the same-origin cookie always travels; the token is added as
 * `?token=` only when JupyterLab would append it. Data never goes through the kernel.
 *
 * Settings come from `PageConfig` (the page's `#jupyter-config-data`, which JupyterLab,
 * Notebook 7 and Voila all write) and fall back to `location`, so this module works in the
 * labextension and in a widget bundle loaded into any of those pages.
 */

import { PageConfig, URLExt } from '@jupyterlab/coreutils';

import { Endpoint, redact, WebSocketEndpoint, WebSocketEndpointOptions } from './link';

/** What nbws needs of the page's server settings (JupyterLab's `ServerConnection.ISettings` has these). */
export interface PageSettings {
  readonly baseUrl: string;
  readonly wsUrl: string;
  readonly token: string;
  /** Put the token into WebSocket URLs (the server is on another host than the page). */
  readonly appendToken: boolean;
}

let cached: PageSettings | null = null;

function hostOf(url: string): string {
  const match = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(url);
  return match ? match[1].replace(/^[^@]*@/, '') : '';
}

/** The page's server settings, read once (base URL, WebSocket URL, token). */
export function serverSettings(): PageSettings {
  if (cached === null) {
    cached = readPageSettings();
  }
  return cached;
}

/** The settings `PageConfig` describes, or the page's own origin when it has none. */
export function readPageSettings(): PageSettings {
  const loc = (globalThis as { location?: { origin?: string; protocol?: string } }).location;
  const origin = loc?.origin && loc.origin !== 'null' ? loc.origin : 'http://localhost';
  let baseUrl = PageConfig.getOption('baseUrl');
  if (!/^https?:/i.test(baseUrl)) {
    baseUrl = URLExt.join(origin, baseUrl || '/');
  }
  if (!baseUrl.endsWith('/')) {
    baseUrl += '/';
  }
  let wsUrl = PageConfig.getOption('wsUrl');
  if (!/^wss?:/i.test(wsUrl)) {
    wsUrl = 'ws' + baseUrl.slice(4);
  }
  const token = PageConfig.getToken();
  const configured = PageConfig.getOption('appendToken').toLowerCase();
  const appendToken = configured === '' ? hostOf(baseUrl) !== hostOf(wsUrl) : configured === 'true';
  return { baseUrl, wsUrl, token, appendToken };
}

/**
 * A WebSocket URL under the server's base URL, e.g. `wsUrl('nbws/ws')`. The token goes into
 * the URL only when JupyterLab itself would append it (`appendToken`: the WebSocket is on
 * another host than the page); otherwise the page's cookie authenticates, so the token never
 * lands in proxy access logs (under JupyterHub it is the user's OAuth token).
 */
export function wsUrl(
  path: string,
  query: Record<string, string> = {},
  settings: PageSettings = serverSettings()
): string {
  const params = new URLSearchParams(query);
  if (settings.token && settings.appendToken) {
    params.set('token', settings.token);
  }
  const search = params.toString();
  const url = URLExt.join(settings.wsUrl, path);
  return search ? `${url}?${search}` : url;
}

/**
 * `text` as it may be shown: `token=...` (and other secret-named query values) and the
 * page's own token replaced by `…`. URLs built by `wsUrl` carry the token, and browser
 * errors (e.g. "The URL '...' is invalid") quote them.
 */
export function redactSecrets(text: string, settings?: { readonly token?: string }): string {
  return redact(text, [settings?.token]);
}

/**
 * The page's own Jupyter server as an nbws endpoint (transport `direct`): `nbws/ws` under
 * its WebSocket URL, the cookie authenticating, the token added only when JupyterLab would,
 * and failed attempts explained by asking the REST API (`diagnose`).
 */
export function jupyterPageEndpoint(
  settings: PageSettings = serverSettings(),
  extra: Pick<WebSocketEndpointOptions, 'WebSocket'> = {}
): Endpoint {
  return new WebSocketEndpoint({
    url: wsUrl('nbws/ws', {}, { ...settings, appendToken: false }),
    token: () => (settings.appendToken && settings.token ? settings.token : null),
    transport: 'direct',
    label: 'nbws/ws',
    diagnose: stream => diagnose(stream, settings),
    ...extra
  });
}

/** `nbws/api/...` path of one stream (names may contain `/`, which is encoded). */
export function streamPath(stream: string, suffix = ''): string {
  return `nbws/api/streams/${encodeURIComponent(stream)}${suffix}`;
}

/** Result of a REST call: the status and the parsed JSON body (null if none). */
export interface JsonResponse<T> {
  status: number;
  ok: boolean;
  body: T | null;
}

function cookie(name: string): string | undefined {
  const doc = (globalThis as { document?: { cookie?: string } }).document;
  const match = doc?.cookie?.match('\\b' + name + '=([^;]*)\\b');
  return match ? match[1] : undefined;
}

/**
 * Call the nbws REST API as JupyterLab's `ServerConnection` does: same-origin cookie, the
 * XSRF cookie echoed in `X-XSRFToken`, the token (if any) in an `Authorization` header,
 * never in the URL.
 */
export async function requestJson<T>(
  path: string,
  init: RequestInit = {},
  settings: PageSettings = serverSettings()
): Promise<JsonResponse<T>> {
  const headers = new Headers(init.headers);
  if (settings.token) {
    headers.set('Authorization', `token ${settings.token}`);
  }
  const xsrf = cookie('_xsrf');
  if (xsrf !== undefined) {
    headers.set('X-XSRFToken', xsrf);
  }
  if (!headers.has('Content-Type')) {
    headers.set('Content-Type', 'application/json');
  }
  const response = await fetch(URLExt.join(settings.baseUrl, path), {
    cache: 'no-store',
    credentials: 'same-origin',
    ...init,
    headers
  });
  let body: T | null = null;
  const type = response.headers.get('Content-Type') ?? '';
  if (type.includes('application/json')) {
    try {
      body = (await response.json()) as T;
    } catch {
      body = null;
    }
  }
  return { status: response.status, ok: response.ok, body };
}

/**
 * Why a WebSocket to nbws could not be opened. Browsers hide the handshake's HTTP
 * status, so ask the REST API the same question and translate its answer.
 */
export async function diagnose(
  stream: string | null,
  settings: PageSettings = serverSettings()
): Promise<string> {
  let health: JsonResponse<unknown>;
  try {
    health = await requestJson('nbws/api/health', {}, settings);
  } catch {
    return 'server gone: the Jupyter server cannot be reached (stopped, restarted on another port, or the network is down)';
  }
  if (health.status === 403 || health.status === 401) {
    return `not authorised (${health.status}): the server refused this page's Jupyter credentials; reload the page or log in again`;
  }
  if (health.status === 404) {
    return 'nbws is not enabled on this Jupyter server (nbws/api answers 404): run `jupyter server extension enable nbws` and restart';
  }
  if (!health.ok) {
    return `the server answered ${health.status} to nbws/api/health`;
  }
  if (stream !== null) {
    try {
      const info = await requestJson(streamPath(stream), {}, settings);
      if (info.status === 404) {
        return `stream "${stream}" does not exist`;
      }
    } catch {
      return 'server gone: the Jupyter server stopped answering';
    }
  }
  return 'the WebSocket upgrade was refused (the server may be at its connection limit, or a proxy drops WebSocket upgrades)';
}
