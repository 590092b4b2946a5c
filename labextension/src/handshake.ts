/**
 * How a widget view finds its stream: the hello/endpoint exchange with the kernel over the
 * widget's custom messages (the Python side is nbws/widgets/handshake.py), and the choice of
 * transport, fastest first: the page's own Jupyter server (direct), the server the kernel
 * publishes to (kernel-hosted, or direct for an explicit `NBWS_URL`) when a WebSocket to it
 * opens within a few seconds, else the relay through the kernel. No DOM, no view code: the
 * choice is tested with fake endpoints.
 */

import { Endpoint, Link, TransportName } from './link';

/** The part of an anywidget model the views use. */
export interface AnyModel {
  get(name: string): unknown;
  set(name: string, value: unknown): void;
  save_changes(): void;
  send(content: Record<string, unknown>, callbacks?: unknown, buffers?: ArrayBuffer[]): void;
  on(event: string, callback: (...args: never[]) => void): void;
  off(event?: string | null, callback?: ((...args: never[]) => void) | null): void;
}

/** What the kernel answered a view's hello (see nbws/widgets/handshake.py). */
export interface EndpointAnswer {
  kind: 'jupyter' | 'embedded' | 'explicit' | 'none';
  url?: string;
  token?: string;
  error?: string;
}

/** What a view knows about its page, told to the kernel in its hello. */
export interface PageInfo {
  origin: string | null;
  /** The page carries Jupyter page config: its own server is reachable with its credentials. */
  jupyter: boolean;
}

/** How long a kernel-hosted (or explicit) WebSocket may take to open before the relay. */
export const PROBE_TIMEOUT_MS = 4000;

export function pageInfo(doc: Document | undefined = globalThis.document): PageInfo {
  const origin = globalThis.location?.origin;
  return {
    origin: origin && origin !== 'null' ? origin : null,
    jupyter: Boolean(doc?.getElementById('jupyter-config-data'))
  };
}

export function newId(): string {
  return Math.random().toString(36).slice(2, 12);
}

/**
 * Send the hello and wait for the kernel's answer to this view (the kernel answers when it
 * is idle, so there is no time limit; `onWaiting` is told after `patienceMs`).
 */
export function handshake(
  model: AnyModel,
  page: PageInfo,
  onWaiting: () => void = () => undefined,
  patienceMs = 5000
): { answer: Promise<EndpointAnswer>; cancel(): void } {
  const view = newId();
  let listener: ((content: Record<string, unknown>) => void) | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const cancel = (): void => {
    if (listener !== null) {
      model.off('msg:custom', listener as never);
      listener = null;
    }
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
  };
  const answer = new Promise<EndpointAnswer>(resolve => {
    listener = (content: Record<string, unknown>) => {
      if (content?.nbws !== 'endpoint' || content.view !== view) {
        return;
      }
      cancel();
      resolve({
        kind: (['jupyter', 'embedded', 'explicit'].includes(String(content.kind))
          ? content.kind
          : 'none') as EndpointAnswer['kind'],
        url: typeof content.url === 'string' ? content.url : undefined,
        token: typeof content.token === 'string' ? content.token : undefined,
        error: typeof content.error === 'string' ? content.error : undefined
      });
    };
    model.on('msg:custom', listener as never);
    timer = setTimeout(onWaiting, patienceMs);
    model.send({ nbws: 'hello', view, page: { origin: page.origin, jupyter: page.jupyter } });
  });
  return { answer, cancel };
}

/** Whether `endpoint` opens within `timeoutMs` (the probe link is closed either way). */
export function canOpen(endpoint: Endpoint, timeoutMs = PROBE_TIMEOUT_MS): Promise<boolean> {
  return new Promise<boolean>(resolve => {
    let done = false;
    let link: Link | null = null;
    const finish = (ok: boolean): void => {
      if (done) {
        return;
      }
      done = true;
      clearTimeout(timer);
      link?.close(1000, ok ? 'probe done' : 'probe timed out');
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    link = endpoint.open({
      opened: () => finish(true),
      received: () => undefined,
      closed: () => {
        link = null;
        finish(false);
      }
    });
    if (done) {
      link?.close(1000, 'probe done');
    }
  });
}

/**
 * The relay endpoint for this model (the kernel forwards nbws.v1 over the comm), or null
 * while this build has none. relay.ts plugs in here.
 */
export function relayEndpoint(_model: AnyModel): Endpoint | null {
  return null;
}

/** The endpoint a view uses, and the sentence its transport line shows. */
export interface Choice {
  endpoint: Endpoint | null;
  transport: TransportName | null;
  detail: string;
}

export interface ChoiceDeps {
  direct(): Endpoint;
  socket(url: string, token: string, transport: TransportName): Endpoint;
  relay(): Endpoint | null;
  canOpen(endpoint: Endpoint): Promise<boolean>;
}

function viaRelay(deps: ChoiceDeps, why: string): Choice {
  const relay = deps.relay();
  if (relay === null) {
    return {
      endpoint: null,
      transport: null,
      detail: `${why}; the relay through the kernel is needed, which this nbws build lacks`
    };
  }
  return {
    endpoint: relay,
    transport: 'relay',
    detail: `relay: ${why}, so data comes through the kernel (updates pause while the kernel's output is blocked; install nbws into the Jupyter server's environment for the direct path)`
  };
}

/** Pick the fastest transport that works for `answer` on this page (see the module doc). */
export async function choose(
  answer: EndpointAnswer,
  page: PageInfo,
  deps: ChoiceDeps
): Promise<Choice> {
  if (answer.kind === 'none') {
    return {
      endpoint: null,
      transport: null,
      detail: `the kernel has no nbws server to publish to: ${answer.error ?? 'unknown reason'}`
    };
  }
  if (answer.kind === 'jupyter') {
    if (page.jupyter) {
      return {
        endpoint: deps.direct(),
        transport: 'direct',
        detail: "direct: nbws/ws on this page's Jupyter server"
      };
    }
    return viaRelay(deps, "the kernel's Jupyter server is not this page's");
  }
  const transport: TransportName = answer.kind === 'embedded' ? 'kernel-hosted' : 'direct';
  const endpoint = deps.socket(answer.url ?? '', answer.token ?? '', transport);
  if (answer.url && (await deps.canOpen(endpoint))) {
    const whose = answer.kind === 'embedded' ? "the kernel's own nbws server" : 'the nbws server';
    return { endpoint, transport, detail: `${transport}: ${whose} at ${endpoint.label}` };
  }
  return viaRelay(deps, `this page cannot reach ${endpoint.label}`);
}
