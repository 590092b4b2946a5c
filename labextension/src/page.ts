/**
 * One connection per page per nbws server. Every view on the page (widgets, the Streams
 * panel's viewer, in any bundle) subscribes through `pageConnection(endpoint)`, which keeps
 * one `PageConnection` per endpoint key in a page-global registry
 * (`globalThis[Symbol.for('nbws.page.v1')]`), so a page with a table, a chart and a monitor
 * on two streams has one WebSocket, one server subscription per stream and one reconnect.
 *
 * - Views of one stream share its subscription (subscription.ts `StreamShare`),
 *   reference-counted: the last view leaving unsubscribes, and the link closes after an
 *   idle grace when no stream is left.
 * - After the link drops, it reopens with backoff and every stream resumes at its last
 *   offset + 1 in one go; each view says what happens in its own status line.
 * - Deliveries are asked for in batches (`max_batch`, `linger_ms`) and, where the protocol
 *   has it, with `credit`; `consumed {stream, offset}` goes out from an animation-frame tick
 *   after the views got the messages, at most once per frame per stream, so a page that
 *   cannot render stops consuming and the server's policy acts instead of TCP buffers
 *   filling up.
 * - Of a JSON `batch` only the newest messages any view of its stream can show are decoded
 *   (batchtail.ts); the older ones are booked for resuming and counted to the views as
 *   `skipped`, never parsed.
 * - `info(stream)` asks the server for a stream's figures over the same link (an nbws.v1
 *   `info` request answered by an `info` event with its `ref`), so they can be read on
 *   every transport, not only where the page can reach the server's REST API.
 */

import { decodeBatchTail } from './batchtail';
import type { Endpoint, Link } from './link';
import {
  BatchMessage,
  ControlMessage,
  encodeConsumed,
  encodeRequest,
  encodeSubscribe,
  encodeUnsubscribe,
  GapMessage,
  InfoMessage,
  parseBinary,
  parseText,
  POLICIES,
  ProtocolError,
  StreamMessage,
  SubscribedReply,
  SubscribeRequest,
  batchOf,
  validateMessage,
  validStreamName
} from './protocol';
import { Backoff, ResumeState } from './resume';
import {
  DEFAULT_LINGER_MS,
  DEFAULT_MAX_BATCH,
  describeClose,
  ShareView,
  StreamShare,
  SubscriptionHandlers,
  SubscriptionStatus,
  ViewRequest
} from './subscription';

export type { SubscriptionHandlers, SubscriptionStatus, ViewRequest } from './subscription';

/** Messages the server may have in flight to the page per stream, not yet consumed. */
export const DEFAULT_CREDIT = 5000;
/** The same bound in bytes (a few frames of a fast stream of small messages). */
export const DEFAULT_CREDIT_BYTES = 4 * 1024 * 1024;
/** How long (ms) a link without subscriptions stays open (a view re-created soon reuses it). */
export const DEFAULT_IDLE_GRACE_MS = 3000;

/** Most `info` requests waiting for their reply at once (more are refused at once). */
export const MAX_PENDING_INFO = 8;
/** How long (ms) an `info` request waits for its reply. */
export const DEFAULT_INFO_TIMEOUT_MS = 10000;

/** Why an `info` request failed: the sentence, and the server's error code if it sent one. */
export class InfoError extends Error {
  constructor(
    message: string,
    /** The error reply's `code` (e.g. `unknown-stream`), or null (lost, timeout, refused). */
    readonly code: string | null = null
  ) {
    super(message);
    this.name = 'InfoError';
  }
}

/** One view's handle on its stream. */
export interface ViewSubscription {
  readonly stream: string;
  readonly status: SubscriptionStatus;
  /** The stream's resume books (shared by its views; read only). */
  readonly resume: ResumeState;
  dispose(): void;
}

/** Counters for tests and the bench. */
export interface PageConnectionStats {
  /** Links opened (attempts that reached `opened`). */
  sockets: number;
  /** Of those, reopened after a drop. */
  reconnects: number;
  /** `subscribe` requests sent. */
  subscriptions: number;
  /** `unsubscribe` requests sent. */
  unsubscriptions: number;
  /** Stream messages received (each once, whatever the number of views). */
  messages: number;
  /** Of those, left undecoded (the older part of a batch that no view shows). */
  skipped: number;
  /** `consumed` requests sent. */
  consumed: number;
  /** Views and streams now. */
  views: number;
  streams: number;
}

