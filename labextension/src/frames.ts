/**
 * Frame records (nbws/protocol/tap.py `FrameRecord.as_dict()`) and where they come from.
 *
 * The FrameInspector shows frames from one of two sources:
 * - `BrowserFrameSource`: the browser opens `nbws/tap?label=L` and then
 *   `nbws/echo?tap=L`, and shows the server's record of every frame of that echo
 *   connection. The browser's WebSocket API cannot fragment, ping or send most close
 *   codes, so fragmentation is shown through the echo's `?fragment=N` option.
 * - a kernel-side raw connection (`nbws.explore`), whose records the kernel forwards
 *   through the widget's comm (see widgets.ts); that side can send any frame.
 */

import { redactSecrets, wsUrl } from './connection';
import { parseText } from './protocol';
import { browserCloseCodeProblem, fragmentSize } from './rules';
import { describeClose } from './subscription';

/** One frame as the server's tap (or the kernel's recorder) saw it. */
export interface FrameRecordJson {
  time: number;
  direction: string;
  opcode: number;
  opcode_name: string;
  fin: boolean;
  rsv: boolean[];
  masked: boolean;
  length: number;
  preview: string;
  preview_kind: string;
  /** The kernel's number for this frame (kernel source only): the same in a replay and live. */
  seq?: number;
}

/** One line of the inspector's list. */
export type FrameEntry =
  | { kind: 'frame'; record: FrameRecordJson; index: number }
  | { kind: 'note'; text: string; problem: boolean };

/**
 * What the inspector lists: frames in order, each once, and notes between them.
 *
 * A kernel-fed view asks for a replay when it starts, but the kernel answers only when it
 * is idle; under "Run All" the view receives the same frames live first. Kernel frames
 * carry `seq`, so a frame seen before is skipped and an older one is put in its place.
 * Browser frames (no `seq`) are appended as they come. Pure: no DOM.
 */
export class FrameLog {
  /** Frames listed (each once), and per direction. */
  frames = 0;
  byDirection: Record<string, number> = {};
  /** Time of the oldest frame listed so far (elapsed times are shown from it). */
  firstTime: number | null = null;
  private entries: FrameEntry[] = [];
  /** Frames with `seq` at or below this are gone (trimmed or cleared): never re-added. */
  private floor = 0;
  private maxSeq = 0;

  constructor(readonly capacity: number) {}

  get length(): number {
    return this.entries.length;
  }

  toArray(): FrameEntry[] {
    return this.entries.slice();
  }

  /** Add a frame; false when it is already listed (or older than what was trimmed). */
  addFrame(record: FrameRecordJson): boolean {
    const seq = record.seq;
    let position = this.entries.length;
    if (seq !== undefined) {
      if (seq <= this.floor) {
        return false;
      }
      let lowest = -1;
      for (let i = this.entries.length - 1; i >= 0; i--) {
        const entry = this.entries[i];
        const other = entry.kind === 'frame' ? entry.record.seq : undefined;
        if (other === undefined) {
          continue;
        }
        if (other === seq) {
          return false;
        }
        if (other < seq) {
          break;
        }
        lowest = i;
      }
      if (lowest >= 0) {
        position = lowest; // before the frames numbered after it
      }
      this.maxSeq = Math.max(this.maxSeq, seq);
    }
    this.frames += 1;
    this.byDirection[record.direction] = (this.byDirection[record.direction] ?? 0) + 1;
    if (this.firstTime === null || record.time < this.firstTime) {
      this.firstTime = record.time;
    }
    this.entries.splice(position, 0, { kind: 'frame', record, index: seq ?? this.frames });
    this.trim();
    return true;
  }

  addNote(text: string, problem = false): void {
    this.entries.push({ kind: 'note', text, problem });
    this.trim();
  }

  /** Empty the list (the counters stay: they count what the connection did). */
  clear(): void {
    this.entries = [];
    this.floor = Math.max(this.floor, this.maxSeq);
  }

  private trim(): void {
    while (this.entries.length > this.capacity) {
      const gone = this.entries.shift()!;
      if (gone.kind === 'frame' && gone.record.seq !== undefined) {
        this.floor = Math.max(this.floor, gone.record.seq);
      }
    }
  }
}

