/**
 * One stream subscription from the browser straight to `nbws/ws`: connect with the
 * page's credentials, subscribe with `since`, hand over each message once, and after
 * any disconnect reconnect with backoff and resume at last offset + 1 (resume.ts keeps
 * the books). When the connection cannot be opened, diagnose why (auth, stream
 * missing, server gone) and say so through `status`.
 *
 * Deliveries are asked for in batches (`max_batch`, `linger_ms`): one WebSocket message
 * carries what queued up for this view, so a fast stream costs the page a few dozen
 * WebSocket messages a second instead of one per message; each message of a batch is
 * still handed over (and counted for resuming) one by one.
 */

import { ServerConnection } from '@jupyterlab/services';

import { diagnose, redactSecrets, serverSettings, wsUrl } from './connection';
import {
  BatchMessage,
  ControlMessage,
  GapMessage,
  PROTOCOL,
  ProtocolError,
  StreamMessage,
  SubscribedReply,
  batchOf,
  parseBinary,
  parseText
} from './protocol';
import { Backoff, ResumeState } from './resume';

export type SubscriptionState = 'connecting' | 'live' | 'retrying' | 'closed';

/** Messages per batch a view asks for. */
export const DEFAULT_MAX_BATCH = 1000;
/** How long (ms) the server may hold a partial batch for a view: under one frame. */
export const DEFAULT_LINGER_MS = 10;

/** What a view shows about its connection. */
export interface SubscriptionStatus {
  state: SubscriptionState;
  /** One readable sentence: what happened and what happens next. */
  detail: string;
  /** True when the view cannot currently receive (an error to show prominently). */
  problem: boolean;
}

export interface SubscriptionHandlers {
  message(message: StreamMessage): void;
  gap?(gap: GapMessage): void;
  subscribed?(reply: SubscribedReply, epochChanged: boolean): void;
  status?(status: SubscriptionStatus): void;
  /** Any other control message (e.g. `status`, `end`). */
  control?(message: ControlMessage): void;
}

export interface SubscriptionOptions {
  /** `since` of the first subscribe (null: live only; -k: the last k messages). */
  since: number | null;
  policy?: string;
  maxMessages?: number;
  /** Messages per `batch` event (null: one `message` event each). */
  maxBatch?: number | null;
  /** How long the server may wait to fill a batch, in ms (0 to 100). */
  lingerMs?: number;
  settings?: ServerConnection.ISettings;
  backoff?: Backoff;
}

/** Close codes a view explains in words (docs/protocol.md, "Close codes nbws sends"). */
const CLOSE_REASONS: Record<number, string> = {
  1000: 'closed normally',
  1001: 'the server is going away (shutting down or idle timeout)',
  1002: 'protocol error',
  1006: 'connection lost',
  1007: 'invalid payload',
  1008: 'policy violation',
  1009: 'message too big',
  1011: 'server error',
  1013: 'dropped by the server: this view could not keep up (policy disconnect)'
};

export function describeClose(code: number, reason: string): string {
  const meaning = CLOSE_REASONS[code] ?? 'closed';
  return reason ? `${meaning} (${code}: ${reason})` : `${meaning} (${code})`;
}

export class StreamSubscription {
  readonly resume: ResumeState;
  private readonly backoff: Backoff;
  private readonly settings: ServerConnection.ISettings;
  private socket: WebSocket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private disposed = false;
  private requestId = 0;
  private requestedSince: number | null = null;
  private closeReason: string | null = null;
  /** While history is replayed: the offset where it ends (exclusive) and the live detail. */
  private replayEnd: number | null = null;
  private liveDetail = 'live';
  /** The last status reported (for views created later). */
  status: SubscriptionStatus = { state: 'connecting', detail: 'connecting', problem: false };
  /** Successful connections (the first one and each reconnect). */
  connections = 0;

  constructor(
    readonly stream: string,
    private readonly options: SubscriptionOptions,
    private readonly handlers: SubscriptionHandlers
  ) {
    this.resume = new ResumeState(options.since);
    this.backoff = options.backoff ?? new Backoff();
    this.settings = options.settings ?? serverSettings();
  }

  /** Open the connection (again) now. */
  start(): void {
    if (this.disposed || this.socket !== null) {
      return;
    }
    this.clearTimer();
    this.report('connecting', `connecting to nbws/ws for "${this.stream}"`, false);
    let socket: WebSocket;
    try {
      socket = new WebSocket(wsUrl('nbws/ws', {}, this.settings), PROTOCOL);
    } catch (error) {
      this.report(
        'retrying',
        `cannot open a WebSocket: ${redactSecrets(String(error), this.settings)}`,
        true
      );
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.connections += 1;
      this.subscribe();
    };
    socket.onmessage = (event: MessageEvent) => {
      if (this.socket === socket) {
        this.receive(event.data);
      }
    };
    socket.onclose = (event: CloseEvent) => {
      if (this.socket !== socket) {
        return;
      }
      this.socket = null;
      if (this.disposed) {
        return;
      }
      if (opened) {
        const reason = this.closeReason ?? describeClose(event.code, event.reason);
        this.closeReason = null;
        this.retry(reason);
      } else {
        void this.failedHandshake();
      }
    };
  }