export interface PageConnectionOptions {
  backoff?: Backoff;
  maxBatch?: number;
  lingerMs?: number;
  /** Credit per stream (0: none), in messages and in bytes (0: messages only). */
  credit?: number;
  creditBytes?: number;
  idleGraceMs?: number;
  /** How long (ms) an `info` request waits for its reply. */
  infoTimeoutMs?: number;
  /** Runs a callback at the next animation frame (default `requestAnimationFrame`). */
  frame?: (callback: () => void) => void;
}

function defaultFrame(callback: () => void): void {
  if (typeof requestAnimationFrame === 'function') {
    requestAnimationFrame(() => callback());
  } else {
    setTimeout(callback, 16);
  }
}

export class PageConnection {
  readonly stats: PageConnectionStats = {
    sockets: 0,
    reconnects: 0,
    subscriptions: 0,
    unsubscriptions: 0,
    messages: 0,
    skipped: 0,
    consumed: 0,
    views: 0,
    streams: 0
  };
  private readonly shares = new Map<string, StreamShare>();
  private readonly refs = new Map<number, StreamShare>();
  /** Streams whose subscribe was refused (missing, broker down): tried again later. */
  private readonly refused = new Map<StreamShare, ReturnType<typeof setTimeout>>();
  private readonly backoff: Backoff;
  private readonly frame: (callback: () => void) => void;
  private link: Link | null = null;
  private open = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private flushQueued = false;
  private frameQueued = false;
  private requestId = 0;
  private welcome: ControlMessage | null = null;
  private attempt = 0;
  /** The last link dropped (the next one opened is a reconnect). */
  private dropped = false;
  /** `info` requests by id: sent (or waiting for the link to open), not answered yet. */
  private readonly infos = new Map<number, PendingInfo>();

  constructor(
    readonly endpoint: Endpoint,
    private readonly options: PageConnectionOptions = {}
  ) {
    this.backoff = options.backoff ?? new Backoff();
    this.frame = options.frame ?? defaultFrame;
  }

  /** Subscribe one view to `stream`; its history comes first, then live messages. */
  subscribe(
    stream: string,
    request: ViewRequest,
    handlers: SubscriptionHandlers
  ): ViewSubscription {
    this.clearIdle();
    let share = this.shares.get(stream);
    if (share === undefined) {
      share = new StreamShare(stream);
      this.shares.set(stream, share);
    }
    const view = new ShareView({ ...request, history: Math.max(0, request.history) }, handlers);
    const joined = share.join(view);
    this.countViews();
    const owner = share;
    if (this.link === null) {
      view.report('connecting', `connecting to ${this.endpoint.label} for "${stream}"`, false);
      this.connect();
    } else if (!this.open) {
      view.report('connecting', `connecting to ${this.endpoint.label} for "${stream}"`, false);
    } else if (joined === 'send' || (share.pending === null && !share.live)) {
      view.report('connecting', `subscribing to "${stream}"`, false);
      this.queueFlush();
    } else if (joined === 'ring') {
      this.fromRing(share, view);
    } else if (share.live) {
      view.liveDetail = 'live';
      view.report('live', 'live', false);
      if (share.reply !== null) {
        const reply = share.reply;
        queueMicrotask(() => {
          if (!view.disposed) {
            view.handlers.subscribed?.(reply, false);
          }
        });
      }
    } else {
      view.report('connecting', `subscribing to "${stream}"`, false);
    }
    if (this.welcome !== null && this.open) {
      const welcome = this.welcome;
      queueMicrotask(() => {
        if (!view.disposed) {
          view.handlers.control?.(welcome);
        }
      });
    }
    return {
      stream,
      get status(): SubscriptionStatus {
        return view.status;
      },
      get resume(): ResumeState {
        return owner.resume ?? new ResumeState(null);
      },
      dispose: () => this.leave(owner, view)
    };
  }

