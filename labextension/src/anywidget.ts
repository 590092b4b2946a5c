/**
 * The nbws views as one anywidget module: `npm run build:esm` bundles this file (and the
 * same table/chart/monitor/inspector code the labextension's panel uses) into
 * `nbws/widgets/static/views.js`, which the Python widgets send through their comm. So a
 * widget renders wherever anywidget does (JupyterLab, Notebook 7, Voila, marimo, VS Code,
 * Colab) without the nbws labextension and without a CDN.
 *
 * Each view picks how to reach its stream, fastest first:
 * 1. it sends the kernel `{nbws: 'hello', page: {...}}` (a custom message, never state);
 * 2. the kernel answers where it publishes (`nbws/widgets/handshake.py`): `jupyter` → the
 *    page's own server with the page's credentials (direct); `embedded`/`explicit` → a URL
 *    and token (kept in memory only) the view tries to open (kernel-hosted / direct);
 * 3. when that cannot open within a few seconds, or the page is not on the kernel's
 *    Jupyter server, through the kernel (relay).
 * The choice is shown in the view's transport line and reported to the model's `transport`.
 */

import { LiveChart } from './chart';
import { jupyterPageEndpoint } from './connection';
import { BrowserFrameSource, FrameRecordJson, FrameSink, FrameSource } from './frames';
import { FrameInspector } from './inspector';
import { Endpoint, Link, TransportName, WebSocketEndpoint } from './link';
import { StreamMonitor } from './monitor';
import { LiveTable } from './table';
import baseCss from '../style/base.css';
import uplotCss from 'uplot/dist/uPlot.min.css';

/** The part of an anywidget model the views use. */
export interface AnyModel {
  get(name: string): unknown;
  set(name: string, value: unknown): void;
  save_changes(): void;
  send(content: Record<string, unknown>, callbacks?: unknown, buffers?: ArrayBuffer[]): void;
  on(event: string, callback: (...args: never[]) => void): void;
  off(event?: string | null, callback?: ((...args: never[]) => void) | null): void;
}

