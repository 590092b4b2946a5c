/**
 * The relay transport: nbws.v1 through the kernel, over an anywidget model's custom
 * messages, for pages that can reach neither the Jupyter server's nbws (direct) nor the
 * server the kernel hosts (kernel-hosted). The kernel side is `nbws/widgets/relay.py`:
 * each link is one kernel-side WebSocket; the page manager's requests pass through as
 * `relay-send`, the server's frames come back in `relay-batch` messages (at most ~30 a
 * second, binary frames as buffers). Each batch is acked once the page has taken it (on
 * the next animation frame, so a page that cannot render stops acking and the kernel stops
 * reading: the server's credit and policy act, and gap notices reach the views).
 *
 * Messages (`content.nbws`), per link id chosen here:
 *   page → kernel   relay-open {link}  relay-send {link, text}  relay-ack {link, batch}
 *                   relay-close {link, code, reason}
 *   kernel → page   relay-opened {link}  relay-batch {link, batch, frames}
 *                   relay-closed {link, code, reason, was_open}
 * A `frames` entry is a text message (string) or the index of a binary one in the buffers.
 */

import type { Endpoint, Link, LinkEvents, TransportName } from './link';

/** The part of an anywidget (or ipywidgets) model the relay uses. */
export interface RelayModel {
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
  on(event: 'msg:custom', callback: (content: unknown, buffers?: unknown[]) => void): void;
  off(event: 'msg:custom', callback: (content: unknown, buffers?: unknown[]) => void): void;
}

/** What the view shows while it is relayed: the cost, and how to get the direct path. */
export const RELAY_NOTICE =
  'data comes through the kernel: updates pause while the kernel is busy or its output ' +
  '(iopub) is blocked. For the direct path, install nbws into the Jupyter server’s ' +
  'environment (pip install nbws) and restart the server.';

/** One sentence for a relay link that never opened. */
export const RELAY_UNREACHABLE =
  'The kernel could not open a relay link: is the kernel running, and can it reach its ' +
  'nbws server?';

/** Schedules acks after the page took a batch (an animation frame; tests pass their own). */
export type AckScheduler = (ack: () => void) => void;

const defaultScheduler: AckScheduler = ack => {
  if (typeof requestAnimationFrame === 'function') {
    requestAnimationFrame(() => ack());
  } else {
    setTimeout(ack, 0);
  }
};

interface Custom {
  nbws?: unknown;
  link?: unknown;
  batch?: unknown;
  frames?: unknown;
  code?: unknown;
  reason?: unknown;
  was_open?: unknown;
}

let nextKey = 0;
let lastLink = 0; // page-wide, so two endpoints of one model never reuse a link id
const modelKeys = new WeakMap<object, string>();

function keyOf(model: object): string {
  let key = modelKeys.get(model);
  if (key === undefined) {
    key = `relay:${++nextKey}`;
    modelKeys.set(model, key);
  }
  return key;
}

function toArrayBuffer(buffer: unknown): ArrayBuffer | null {
  if (buffer instanceof ArrayBuffer) {
    return buffer;
  }
  if (ArrayBuffer.isView(buffer)) {
    const view = buffer as ArrayBufferView;
    const out = new Uint8Array(view.byteLength);
    out.set(new Uint8Array(view.buffer as ArrayBuffer, view.byteOffset, view.byteLength));
    return out.buffer;
  }
  return null;
}

/** The relay `Endpoint` of one widget model (one page connection per model). */
export class RelayEndpoint implements Endpoint {
  readonly transport: TransportName = 'relay';
  readonly label = 'relayed through the kernel';
  readonly key: string;
  private links = new Map<number, RelayLink>();
  private lastFailure = '';
  private readonly onCustom = (content: unknown, buffers?: unknown[]): void =>
    this.received(content, buffers ?? []);

  constructor(
    private readonly model: RelayModel,
    private readonly schedule: AckScheduler = defaultScheduler
  ) {
    this.key = keyOf(model as unknown as object);
  }

  open(events: LinkEvents): Link {
    if (this.links.size === 0) {
      this.model.on('msg:custom', this.onCustom);
    }
    const id = ++lastLink;
    const link = new RelayLink(id, this.model, events, this.schedule, () => this.forget(id));
    this.links.set(id, link);
    this.model.send({ nbws: 'relay-open', link: id });
    return link;
  }

  async diagnose(_stream: string | null): Promise<string> {
    return this.lastFailure || RELAY_UNREACHABLE;
  }

  /** Links open now (for tests and the status line). */
  get openLinks(): number {
    return this.links.size;
  }

  private forget(id: number): void {
    this.links.delete(id);
    if (this.links.size === 0) {
      this.model.off('msg:custom', this.onCustom);
    }
  }

  private received(raw: unknown, buffers: unknown[]): void {
    if (typeof raw !== 'object' || raw === null) {
      return;
    }
    const content = raw as Custom;
    if (typeof content.nbws !== 'string' || typeof content.link !== 'number') {
      return;
    }
    const link = this.links.get(content.link);
    if (link === undefined) {
      return;
    }
    if (content.nbws === 'relay-opened') {
      link.opened();
    } else if (content.nbws === 'relay-batch') {
      link.batch(content, buffers);
    } else if (content.nbws === 'relay-closed') {
      const reason = typeof content.reason === 'string' ? content.reason : '';
      if (content.was_open !== true && reason) {
        this.lastFailure = reason;
      }
      link.closed(typeof content.code === 'number' ? content.code : 1006, reason);
    }
  }
}

/** One link: sends requests, hands frames to the page manager, acks each batch. */
class RelayLink implements Link {
  private state: 'opening' | 'open' | 'closed' = 'opening';

  constructor(
    private readonly id: number,
    private readonly model: RelayModel,
    private readonly events: LinkEvents,
    private readonly schedule: AckScheduler,
    private readonly done: () => void
  ) {}

  send(text: string): void {
    if (this.state !== 'closed') {
      this.model.send({ nbws: 'relay-send', link: this.id, text });
    }
  }

  close(code: number, reason: string): void {
    if (this.state === 'closed') {
      return;
    }
    this.model.send({ nbws: 'relay-close', link: this.id, code, reason });
    this.closed(code, reason);
  }

  opened(): void {
    if (this.state === 'opening') {
      this.state = 'open';
      this.events.opened();
    }
  }

  batch(content: Custom, buffers: unknown[]): void {
    if (this.state !== 'open' || !Array.isArray(content.frames)) {
      return;
    }
    for (const frame of content.frames) {
      if (this.state !== 'open') {
        return; // the page manager closed the link while taking this batch
      }
      if (typeof frame === 'string') {
        this.events.received(frame);
      } else if (typeof frame === 'number') {
        const data = toArrayBuffer(buffers[frame]);
        if (data !== null) {
          this.events.received(data);
        }
      }
    }
    const number = content.batch;
    if (typeof number === 'number') {
      this.schedule(() => {
        if (this.state === 'open') {
          this.model.send({ nbws: 'relay-ack', link: this.id, batch: number });
        }
      });
    }
  }

  closed(code: number, reason: string): void {
    if (this.state === 'closed') {
      return;
    }
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    this.done();
    this.events.closed(code, reason, wasOpen);
  }
}
