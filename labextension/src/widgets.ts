/**
 * The ipywidgets 8 models and views of `nbws.widgets`. The models carry only
 * configuration (stream, columns, fields, ...); each view subscribes from the browser
 * straight to the server, so data never travels through the kernel and views keep
 * updating while the kernel is busy. A view displayed again (e.g. after a page reload)
 * rebuilds from the model and replays history from the stream.
 */

import { DOMWidgetModel, DOMWidgetView, ISerializers, WidgetModel } from '@jupyter-widgets/base';
import { JSONObject } from '@lumino/coreutils';
import { Message } from '@lumino/messaging';

import { LiveChart } from './chart';
import { BrowserFrameSource, FrameRecordJson, FrameSink, FrameSource } from './frames';
import { FrameInspector } from './inspector';
import { StreamMonitor } from './monitor';
import { LiveTable } from './table';
import { MODULE_NAME, MODULE_VERSION } from './version';

function baseDefaults(model: string, view: string): Record<string, unknown> {
  return {
    _model_name: model,
    _model_module: MODULE_NAME,
    _model_module_version: MODULE_VERSION,
    _view_name: view,
    _view_module: MODULE_NAME,
    _view_module_version: MODULE_VERSION
  };
}

/** Lumino messages that mean "your size or visibility changed". */
function isLayoutMessage(msg: Message): boolean {
  return msg.type === 'after-attach' || msg.type === 'after-show' || msg.type === 'resize';
}

// ---------------------------------------------------------------- LiveTable

export class LiveTableModel extends DOMWidgetModel {
  defaults(): Backbone.ObjectHash {
    return {
      ...super.defaults(),
      ...baseDefaults('LiveTableModel', 'LiveTableView'),
      stream: '',
      columns: null,
      max_rows: 1000,
      height: 320
    };
  }
  static serializers: ISerializers = { ...DOMWidgetModel.serializers };
  static model_name = 'LiveTableModel';
  static model_module = MODULE_NAME;
  static model_module_version = MODULE_VERSION;
  static view_name = 'LiveTableView';
  static view_module = MODULE_NAME;
  static view_module_version = MODULE_VERSION;
}

export class LiveTableView extends DOMWidgetView {
  private table: LiveTable | null = null;

  render(): void {
    this.el.classList.add('nbws-widget');
    this.table = new LiveTable(this.tableOptions());
    this.el.appendChild(this.table.node);
    this.table.start();
    this.listenTo(this.model, 'change', () => this.table?.update(this.tableOptions()));
  }

  private tableOptions() {
    const columns = this.model.get('columns') as string[] | null;
    return {
      stream: this.model.get('stream') as string,
      columns: columns && columns.length ? columns : null,
      maxRows: Number(this.model.get('max_rows')) || 1000,
      height: Number(this.model.get('height')) || 320
    };
  }

  processLuminoMessage(msg: Message): void {
    super.processLuminoMessage(msg);
    if (isLayoutMessage(msg)) {
      this.table?.refresh();
    }
  }

  remove(): void {
    this.table?.dispose();
    this.table = null;
    super.remove();
  }
}

// ---------------------------------------------------------------- LiveChart

export class LiveChartModel extends DOMWidgetModel {
  defaults(): Backbone.ObjectHash {
    return {
      ...super.defaults(),
      ...baseDefaults('LiveChartModel', 'LiveChartView'),
      stream: '',
      x: 'time',
      y: [],
      window: 500,
      height: 300,
      title: ''
    };
  }
  static serializers: ISerializers = { ...DOMWidgetModel.serializers };
  static model_name = 'LiveChartModel';
  static model_module = MODULE_NAME;
  static model_module_version = MODULE_VERSION;
  static view_name = 'LiveChartView';
  static view_module = MODULE_NAME;
  static view_module_version = MODULE_VERSION;
}

export class LiveChartView extends DOMWidgetView {
  private chart: LiveChart | null = null;

  render(): void {
    this.el.classList.add('nbws-widget');
    this.chart = new LiveChart(this.chartOptions());
    this.el.appendChild(this.chart.node);
    this.chart.start();
    this.listenTo(this.model, 'change', () => this.chart?.update(this.chartOptions()));
  }

  private chartOptions() {
    return {
      stream: this.model.get('stream') as string,
      x: (this.model.get('x') as string) || 'time',
      y: (this.model.get('y') as string[]) ?? [],
      window: Number(this.model.get('window')) || 500,
      height: Number(this.model.get('height')) || 300,
      title: (this.model.get('title') as string) || undefined
    };
  }

  processLuminoMessage(msg: Message): void {
    super.processLuminoMessage(msg);
    if (isLayoutMessage(msg)) {
      this.chart?.resize();
    }
  }

  remove(): void {
    this.chart?.dispose();
    this.chart = null;
    super.remove();
  }
}

// ---------------------------------------------------------------- StreamMonitor