/** What a source reports to the inspector view. */
export interface FrameSink {
  frame(record: FrameRecordJson): void;
  /** A line in the log between frames (connections, limits of the browser, errors). */
  note(text: string, problem?: boolean): void;
  state(state: string, detail: string, problem: boolean): void;
}

/** The actions of the inspector's controls. */
export interface FrameSource {
  /** Who "in" and "out" are, in words. */
  readonly perspective: string;
  /** Whether ping is possible from here. */
  readonly canPing: boolean;
  /** Close codes this source may send (a predicate with an explanation). */
  checkCloseCode(code: number): string | null;
  start(sink: FrameSink): void;
  sendText(text: string): void;
  sendBinary(bytes: Uint8Array): void;
  sendFragments(text: string, fragments: number): void;
  ping(payload: string): void;
  close(code: number, reason: string): void;
  reconnect(): void;
  dispose(): void;
}

export const PING_NOTE =
  "Browsers cannot send WebSocket pings: the WebSocket API has no ping(). The server's heartbeat pings (PING out) and the browser's automatic replies (PONG in) show up in this list when they happen. To send pings, fragments, reserved bits or any close code, drive the connection from the kernel with nbws.explore.";

interface BrowserOptions {
  endpoint: string;
  label: string;
  /** Extra echo options (e.g. `delay_ms`), as query parameters. */
  options: Record<string, string>;
}

