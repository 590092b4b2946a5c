/**
 * The FrameInspector view: a live list of frames in and out (direction, opcode, FIN,
 * RSV, masked, length, payload preview, time) and controls to send text, binary, a
 * fragmented message, a ping and a close with a chosen code. What the controls can do
 * depends on the source (frames.ts): the browser cannot ping or fragment, the kernel can.
 */

import { animationFrameScheduler, Coalescer } from './coalesce';
import { count, el, StatusLine } from './dom';
import { payloadText } from './framefmt';
import { FrameEntry, FrameLog, FrameRecordJson, FrameSink, FrameSource } from './frames';

const MAX_ENTRIES = 500;

/** What arrives between two renders. */
type Arrival =
  { kind: 'frame'; record: FrameRecordJson } | { kind: 'note'; text: string; problem: boolean };

const COLUMNS = ['#', 'time', 'dir', 'opcode', 'FIN', 'RSV', 'masked', 'length', 'payload'];

function button(label: string, title: string, onClick: () => void): HTMLButtonElement {
  const node = el('button', 'nbws-button jp-mod-styled', label);
  node.type = 'button';
  node.title = title;
  node.addEventListener('click', onClick);
  return node;
}

function labelled(text: string, input: HTMLElement): HTMLLabelElement {
  const label = el('label', 'nbws-field');
  label.append(el('span', undefined, text), input);
  return label;
}

export class FrameInspector implements FrameSink {
  readonly node: HTMLDivElement;
  private readonly statusLine: StatusLine;
  private readonly list: HTMLDivElement;
  private readonly footer: HTMLDivElement;
  private readonly message: HTMLTextAreaElement;
  private readonly fragments: HTMLInputElement;
  private readonly closeCode: HTMLInputElement;
  private readonly closeReason: HTMLInputElement;
  private readonly log = new FrameLog(MAX_ENTRIES);
  private readonly coalescer: Coalescer<Arrival>;

  constructor(
    title: string,
    private readonly source: FrameSource
  ) {
    this.node = el('div', 'nbws-view nbws-inspector');
    this.statusLine = new StatusLine(title);
    const perspective = el('div', 'nbws-note', `Frames ${source.perspective}.`);

    this.message = el('textarea', 'nbws-input nbws-inspector-message');
    this.message.rows = 2;
    this.message.value = 'hello, nbws';
    this.message.setAttribute('aria-label', 'message');
    this.fragments = el('input', 'nbws-input nbws-inspector-fragments');
    this.fragments.type = 'number';
    this.fragments.min = '1';
    this.fragments.value = '3';
    this.closeCode = el('input', 'nbws-input nbws-inspector-code');
    this.closeCode.type = 'number';
    this.closeCode.value = source.canPing ? '1000' : '4000';
    this.closeReason = el('input', 'nbws-input nbws-inspector-reason');
    this.closeReason.value = 'bye';

    const pingButton = button(
      'Ping',
      source.canPing ? 'send a ping frame' : 'browsers cannot send pings: see the note',
      () => source.ping(this.message.value.slice(0, 125))
    );
    pingButton.classList.add('nbws-inspector-ping');
    const controls = el('div', 'nbws-inspector-controls');
    controls.append(
      labelled('message', this.message),
      button('Send text', 'send the message as one text frame', () =>
        source.sendText(this.message.value)
      ),
      button('Send binary', 'send the message as UTF-8 bytes in one binary frame', () =>
        source.sendBinary(new TextEncoder().encode(this.message.value))
      ),
      labelled('fragments', this.fragments),
      button('Send as N fragments', 'send the message split into N fragments', () =>
        source.sendFragments(this.message.value, Math.max(1, Number(this.fragments.value) || 1))
      ),
      pingButton,
      labelled('close code', this.closeCode),
      labelled('reason', this.closeReason),
      button('Close', 'start the closing handshake with this code and reason', () => this.close()),
      button('Reconnect', 'open a new connection', () => source.reconnect()),
      button('Clear', 'clear the list', () => this.clear())
    );
    for (const node of Array.from(controls.querySelectorAll('button'))) {
      node.dataset.action = node.textContent ?? '';
    }
    const header = el('div', 'nbws-frame-row nbws-frame-header');
    header.append(...COLUMNS.map(c => el('div', 'nbws-cell', c)));
    this.list = el('div', 'nbws-frame-list');
    this.footer = el('div', 'nbws-footer');
    this.node.append(this.statusLine.node, perspective, controls);
    if (!source.canPing) {
      this.node.appendChild(
        el(
          'div',
          'nbws-note nbws-inspector-ping-note',
          'Ping: browsers cannot send WebSocket pings (the WebSocket API has no ping()); server heartbeat pings and the browser\'s automatic pongs appear below when they happen. Fragments: the browser cannot fragment either, so "Send as N fragments" reconnects the echo with ?fragment=SIZE and the server\'s echo arrives as N fragments.'
        )
      );
    }
    this.node.append(header, this.list, this.footer);
    this.coalescer = new Coalescer<Arrival>({
      capacity: MAX_ENTRIES,
      schedule: animationFrameScheduler(),
      render: batch => {
        if (batch.skipped > 0) {
          this.log.addNote(
            `${count(batch.skipped)} entries not listed: they arrived faster than the list is drawn`,
            true
          );
        }
        for (const item of batch.items) {
          if (item.kind === 'frame') {
            this.log.addFrame(item.record);
          } else {
            this.log.addNote(item.text, item.problem);
          }
        }
        this.renderList();
      }
    });
    this.updateFooter();
  }