export class StreamMonitorModel extends DOMWidgetModel {
  defaults(): Backbone.ObjectHash {
    return {
      ...super.defaults(),
      ...baseDefaults('StreamMonitorModel', 'StreamMonitorView'),
      stream: ''
    };
  }
  static serializers: ISerializers = { ...DOMWidgetModel.serializers };
  static model_name = 'StreamMonitorModel';
  static model_module = MODULE_NAME;
  static model_module_version = MODULE_VERSION;
  static view_name = 'StreamMonitorView';
  static view_module = MODULE_NAME;
  static view_module_version = MODULE_VERSION;
}

export class StreamMonitorView extends DOMWidgetView {
  private monitor: StreamMonitor | null = null;

  render(): void {
    this.el.classList.add('nbws-widget');
    this.monitor = new StreamMonitor(this.model.get('stream') as string);
    this.el.appendChild(this.monitor.node);
    this.monitor.start();
    this.listenTo(this.model, 'change:stream', () =>
      this.monitor?.setStream(this.model.get('stream') as string)
    );
  }

  remove(): void {
    this.monitor?.dispose();
    this.monitor = null;
    super.remove();
  }
}

// ---------------------------------------------------------------- FrameInspector

/**
 * Frames recorded by a kernel-side raw connection (nbws.explore), forwarded by the
 * Python widget as custom comm messages; the controls ask the kernel to act.
 */
export class KernelFrameSource implements FrameSource {
  readonly perspective =
    "as the kernel's client sees them: out = kernel → server, in = server → kernel";
  readonly canPing = true;
  private sink: FrameSink | null = null;
  private readonly viewId = Math.random().toString(36).slice(2);

  constructor(private readonly model: WidgetModel) {}

  checkCloseCode(code: number): string | null {
    return Number.isInteger(code) && code >= 0 && code <= 65535
      ? null
      : 'a close code is an integer 0-65535 (the kernel may send any, even invalid ones)';
  }

  start(sink: FrameSink): void {
    this.sink = sink;
    this.model.on('msg:custom', this.onMessage, this);
    sink.state(
      'open',
      `frames from the kernel's connection to ${String(this.model.get('url') || '?')}`,
      false
    );
    this.request({ action: 'replay', view: this.viewId });
  }

  private onMessage(content: Record<string, unknown>): void {
    const sink = this.sink;
    if (sink === null) {
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

  private request(content: JSONObject, buffers?: ArrayBuffer[]): void {
    this.model.send(content, {}, buffers);
  }

  sendText(text: string): void {
    this.request({ action: 'text', data: text });
  }

  sendBinary(bytes: Uint8Array): void {
    const copy = bytes.slice().buffer;
    this.request({ action: 'binary' }, [copy]);
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
    this.model.off('msg:custom', this.onMessage, this);
    this.sink = null;
  }
}

export class FrameInspectorModel extends DOMWidgetModel {
  defaults(): Backbone.ObjectHash {
    return {
      ...super.defaults(),
      ...baseDefaults('FrameInspectorModel', 'FrameInspectorView'),
      endpoint: 'echo',
      label: '',
      options: {},
      source: 'browser',
      url: ''
    };
  }
  static serializers: ISerializers = { ...DOMWidgetModel.serializers };
  static model_name = 'FrameInspectorModel';
  static model_module = MODULE_NAME;
  static model_module_version = MODULE_VERSION;
  static view_name = 'FrameInspectorView';
  static view_module = MODULE_NAME;
  static view_module_version = MODULE_VERSION;
}

export class FrameInspectorView extends DOMWidgetView {
  private inspector: FrameInspector | null = null;

  render(): void {
    this.el.classList.add('nbws-widget');
    this.build();
    this.listenTo(this.model, 'change:source change:endpoint change:label change:options', () =>
      this.build()
    );
  }

  private build(): void {
    this.inspector?.dispose();
    this.inspector?.node.remove();
    const kernel = this.model.get('source') === 'kernel';
    const endpoint = (this.model.get('endpoint') as string) || 'echo';
    let source: FrameSource;
    let title: string;
    if (kernel) {
      source = new KernelFrameSource(this.model);
      title = 'FrameInspector · kernel connection';
    } else {
      const base = (this.model.get('label') as string) || 'inspector';
      const options: Record<string, string> = {};
      for (const [k, v] of Object.entries(
        (this.model.get('options') as Record<string, unknown>) ?? {}
      )) {
        options[k] = String(v);
      }
      // One label per view: two views of one widget must not tap each other's echo.
      const label = `${base}-${Math.random().toString(36).slice(2, 8)}`.slice(0, 64);
      source = new BrowserFrameSource({ endpoint, label, options });
      title = `FrameInspector · nbws/${endpoint} (browser)`;
    }
    this.inspector = new FrameInspector(title, source);
    this.el.appendChild(this.inspector.node);
    this.inspector.start();
  }

  remove(): void {
    this.inspector?.dispose();
    this.inspector = null;
    super.remove();
  }
}