  /**
   * The server's figures of `stream`, asked over this page's link (whatever the transport).
   * Needs a link (a view subscribed on this connection); waits for it to open. Rejects with
   * a readable `Error` on an error reply, a lost link, no reply in time, or when
   * `MAX_PENDING_INFO` requests are already waiting.
   */
  info(stream: string): Promise<InfoMessage> {
    const label = this.endpoint.label;
    if (this.infos.size >= MAX_PENDING_INFO) {
      return Promise.reject(
        new InfoError(`${MAX_PENDING_INFO} info requests to ${label} are still unanswered`)
      );
    }
    if (this.link === null) {
      return Promise.reject(
        new InfoError(`not connected to ${label} (info for "${stream}" needs a view subscribed)`)
      );
    }
    const id = ++this.requestId;
    let text: string;
    try {
      text = encodeRequest('info', { stream, id });
    } catch (error) {
      if (!(error instanceof ProtocolError)) {
        throw error;
      }
      return Promise.reject(new InfoError(`cannot ask for info on "${stream}": ${error.message}`));
    }
    return new Promise<InfoMessage>((resolve, reject) => {
      const timeout = this.options.infoTimeoutMs ?? DEFAULT_INFO_TIMEOUT_MS;
      const timer = setTimeout(() => {
        this.settleInfo(id, `no info reply from ${label} for "${stream}" in ${timeout / 1000} s`);
      }, timeout);
      this.infos.set(id, { stream, text, sent: this.open, resolve, reject, timer });
      if (this.open) {
        this.send(text);
      }
    });
  }

  /** Close the link now and forget every subscription (views get status `closed`). */
  close(): void {
    for (const share of this.shares.values()) {
      for (const view of share.views) {
        view.disposed = true;
        view.report('closed', 'closed', false);
      }
    }
    this.shares.clear();
    this.refs.clear();
    this.countViews();
    this.shutdown();
  }

  // --- views coming and going ---------------------------------------------------------

  private fromRing(share: StreamShare, view: ShareView): void {
    const history = share.ring.tail(view.request.history);
    const reply = share.reply;
    view.report('live', 'live', false);
    queueMicrotask(() => {
      if (view.disposed) {
        return;
      }
      if (reply !== null) {
        view.handlers.subscribed?.(reply, false);
      }
      view.deliver(history);
    });
  }

  private leave(share: StreamShare, view: ShareView): void {
    if (view.disposed) {
      return;
    }
    view.disposed = true;
    view.report('closed', 'closed', false);
    share.views.delete(view);
    if (share.views.size === 0) {
      this.shares.delete(share.stream);
      this.clearRefused(share);
      if (this.open && (share.live || share.pending !== null)) {
        this.send(encodeUnsubscribe({ stream: share.stream }));
        this.stats.unsubscriptions += 1;
      }
    }
    this.countViews();
    if (this.shares.size === 0) {
      this.startIdle();
    }
  }

  private countViews(): void {
    let views = 0;
    for (const share of this.shares.values()) {
      views += share.views.size;
    }
    this.stats.views = views;
    this.stats.streams = this.shares.size;
  }

