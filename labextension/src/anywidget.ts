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
import {
  AnyModel,
  canOpen,
  choose,
  ChoiceDeps,
  handshake,
  newId,
  pageInfo,
  relayEndpoint
} from './handshake';
import { Endpoint, TransportName, WebSocketEndpoint } from './link';
import { StreamMonitor } from './monitor';
import { LiveTable } from './table';
import baseCss from '../style/base.css';
import uplotCss from 'uplot/dist/uPlot.min.css';

export interface RenderProps {
  model: AnyModel;
  el: HTMLElement;
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

function styleInto(container: ParentNode): void {
  if (container.querySelector(`#${STYLE_ID}`)) {
    return;
  }
  const style = document.createElement('style');
  style.id = STYLE_ID;
  style.textContent = `${uplotCss}\n${baseCss}`;
  container.appendChild(style);
}

/**
 * Put the views' CSS where `el` is shown: the document's head (once per page), or the
 * shadow root a front end renders widgets into (marimo). `el` may not be attached yet when
 * `render` runs, so the shadow root is looked for again on the next frames.
 */
export function injectStyles(el: HTMLElement, tries = 10): void {
  const root = el.getRootNode();
  if (root instanceof ShadowRoot) {
    styleInto(root);
    return;
  }
  styleInto(document.head);
  if (root !== document && tries > 0) {
    requestAnimationFrame(() => injectStyles(el, tries - 1));
  }
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
