/**
 * Where the nbws endpoints are and how to reach them with the page's Jupyter
 * credentials: the same-origin cookie always travels; the token is added as `?token=`
 * when JupyterLab has one. Data never goes through the kernel.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

let cached: ServerConnection.ISettings | null = null;

/** The page's server settings (base URL, WebSocket URL, token). */
export function serverSettings(): ServerConnection.ISettings {
  if (cached === null) {
    cached = ServerConnection.makeSettings();
  }
  return cached;
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
  settings: ServerConnection.ISettings = serverSettings()
): string {
  const params = new URLSearchParams(query);
  if (settings.token && settings.appendToken) {
    params.set('token', settings.token);
  }
  const search = params.toString();
  const url = URLExt.join(settings.wsUrl, path);
  return search ? `${url}?${search}` : url;
}

const SECRET_PAIR =
  /\b([A-Za-z0-9_.-]*(?:token|password|passwd|secret|api[_-]?key|auth)[A-Za-z0-9_.-]*)=([^&#\s'"<>]+)/gi;

/**
 * `text` as it may be shown: `token=...` (and other secret-named query values) and the
 * page's own token replaced by `…`. URLs built by `wsUrl` carry the token, and browser
 * errors (e.g. "The URL '...' is invalid") quote them.
 */
export function redactSecrets(text: string, settings?: ServerConnection.ISettings): string {
  let shown = text.replace(SECRET_PAIR, (_match: string, name: string) => `${name}=…`);
  const token = settings?.token;
  if (token) {
    shown = shown.split(token).join('…');
  }
  return shown;
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

/** Call the nbws REST API (cookie + XSRF header, or token, as JupyterLab does). */
export async function requestJson<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = serverSettings()
): Promise<JsonResponse<T>> {
  const response = await ServerConnection.makeRequest(
    URLExt.join(settings.baseUrl, path),
    init,
    settings
  );
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
  settings: ServerConnection.ISettings = serverSettings()
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