  private startIdle(): void {
    this.clearIdle();
    const grace = this.options.idleGraceMs ?? DEFAULT_IDLE_GRACE_MS;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.shares.size === 0) {
        this.shutdown();
      }
    }, grace);
  }

  private clearIdle(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  private shutdown(): void {
    this.clearIdle();
    this.clearRefused();
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    const link = this.link;
    this.link = null;
    this.open = false;
    this.welcome = null;
    this.dropped = false;
    this.failInfos(`the connection to ${this.endpoint.label} was closed`);
    link?.close(1000, 'no views left');
    this.backoff.reset();
  }

  // --- the link ------------------------------------------------------------------------

  private connect(): void {
    if (this.link !== null || this.shares.size === 0) {
      return;
    }
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    const attempt = ++this.attempt;
    const current = (): boolean => this.attempt === attempt;
    this.link = this.endpoint.open({
      opened: () => {
        if (current()) {
          this.opened();
        }
      },
      received: data => {
        if (current()) {
          this.receive(data);
        }
      },
      closed: (code, reason, wasOpen) => {
        if (current()) {
          this.closed(code, reason, wasOpen);
        }
      }
    });
  }

  private opened(): void {
    this.open = true;
    this.stats.sockets += 1;
    if (this.dropped) {
      this.stats.reconnects += 1;
      this.dropped = false;
    }
    for (const pending of this.infos.values()) {
      if (!pending.sent) {
        pending.sent = true;
        this.send(pending.text);
      }
    }
    this.flush(true);
  }

  private closed(code: number, reason: string, wasOpen: boolean, why?: string): void {
    this.link = null;
    this.open = false;
    this.welcome = null;
    this.dropped = true;
    this.refs.clear();
    this.clearRefused();
    const lost = why ?? (wasOpen || reason ? describeClose(code, reason) : 'could not connect');
    this.failInfos(`the connection to ${this.endpoint.label} was lost: ${lost}`);
    for (const share of this.shares.values()) {
      share.lost();
    }
    if (this.shares.size === 0) {
      return;
    }
    if (wasOpen) {
      this.retry(why ?? describeClose(code, reason));
    } else if (reason) {
      this.retry(reason);
    } else {
      void this.failedHandshake();
    }
  }

  private async failedHandshake(): Promise<void> {
    for (const share of this.shares.values()) {
      share.report('retrying', 'connection refused; finding out why', true);
    }
    const streams = [...this.shares.keys()];
    const reason = await this.endpoint.diagnose(streams.length === 1 ? streams[0] : null);
    if (this.link === null && this.retryTimer === null && this.shares.size > 0) {
      this.retry(reason);
    }
  }

  private retry(reason: string): void {
    const delay = this.backoff.next();
    const seconds = (delay / 1000).toFixed(1);
    for (const share of this.shares.values()) {
      share.report(
        'retrying',
        `${reason}; reconnecting in ${seconds} s (resuming ${share.resumeText()})`,
        true
      );
    }
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  /** Subscribe `share` again after its backoff; returns the delay in seconds (text). */
  private retryShare(share: StreamShare): string {
    share.lost();
    const delay = share.backoff.next();
    this.clearRefused(share);
    this.refused.set(
      share,
      setTimeout(() => {
        this.refused.delete(share);
        if (this.open && this.shares.get(share.stream) === share) {
          this.subscribeShare(share);
        }
      }, delay)
    );
    return (delay / 1000).toFixed(1);
  }

  private clearRefused(share?: StreamShare): void {
    for (const [key, timer] of this.refused) {
      if (share === undefined || key === share) {
        clearTimeout(timer);
        this.refused.delete(key);
      }
    }
  }

  private send(text: string): void {
    this.link?.send(text);
  }

  // --- subscribing -----------------------------------------------------------------------

  private queueFlush(): void {
    if (!this.flushQueued) {
      this.flushQueued = true;
      // Views created in the same turn (a notebook's outputs) share one subscribe.
      queueMicrotask(() => {
        this.flushQueued = false;
        this.flush(false);
      });
    }
  }

  /** Subscribe every stream that needs it (all of them after the link opened). */
  private flush(all: boolean): void {
    if (!this.open) {
      return;
    }
    for (const share of this.shares.values()) {
      const due =
        all ||
        (share.pending === null && !share.live) ||
        share.waiting.some(v => v.waitingFor === -1);
      if (due) {
        this.subscribeShare(share);
      }
    }
  }

  private subscribeShare(share: StreamShare): void {
    const point = share.nextSubscribe();
    const id = ++this.requestId;
    const request: SubscribeRequest = {
      stream: share.stream,
      id,
      since: point.since,
      epoch: point.epoch ?? null,
      policy: POLICIES.find(policy => policy === share.policy) ?? null,
      max_messages: share.maxMessages ?? null
    };
    const maxBatch = this.options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (maxBatch > 0) {
      request.max_batch = maxBatch;
      request.linger_ms = this.options.lingerMs ?? DEFAULT_LINGER_MS;
      const credit = this.options.credit ?? DEFAULT_CREDIT;
      if (credit > 0) {
        request.credit = credit;
        const bytes = this.options.creditBytes ?? DEFAULT_CREDIT_BYTES;
        if (bytes > 0) {
          request.credit_bytes = bytes;
        }
      }
    }
    let text: string;
    try {
      text = encodeSubscribe(request);
    } catch (error) {
      if (!(error instanceof ProtocolError)) {
        throw error;
      }
      // Nothing the server could accept (e.g. a stream name nbws does not allow): say so
      // on this stream's views and leave the others alone.
      share.report('closed', `cannot subscribe to "${share.stream}": ${error.message}`, true);
      return;
    }
    share.credited = request.credit !== undefined;
    share.sent(id, point.since);
    this.refs.set(id, share);
    this.stats.subscriptions += 1;
    this.send(text);
  }

  // --- receiving -------------------------------------------------------------------------

  private receive(data: string | ArrayBuffer): void {
    if (typeof data === 'string' && data.startsWith(BATCH_PREFIX) && this.receiveTail(data)) {
      return;
    }
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
        this.deliver(delivered.stream, [delivered]);
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
          this.invalid(`the server sent an invalid batch (${error.message})`);
          break;
        }
        this.deliver(batch.stream, batch.messages);
        break;
      }
      case 'subscribed': {
        const reply = message as unknown as SubscribedReply;
        const share = this.shares.get(reply.stream);
        const ref = reply.ref ?? null;
        if (share === undefined || (ref !== null && ref !== share.pending)) {
          break; // an older request's answer, or a stream nobody watches any more
        }
        this.backoff.reset();
        share.backoff.reset();
        const resumed = share.confirmations > 0 && share.confirmedOn !== this.stats.sockets;
        share.confirmedOn = this.stats.sockets;
        share.subscribed(reply, resumed);
        break;
      }
      case 'gap': {
        const gap = message as unknown as GapMessage;
        this.shares.get(gap.stream)?.gap(gap);
        break;
      }
      case 'welcome':
        this.welcome = message;
        this.broadcast(message);
        break;
      case 'info': {
        const ref = typeof message.ref === 'number' ? message.ref : null;
        if (ref !== null && this.infos.has(ref)) {
          this.infoReply(ref, message);
        } else {
          this.toViews(message);
        }
        break;
      }
      case 'error': {
        const ref = typeof message.ref === 'number' ? message.ref : null;
        const share = ref === null ? undefined : this.refs.get(ref);
        const code = String(message.code ?? 'error');
        const text = String(message.message ?? '');
        const asked = ref === null ? undefined : this.infos.get(ref);
        if (asked !== undefined && ref !== null) {
          this.settleInfo(
            ref,
            code === 'unknown-stream'
              ? `stream "${asked.stream}" does not exist (${text})`
              : `server error ${code}: ${text}`,
            undefined,
            code
          );
          break;
        }
        if (share === undefined) {
          this.broadcast(message);
          break;
        }
        let detail =
          code === 'unknown-stream'
            ? `stream "${share.stream}" does not exist (${text})`
            : `server error ${code}: ${text}`;
        if ((code === 'unknown-stream' || code === 'unavailable') && ref === share.pending) {
          detail += `; trying again in ${this.retryShare(share)} s`;
        }
        for (const view of share.views) {
          view.report(view.status.state, detail, true);
          view.handlers.control?.(message);
        }
        break;
      }
      case 'status': {
        const state = String(message.state ?? '');
        for (const share of this.shares.values()) {
          for (const view of share.views) {
            if (state !== 'ok') {
              view.report(
                view.status.state,
                `server ${state}: ${String(message.reason ?? '')}`,
                true
              );
            } else if (view.status.state === 'live') {
              view.report('live', 'live (server recovered)', false);
            }
          }
        }
        this.broadcast(message);
        break;
      }
      default:
        this.toViews(message);
    }
  }

  /** A control message for the views of its stream (or all views when it names none). */
  private toViews(message: ControlMessage): void {
    const stream = typeof message.stream === 'string' ? message.stream : null;
    const share = stream === null ? undefined : this.shares.get(stream);
    if (share !== undefined) {
      share.views.forEach(view => view.handlers.control?.(message));
    } else if (stream === null) {
      this.broadcast(message);
    }
  }

  // --- info requests ---------------------------------------------------------------------

  private infoReply(id: number, message: ControlMessage): void {
    const pending = this.infos.get(id);
    if (pending === undefined) {
      return;
    }
    let reply: InfoMessage;
    try {
      reply = validateMessage('event', message) as unknown as InfoMessage;
    } catch (error) {
      if (!(error instanceof ProtocolError)) {
        throw error;
      }
      this.settleInfo(id, `the server sent an invalid info reply (${error.message})`);
      return;
    }
    if (reply.stream !== pending.stream) {
      this.settleInfo(id, `the info reply is about "${reply.stream}", not "${pending.stream}"`);
      return;
    }
    this.settleInfo(id, null, reply);
  }

  /** Answer request `id`: with `reply`, or rejected with the sentence `error`. */
  private settleInfo(
    id: number,
    error: string | null,
    reply?: InfoMessage,
    code: string | null = null
  ): void {
    const pending = this.infos.get(id);
    if (pending === undefined) {
      return;
    }
    this.infos.delete(id);
    clearTimeout(pending.timer);
    if (error === null && reply !== undefined) {
      pending.resolve(reply);
    } else {
      pending.reject(new InfoError(error ?? 'no reply', code));
    }
  }

  private failInfos(why: string): void {
    for (const id of [...this.infos.keys()]) {
      this.settleInfo(id, why);
    }
  }

  /**
   * A JSON batch of a live stream whose views show fewer messages than it holds: decode
   * only its newest ones. Returns false when the batch is to be decoded whole.
   */
  private receiveTail(text: string): boolean {
    const stream = batchStream(text);
    const share = stream === null ? undefined : this.shares.get(stream);
    if (share === undefined || !share.live) {
      return false;
    }
    const keep = share.keep;
    if (!Number.isFinite(keep)) {
      return false;
    }
    let tail;
    try {
      tail = decodeBatchTail(text, keep);
    } catch (error) {
      if (!(error instanceof ProtocolError)) {
        throw error;
      }
      this.invalid(`the server sent an invalid batch (${error.message})`);
      return true;
    }
    if (tail === null || tail.batch.stream !== share.stream) {
      return false;
    }
    this.stats.skipped += tail.skipped;
    this.deliver(share.stream, tail.batch.messages, tail.skipped);
    return true;
  }

  private deliver(stream: string, messages: StreamMessage[], skipped = 0): void {
    const share = this.shares.get(stream);
    if (share === undefined || messages.length === 0) {
      return;
    }
    this.stats.messages += messages.length + skipped;
    share.receive(messages, skipped);
    this.queueFrame();
  }

  private broadcast(message: ControlMessage): void {
    for (const share of this.shares.values()) {
      share.views.forEach(view => view.handlers.control?.(message));
    }
  }

  /** The server broke the protocol: drop the link (it reopens and resumes). */
  private invalid(reason: string): void {
    const link = this.link;
    if (link === null) {
      return;
    }
    this.attempt += 1; // this link's events are no longer ours
    link.close(1000, 'invalid message');
    this.closed(1000, '', true, reason);
  }

  // --- consuming -------------------------------------------------------------------------

  private queueFrame(): void {
    if (this.frameQueued) {
      return;
    }
    this.frameQueued = true;
    // Queued after the views' own frame callbacks (they were queued while the messages
    // were handed over), so `consumed` reports what they applied.
    this.frame(() => {
      this.frameQueued = false;
      this.tick();
    });
  }

  /** One `consumed` per stream that received something since the last frame. */
  private tick(): void {
    if (!this.open) {
      return;
    }
    for (const share of this.shares.values()) {
      const offset = share.received;
      if (
        share.live &&
        share.credited &&
        !share.awaiting &&
        offset !== null &&
        offset !== share.reported
      ) {
        share.reported = offset;
        this.stats.consumed += 1;
        this.send(encodeConsumed({ stream: share.stream, offset }));
      }
    }
  }
}

