"""In-page JavaScript of the browser bench: the recorder installed before a measured window
and read after it, and the JupyterLab calls that run a notebook's cell.

The recorder counts animation frames (``requestAnimationFrame``) and long tasks
(``PerformanceObserver``), and records what is rendered from the DOM: the newest row of the
``LiveTable`` (its ``data-offset`` and ``t`` cell) and every value an ipywidgets ``HTML``
widget shows (``"<index> <epoch ms>"``), each with the time the DOM changed. When the views
report through ``pagestats.ts``, ``globalThis.__nbwsStats`` holds one record per rendered
frame of each view; the bench then reads those instead of the table's DOM.
"""

from __future__ import annotations

__all__ = ["INSTALL", "NOTEBOOK_READY", "READ", "RUN_CELL", "WIDGET_SELECTOR"]

WIDGET_SELECTOR = ".widget-html-content"

NOTEBOOK_READY = """(name) => {
  const app = window.jupyterapp;
  const panel = app && app.shell && app.shell.currentWidget;
  if (!panel || !panel.context || panel.context.path !== name) return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
}"""
"""True once JupyterLab shows notebook ``name`` with its kernel idle and connected."""

INSTALL = """(opts) => {
  const now = () => performance.timeOrigin + performance.now();
  const rec = { frames: [], longTasks: [], table: [], widget: [], errors: [] };
  let on = true;
  const tick = () => {
    if (!on) return;
    rec.frames.push(now());
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const observers = [];
  try {
    const po = new PerformanceObserver(list => {
      for (const e of list.getEntries()) {
        rec.longTasks.push([performance.timeOrigin + e.startTime, e.duration]);
      }
    });
    po.observe({ entryTypes: ['longtask'] });
    observers.push(po);
  } catch (e) {
    rec.errors.push('longtask: ' + e);
  }
  const table = document.querySelector('.nbws-table');
  const body = table && table.querySelector('.nbws-table-body');
  if (body) {
    const header = [...table.querySelectorAll('.nbws-table-header .nbws-cell')];
    const column = header.map(c => c.textContent).indexOf(opts.timeColumn);
    let last = null;
    const mo = new MutationObserver(() => {
      const row = body.lastElementChild;
      if (!row || row.dataset.offset === last) return;
      last = row.dataset.offset;
      const cell = row.children[column];
      rec.table.push([now(), Number(last), cell ? Number(cell.textContent) : NaN]);
    });
    mo.observe(body, { childList: true });
    observers.push(mo);
  }
  const html = document.querySelector(opts.widgetSelector);
  if (html) {
    const mo = new MutationObserver(records => {
      const at = now();
      for (const r of records) {
        const nodes = r.type === 'characterData' ? [r.target] : [...r.addedNodes];
        for (const n of nodes) {
          const [i, t] = String(n.textContent).split(' ').map(Number);
          if (Number.isFinite(i)) rec.widget.push([at, i, t]);
        }
      }
    });
    mo.observe(html, { childList: true, characterData: true, subtree: true });
    observers.push(mo);
  }
  window.__nbwsBench = {
    stop() {
      on = false;
      for (const o of observers) o.disconnect();
      return rec;
    }
  };
  return { table: !!body, widget: !!html };
}"""

READ = """() => {
  const rec = window.__nbwsBench.stop();
  const stats = globalThis.__nbwsStats || null;
  const counts = {};
  for (const node of document.querySelectorAll('.nbws-table, .nbws-chart')) {
    const kind = node.classList.contains('nbws-table') ? 'table' : 'chart';
    counts[kind] = {
      received: Number(node.dataset.received || 0),
      skipped: Number(node.dataset.skipped || 0),
      missed: Number(node.dataset.missed || 0),
      points: Number(node.dataset.points || 0)
    };
  }
  const text = [...document.querySelectorAll('.jp-OutputArea-output')]
    .map(n => n.textContent).join('\\n');
  const notices = text.split('IOPub message rate exceeded').length - 1;
  const subscribers = document.querySelector('.nbws-monitor [data-stat="subscribers"]');
  return {
    ...rec,
    subscribers: subscribers ? Number(subscribers.textContent) : null,
    stats: stats && { renders: stats.renders, drops: stats.drops },
    counts,
    notices
  };
}"""

RUN_CELL = """async ([index, code, wait]) => {
  const app = window.jupyterapp;
  const notebook = app.shell.currentWidget.content;
  notebook.activeCellIndex = index;
  notebook.deselectAll();
  notebook.widgets[index].model.sharedModel.setSource(code);
  const done = app.commands.execute('notebook:run-cell');
  if (!wait) return [];
  await done;
  return notebook.widgets[index].model.outputs.toJSON();
}"""
