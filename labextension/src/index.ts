/**
 * nbws for JupyterLab: the Streams side panel and the stream viewer tab, which only
 * JupyterLab has. The live widgets do not need this extension: they are anywidgets whose
 * views (the same table/chart/monitor code, bundled by `npm run build:esm`) come through
 * the widget's comm (anywidget.ts).
 */

import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';

import { createStreamViewer, StreamsPanel, StreamViewer } from './panel';

const OPEN_STREAM = 'nbws:open-stream';
const SHOW_PANEL = 'nbws:show-streams';

const panelPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nbws:streams-panel',
  description: 'A side panel listing nbws streams; click one to watch it live.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const open = new Map<string, MainAreaWidget<StreamViewer>>();
    app.commands.addCommand(OPEN_STREAM, {
      label: args => (args.stream ? `Watch stream ${String(args.stream)}` : 'Watch an nbws stream'),
      execute: args => {
        const stream = String(args.stream ?? '');
        if (!stream) {
          return;
        }
        let widget = open.get(stream);
        if (widget === undefined || widget.isDisposed) {
          widget = createStreamViewer(stream);
          open.set(stream, widget);
          widget.disposed.connect(() => open.delete(stream));
          app.shell.add(widget, 'main');
        }
        app.shell.activateById(widget.id);
      }
    });
    const panel = new StreamsPanel(stream => void app.commands.execute(OPEN_STREAM, { stream }));
    app.shell.add(panel, 'left', { rank: 900 });
    restorer?.add(panel, 'nbws-streams');
    app.commands.addCommand(SHOW_PANEL, {
      label: 'Show nbws Streams',
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: SHOW_PANEL, category: 'nbws' });
  }
};

export default [panelPlugin];