  /** Close for good. */
  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    this.clearTimer();
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.close(1000, 'view closed');
    }
    this.report('closed', 'closed', false);
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private subscribe(): void {
    const point = this.resume.resumePoint();
    this.requestedSince = point.since;
    const request: Record<string, unknown> = {
      type: 'subscribe',
      id: ++this.requestId,
      stream: this.stream,
      since: point.since
    };
    if (point.epoch !== undefined) {
      request.epoch = point.epoch;
    }
    if (this.options.policy) {
      request.policy = this.options.policy;
    }
    if (this.options.maxMessages) {
      request.max_messages = this.options.maxMessages;
    }
    const maxBatch =
      this.options.maxBatch === undefined ? DEFAULT_MAX_BATCH : this.options.maxBatch;
    if (maxBatch !== null) {
      request.max_batch = maxBatch;
      request.linger_ms = this.options.lingerMs ?? DEFAULT_LINGER_MS;
    }
    this.socket?.send(JSON.stringify(request));
  }

  private receive(data: unknown): void {
    const message =
      typeof data === 'string'
        ? parseText(data)
        : data instanceof ArrayBuffer
          ? parseBinary(data)
          : null;
    if (message === null) {
      return;
    }
    switch (message.type) {
      case 'message': {
        const delivered = message as unknown as StreamMessage;
        if (delivered.stream === this.stream && this.resume.accept(delivered)) {
          this.handlers.message(delivered);
          this.replayed(delivered.offset);
        }
        break;
      }
      case 'batch': {
        let batch: BatchMessage;
        try {
          batch = batchOf(message);
        } catch (error) {
          if (!(error instanceof ProtocolError)) {
            throw error;
          }
          this.closeReason = `the server sent an invalid batch (${error.message})`;
          this.socket?.close(1000, 'invalid batch');
          break;
        }
        if (batch.stream !== this.stream) {
          break;
        }
        for (const delivered of batch.messages) {
          if (this.resume.accept(delivered)) {
            this.handlers.message(delivered);
          }
        }
        this.replayed(batch.messages[batch.messages.length - 1].offset);
        break;
      }
      case 'subscribed': {
        const reply = message as unknown as SubscribedReply;
        const changed = this.resume.subscribed(reply, this.requestedSince);
        this.backoff.reset();
        const requested = this.requestedSince;
        const cursor =
          requested !== null && requested >= 0 && !changed
            ? requested
            : (this.resume.cursor ?? reply.next);
        const replay = Math.max(0, reply.next - cursor);
        this.liveDetail = this.connections > 1 ? `live again, resumed at offset ${cursor}` : 'live';
        let detail = this.liveDetail;
        this.replayEnd = null;
        if (replay > 0) {
          detail += `, replaying ${replay} message${replay === 1 ? '' : 's'} of history`;
          this.replayEnd = reply.next;
        }
        this.report('live', detail, false);
        this.handlers.subscribed?.(reply, changed);
        break;
      }
      case 'gap': {
        const gap = message as unknown as GapMessage;
        this.resume.gap(gap);
        this.handlers.gap?.(gap);
        if (gap.to !== null) {
          this.replayed(gap.to - 1);
        }
        break;
      }
      case 'error': {
        const code = String(message.code ?? 'error');
        const text = String(message.message ?? '');
        if (code === 'unknown-stream') {
          this.closeReason = `stream "${this.stream}" does not exist (${text})`;
          this.socket?.close(1000, 'stream missing');
        } else {
          this.report(this.status.state, `server error ${code}: ${text}`, true);
        }
        this.handlers.control?.(message);
        break;
      }
      case 'status': {
        const state = String(message.state ?? '');
        if (state !== 'ok') {
          this.report(this.status.state, `server ${state}: ${String(message.reason ?? '')}`, true);
        } else {
          this.report('live', 'live (server recovered)', false);
        }
        this.handlers.control?.(message);
        break;
      }
      default:
        this.handlers.control?.(message);
    }
  }

  /** Offsets up to `offset` have been delivered (or skipped): the replay may be over. */
  private replayed(offset: number): void {
    if (this.replayEnd !== null && offset >= this.replayEnd - 1) {
      this.replayEnd = null;
      if (this.status.state === 'live' && !this.status.problem) {
        this.report('live', this.liveDetail, false);
      }
    }
  }

  private async failedHandshake(): Promise<void> {
    this.report('retrying', 'connection refused; finding out why', true);
    const reason = await diagnose(this.stream, this.settings);
    if (!this.disposed && this.socket === null) {
      this.retry(reason);
    }
  }

  private retry(reason: string): void {
    if (this.disposed) {
      return;
    }
    const delay = this.backoff.next();
    const point = this.resume.resumePoint();
    const from =
      point.since === null
        ? 'with live messages'
        : point.since < 0
          ? `with the last ${-point.since} messages`
          : `from offset ${point.since}`;
    this.report(
      'retrying',
      `${reason}; reconnecting in ${(delay / 1000).toFixed(1)} s (resuming ${from})`,
      true
    );
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.start();
    }, delay);
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private report(state: SubscriptionState, detail: string, problem: boolean): void {
    this.status = { state, detail, problem };
    this.handlers.status?.(this.status);
  }
}