/** An `info` request waiting for its reply. */
interface PendingInfo {
  readonly stream: string;
  readonly text: string;
  /** Sent on the current link (false: it goes out when the link opens). */
  sent: boolean;
  readonly resolve: (reply: InfoMessage) => void;
  readonly reject: (error: InfoError) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

const BATCH_PREFIX = '{"type":"batch","stream":"';

/** The stream name of a batch as the server writes it (no escapes), or null. */
function batchStream(text: string): string | null {
  const start = BATCH_PREFIX.length;
  const end = text.indexOf('"', start);
  if (end < 0) {
    return null;
  }
  const name = text.slice(start, end);
  return validStreamName(name) ? name : null;
}

// --- the page-global registry --------------------------------------------------------------

const REGISTRY = Symbol.for('nbws.page.v1');

interface Registry {
  readonly version: 1;
  readonly connections: Map<string, PageConnection>;
}

function registry(): Registry {
  const holder = globalThis as unknown as Record<symbol, Registry | undefined>;
  let found = holder[REGISTRY];
  if (found === undefined) {
    found = { version: 1, connections: new Map() };
    holder[REGISTRY] = found;
  }
  return found;
}

/**
 * The page's connection to `endpoint`'s server: the same object for every caller with an
 * endpoint of the same key, whichever bundle it comes from.
 */
export function pageConnection(
  endpoint: Endpoint,
  options?: PageConnectionOptions
): PageConnection {
  const connections = registry().connections;
  let connection = connections.get(endpoint.key);
  if (connection === undefined) {
    connection = new PageConnection(endpoint, options);
    connections.set(endpoint.key, connection);
  }
  return connection;
}

/** Every page connection (for tests and the bench). */
export function pageConnections(): PageConnection[] {
  return [...registry().connections.values()];
}

/** Close and forget every page connection (tests). */
export function resetPageConnections(): void {
  const connections = registry().connections;
  connections.forEach(connection => connection.close());
  connections.clear();
}