  start(): void {
    this.source.start(this);
  }

  dispose(): void {
    this.source.dispose();
    this.coalescer.dispose();
  }

  // FrameSink
  frame(record: FrameRecordJson): void {
    this.coalescer.push({ kind: 'frame', record });
  }

  note(text: string, problem = false): void {
    this.coalescer.push({ kind: 'note', text, problem });
  }

  state(state: string, detail: string, problem: boolean): void {
    this.statusLine.setText(state, detail, problem);
  }

  private close(): void {
    const code = Number(this.closeCode.value);
    const problem = this.source.checkCloseCode(code);
    if (problem !== null) {
      this.note(problem, true);
      return;
    }
    this.source.close(code, this.closeReason.value);
  }

  private clear(): void {
    this.log.clear();
    this.renderList();
  }

  private renderList(): void {
    const atBottom = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 30;
    const fragment = document.createDocumentFragment();
    for (const entry of this.log.toArray()) {
      fragment.appendChild(this.row(entry));
    }
    this.list.replaceChildren(fragment);
    if (atBottom) {
      this.list.scrollTop = this.list.scrollHeight;
    }
    this.updateFooter();
  }

  private row(entry: FrameEntry): HTMLElement {
    if (entry.kind === 'note') {
      const note = el('div', 'nbws-frame-note', entry.text);
      note.classList.toggle('nbws-mod-problem', entry.problem);
      return note;
    }
    const r = entry.record;
    const row = el('div', 'nbws-frame-row');
    row.dataset.direction = r.direction;
    row.dataset.opcode = r.opcode_name;
    row.dataset.fin = String(r.fin);
    const first = this.log.firstTime;
    const elapsed = first === null ? 0 : r.time - first;
    const rsv = (r.rsv ?? []).map(bit => (bit ? '1' : '0')).join('');
    const cells = [
      String(entry.index),
      `+${elapsed.toFixed(3)} s`,
      r.direction === 'in' ? 'in ←' : r.direction === 'out' ? 'out →' : r.direction,
      r.opcode_name,
      r.fin ? '1' : '0',
      rsv,
      r.masked ? 'yes' : 'no',
      String(r.length),
      payloadText(r)
    ];
    cells.forEach((text, i) => {
      const cell = el(
        'div',
        `nbws-cell nbws-frame-${COLUMNS[i].toLowerCase().replace('#', 'index')}`,
        text
      );
      if (i === cells.length - 1) {
        cell.title = text;
        const shown =
          r.preview_kind === 'hex'
            ? r.preview.split(' ').length
            : new TextEncoder().encode(r.preview).length;
        if (r.opcode !== 0x8 && r.length > shown) {
          cell.textContent = `${text}…`;
        }
      }
      row.appendChild(cell);
    });
    return row;
  }

  private updateFooter(): void {
    const frames = this.log.frames;
    const parts = [`${count(frames)} frames`];
    for (const [direction, n] of Object.entries(this.log.byDirection)) {
      parts.push(`${count(n)} ${direction}`);
    }
    if (frames > MAX_ENTRIES) {
      parts.push(`showing the newest ${MAX_ENTRIES} entries`);
    }
    this.footer.textContent = parts.join(' · ');
    this.node.dataset.frames = String(frames);
  }
}