/** Echo + tap from the browser. */
export class BrowserFrameSource implements FrameSource {
  readonly perspective = 'as the server sees them: in = browser → server, out = server → browser';
  readonly canPing = false;
  private sink: FrameSink | null = null;
  private tap: WebSocket | null = null;
  private echo: WebSocket | null = null;
  private fragment: number | null = null;
  private queued: (string | Uint8Array)[] = [];
  private disposed = false;
  private tapTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly config: BrowserOptions) {}

  checkCloseCode(code: number): string | null {
    return browserCloseCodeProblem(code);
  }

  start(sink: FrameSink): void {
    this.sink = sink;
    this.openTap();
  }

  private openTap(): void {
    if (this.disposed) {
      return;
    }
    const sink = this.sink!;
    sink.state('connecting', `opening the frame tap (label ${this.config.label})`, false);
    let opened = false;
    const tap = new WebSocket(wsUrl('nbws/tap', { label: this.config.label }));
    this.tap = tap;
    tap.onopen = () => {
      opened = true;
      this.openEcho(this.fragment);
    };
    tap.onmessage = (event: MessageEvent) => {
      if (typeof event.data === 'string') {
        this.onTapMessage(event.data);
      }
    };
    tap.onclose = (event: CloseEvent) => {
      if (this.tap !== tap || this.disposed) {
        return;
      }
      this.tap = null;
      const why = opened
        ? `frame tap ${describeClose(event.code, event.reason)}`
        : 'cannot open the frame tap (nbws/tap): the nbws server extension is missing, the server is gone, or this page is not authorised';
      sink.state('retrying', `${why}; retrying in 3 s`, true);
      sink.note(why, true);
      this.echo?.close(1000, 'tap lost');
      this.tapTimer = setTimeout(() => this.openTap(), 3000);
    };
  }

  private onTapMessage(data: string): void {
    const message = parseText(data);
    const sink = this.sink;
    if (message === null || sink === null) {
      return;
    }
    switch (message.type) {
      case 'frame':
        sink.frame(message as unknown as FrameRecordJson);
        break;
      case 'attached': {
        const query = message.query
          ? `?${new URLSearchParams(message.query as Record<string, string>).toString()}`
          : '';
        sink.note(
          redactSecrets(
            `tap attached to connection ${String(message.connection)} (${String(message.path)}${query})`
          )
        );
        break;
      }
      case 'dropped':
        sink.note(
          `${String(message.count)} frame records dropped: the tap could not keep up`,
          true
        );
        break;
      case 'closed': {
        const received =
          message.code === null || message.code === undefined
            ? 'none'
            : `${String(message.code)} ${String(message.reason ?? '')}`;
        const sent =
          message.sent_code === null || message.sent_code === undefined
            ? 'none'
            : `${String(message.sent_code)} ${String(message.sent_reason ?? '')}`;
        sink.note(
          `connection ${String(message.connection)} closed: server received close ${received.trim()}, sent close ${sent.trim()}`
        );
        break;
      }
      default:
        sink.note(`tap: ${data}`);
    }
  }

  private openEcho(fragment: number | null): void {
    if (this.disposed || this.sink === null) {
      return;
    }
    const sink = this.sink;
    const previous = this.echo;
    if (previous !== null) {
      this.echo = null;
      previous.onclose = null;
      if (previous.readyState === WebSocket.OPEN || previous.readyState === WebSocket.CONNECTING) {
        previous.close(1000, 'reconnecting with other options');
      }
    }
    this.fragment = fragment;
    const query: Record<string, string> = { ...this.config.options, tap: this.config.label };
    if (fragment !== null) {
      query.fragment = String(fragment);
    }
    const shown = Object.entries(query)
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    sink.state('connecting', `connecting to nbws/${this.config.endpoint}?${shown}`, false);
    let opened = false;
    const echo = new WebSocket(wsUrl(`nbws/${this.config.endpoint}`, query));
    echo.binaryType = 'arraybuffer';
    this.echo = echo;
    echo.onopen = () => {
      opened = true;
      sink.state('open', `connected to nbws/${this.config.endpoint}?${shown}`, false);
      const queued = this.queued;
      this.queued = [];
      for (const item of queued) {
        echo.send(item);
      }
    };
    echo.onclose = (event: CloseEvent) => {
      if (this.echo !== echo) {
        return;
      }
      this.echo = null;
      if (opened) {
        sink.state(
          'closed',
          `echo ${describeClose(event.code, event.reason)}; press Reconnect to open another`,
          event.code !== 1000
        );
      } else {
        sink.state(
          'closed',
          `cannot connect to nbws/${this.config.endpoint} (refused: bad options, not authorised, or server gone); press Reconnect`,
          true
        );
      }
    };
  }

  private send(item: string | Uint8Array, fragment: number | null): void {
    if (
      this.echo !== null &&
      this.fragment === fragment &&
      this.echo.readyState === WebSocket.OPEN
    ) {
      this.echo.send(item);
      return;
    }
    if (this.echo === null || this.fragment !== fragment) {
      this.queued = [item];
      this.openEcho(fragment);
    } else {
      this.queued.push(item);
    }
  }

  sendText(text: string): void {
    this.send(text, null);
  }

  sendBinary(bytes: Uint8Array): void {
    this.send(bytes, null);
  }

  sendFragments(text: string, fragments: number): void {
    const bytes = new TextEncoder().encode(text);
    const size = fragmentSize(bytes.byteLength, fragments);
    const pieces = Math.ceil(bytes.byteLength / size);
    this.sink?.note(
      `browsers cannot fragment what they send, so this reconnects the echo with ?fragment=${size}: the server echoes the ${bytes.byteLength}-byte message as ${pieces} fragment${pieces === 1 ? '' : 's'} of at most ${size} bytes (out)`
    );
    this.send(text, size);
  }

  ping(): void {
    this.sink?.note(PING_NOTE, true);
  }

  close(code: number, reason: string): void {
    const problem = browserCloseCodeProblem(code);
    if (problem !== null) {
      this.sink?.note(problem, true);
      return;
    }
    if (this.echo === null) {
      this.sink?.note('the echo connection is not open', true);
      return;
    }
    try {
      this.echo.close(code, reason);
    } catch (error) {
      this.sink?.note(redactSecrets(`close refused by the browser: ${String(error)}`), true);
    }
  }

  reconnect(): void {
    if (this.tap === null) {
      if (this.tapTimer !== null) {
        clearTimeout(this.tapTimer);
      }
      this.openTap();
    } else {
      this.openEcho(null);
    }
  }

  dispose(): void {
    this.disposed = true;
    if (this.tapTimer !== null) {
      clearTimeout(this.tapTimer);
    }
    for (const socket of [this.echo, this.tap]) {
      if (socket !== null) {
        socket.onclose = null;
        socket.close(1000, 'view closed');
      }
    }
    this.echo = null;
    this.tap = null;
  }
}