export interface RenderProps {
  model: AnyModel;
  el: HTMLElement;
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

function newId(): string {
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

function defaultDeps(model: AnyModel): ChoiceDeps {
  return {
    direct: () => jupyterPageEndpoint(),
    socket: (url, token, transport) =>
      new WebSocketEndpoint({ url, token: () => token || null, transport }),
    relay: () => relayEndpoint(model),
    canOpen: endpoint => canOpen(endpoint)
  };
}

// ---------------------------------------------------------------- styles

const STYLE_ID = 'nbws-views-style';

/** Put the views' CSS where `el` is rendered (the document, or marimo's shadow root). */
export function injectStyles(el: HTMLElement): void {
  const root = el.getRootNode() as Document | ShadowRoot;
  const container: ParentNode | null =
    root instanceof ShadowRoot ? root : ((root as Document).head ?? null);
  if (container === null || container.querySelector(`#${STYLE_ID}`)) {
    return;
  }
  const style = document.createElement('style');
  style.id = STYLE_ID;
  style.textContent = `${uplotCss}\n${baseCss}`;
  container.appendChild(style);
}

// ---------------------------------------------------------------- the views

/** One rendered view of a widget; `connect` gets the chosen endpoint (null: none works). */
interface Hosted {
  node: HTMLElement;
  connect(endpoint: Endpoint | null): void;
  dispose(): void;
}

function str(model: AnyModel, name: string, fallback: string): string {
  const value = model.get(name);
  return typeof value === 'string' && value ? value : fallback;
}

function num(model: AnyModel, name: string, fallback: number): number {
  return Number(model.get(name)) || fallback;
}

function tableOptions(model: AnyModel, endpoint: Endpoint | null) {
  const columns = model.get('columns') as string[] | null;
  return {
    stream: str(model, 'stream', ''),
    columns: columns && columns.length ? columns : null,
    maxRows: num(model, 'max_rows', 1000),
    height: num(model, 'height', 320),
    ...(endpoint ? { endpoint } : {})
  };
}

function chartOptions(model: AnyModel, endpoint: Endpoint | null) {
  return {
    stream: str(model, 'stream', ''),
    x: str(model, 'x', 'time'),
    y: (model.get('y') as string[]) ?? [],
    window: num(model, 'window', 500),
    height: num(model, 'height', 300),
    title: str(model, 'title', '') || undefined,
    ...(endpoint ? { endpoint } : {})
  };
}

function onChange(model: AnyModel, names: string, callback: () => void): () => void {
  const events = names.split(' ').map(name => `change:${name}`);
  for (const event of events) {
    model.on(event, callback);
  }
  return () => events.forEach(event => model.off(event, callback));
}

const views: Record<string, (model: AnyModel) => Hosted> = {
  table: model => {
    const node = document.createElement('div');
    let table: LiveTable | null = null;
    let endpoint: Endpoint | null = null;
    const build = (): void => {
      table?.dispose();
      table?.node.remove();
      table = new LiveTable(tableOptions(model, endpoint));
      node.appendChild(table.node);
      table.start();
    };
    const stop = onChange(model, 'stream columns max_rows height', () =>
      table?.update(tableOptions(model, endpoint))
    );
    const resize = new ResizeObserver(() => table?.refresh());
    resize.observe(node);
    return {
      node,
      connect: chosen => {
        endpoint = chosen;
        build();
      },
      dispose: () => {
        stop();
        resize.disconnect();
        table?.dispose();
      }
    };
  },
  chart: model => {
    const node = document.createElement('div');
    let chart: LiveChart | null = null;
    let endpoint: Endpoint | null = null;
    const stop = onChange(model, 'stream x y window height title', () =>
      chart?.update(chartOptions(model, endpoint))
    );
    return {
      node,
      connect: chosen => {
        endpoint = chosen;
        chart?.dispose();
        chart?.node.remove();
        chart = new LiveChart(chartOptions(model, endpoint));
        node.appendChild(chart.node);
        chart.start();
      },
      dispose: () => {
        stop();
        chart?.dispose();
      }
    };
  },
  monitor: model => {
    const node = document.createElement('div');
    let monitor: StreamMonitor | null = null;
    const stop = onChange(model, 'stream', () => monitor?.setStream(str(model, 'stream', '')));
    return {
      node,
      connect: chosen => {
        monitor?.dispose();
        monitor?.node.remove();
        monitor = new StreamMonitor(str(model, 'stream', ''), chosen ?? undefined);
        node.appendChild(monitor.node);
        monitor.start();
      },
      dispose: () => {
        stop();
        monitor?.dispose();
      }
    };
  },
  inspector: model => {
    const node = document.createElement('div');
    let inspector: FrameInspector | null = null;
    const build = (): void => {
      inspector?.dispose();
      inspector?.node.remove();
      let source: FrameSource;
      let title: string;
      const endpoint = str(model, 'endpoint', 'echo');
      if (model.get('source') === 'kernel') {
        source = new KernelFrameSource(model);
        title = 'FrameInspector · kernel connection';
      } else {
        const options: Record<string, string> = {};
        for (const [k, v] of Object.entries((model.get('options') as object) ?? {})) {
          options[k] = String(v);
        }
        // One label per view: two views of one widget must not tap each other's echo.
        const label = `${str(model, 'label', 'inspector')}-${newId().slice(0, 6)}`.slice(0, 64);
        source = new BrowserFrameSource({ endpoint, label, options });
        title = `FrameInspector · nbws/${endpoint} (browser)`;
      }
      inspector = new FrameInspector(title, source);
      node.appendChild(inspector.node);
      inspector.start();
    };
    const stop = onChange(model, 'source endpoint label options', build);
    return {
      node,
      connect: () => build(),
      dispose: () => {
        stop();
        inspector?.dispose();
      }
    };
  }
};

/**
 * Frames recorded by a kernel-side raw connection (nbws.explore), forwarded by the Python
 * widget as custom comm messages; the controls ask the kernel to act.
 */
export class KernelFrameSource implements FrameSource {
  readonly perspective =
    "as the kernel's client sees them: out = kernel → server, in = server → kernel";
  readonly canPing = true;
  private sink: FrameSink | null = null;
  private readonly viewId = newId();
  private readonly listener = (content: Record<string, unknown>): void => this.onMessage(content);

  constructor(private readonly model: AnyModel) {}

  checkCloseCode(code: number): string | null {
    return Number.isInteger(code) && code >= 0 && code <= 65535
      ? null
      : 'a close code is an integer 0-65535 (the kernel may send any, even invalid ones)';
  }

  start(sink: FrameSink): void {
    this.sink = sink;
    this.model.on('msg:custom', this.listener as never);
    sink.state(
      'open',
      `frames from the kernel's connection to ${str(this.model, 'url', '?')}`,
      false
    );
    this.request({ action: 'replay', view: this.viewId });
  }

  private onMessage(content: Record<string, unknown>): void {
    const sink = this.sink;
    if (sink === null || content.nbws !== undefined) {
      return;
    }
    if (content.view !== undefined && content.view !== this.viewId) {
      return; // a replay for another view of the same widget
    }
    switch (content.type) {
      case 'frames':
        for (const record of (content.frames as FrameRecordJson[]) ?? []) {
          sink.frame(record);
        }
        break;
      case 'note':
        sink.note(String(content.text ?? ''), Boolean(content.problem));
        break;
      case 'state':
        sink.state(
          String(content.state ?? ''),
          String(content.detail ?? ''),
          Boolean(content.problem)
        );
        break;
    }
  }

  private request(content: Record<string, unknown>, buffers?: ArrayBuffer[]): void {
    this.model.send(content, undefined, buffers);
  }

  sendText(text: string): void {
    this.request({ action: 'text', data: text });
  }

  sendBinary(bytes: Uint8Array): void {
    this.request({ action: 'binary' }, [bytes.slice().buffer]);
  }

  sendFragments(text: string, fragments: number): void {
    this.request({ action: 'fragments', data: text, n: fragments });
  }

  ping(payload: string): void {
    this.request({ action: 'ping', data: payload });
  }

  close(code: number, reason: string): void {
    this.request({ action: 'close', code, reason });
  }

  reconnect(): void {
    this.request({ action: 'reconnect' });
  }

  dispose(): void {
    this.model.off('msg:custom', this.listener as never);
    this.sink = null;
  }
}

/** Report the transport to the kernel (`widget.transport`); several views: the last wins. */
function report(model: AnyModel, transport: TransportName | null): void {
  if (transport !== null && model.get('transport') !== transport) {
    model.set('transport', transport);
    model.save_changes();
  }
}

/**
 * Render one view: ask the kernel where the stream is, choose the transport, then run the
 * same view class the labextension uses. Returns the cleanup anywidget calls on removal.
 */
export function render(
  { model, el }: RenderProps,
  deps: ChoiceDeps = defaultDeps(model)
): () => void {
  injectStyles(el);
  el.classList.add('nbws-widget');
  const kind = str(model, '_view', '');
  const make = views[kind];
  const line = document.createElement('div');
  line.className = 'nbws-transport';
  el.appendChild(line);
  if (make === undefined) {
    line.textContent = `nbws: no view named "${kind}" in this build of the views`;
    line.dataset.transport = 'none';
    return () => el.replaceChildren();
  }
  const hosted = make(model);
  el.appendChild(hosted.node);
  let disposed = false;
  const page = pageInfo();
  line.textContent = 'transport: asking the kernel where the stream is…';
  if (kind === 'inspector' && model.get('source') === 'kernel') {
    // Frames come from the kernel over the comm: nothing to choose.
    line.textContent = 'relay: frames of the kernel connection come through the comm';
    line.dataset.transport = 'relay';
    report(model, 'relay');
    hosted.connect(null);
    return () => hosted.dispose();
  }
  const asked = handshake(model, page, () => {
    if (!disposed && !line.dataset.transport) {
      line.textContent = 'transport: waiting for the kernel to answer (it may be busy)…';
    }
  });
  void asked.answer
    .then(answer => choose(answer, page, deps))
    .then(choice => {
      if (disposed) {
        return;
      }
      line.textContent = choice.detail;
      line.dataset.transport = choice.transport ?? 'none';
      line.classList.toggle('nbws-mod-problem', choice.endpoint === null);
      report(model, choice.transport);
      if (choice.endpoint !== null || kind === 'inspector') {
        hosted.connect(choice.endpoint);
      }
    });
  return () => {
    disposed = true;
    asked.cancel();
    hosted.dispose();
  };
}

export default { render };
