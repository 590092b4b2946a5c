/**
 * One stream as a page connection shares it among its views (page.ts owns the link and
 * the timers; this module does no I/O). The server allows one subscription per stream per
 * connection, so every view of the stream is served by one `StreamShare`:
 *
 * - the share keeps the resume books (resume.ts) for the whole stream, so after a
 *   reconnect it asks for `last offset + 1` once, for all its views;
 * - each view has its own cursor (the last offset it was given) and its own status line, so
 *   a message is handed to a view at most once, even while the share re-subscribes further
 *   back for a view that joined late and asked for more history than the share has kept;
 * - a ring of the newest messages, as long as the largest history any view asked for, lets
 *   a late view get its history without asking the server again.
 */

import type { GapMessage, SubscribedReply, StreamMessage, ControlMessage } from './protocol';
import { Backoff, ResumeState } from './resume';

export type SubscriptionState = 'connecting' | 'live' | 'retrying' | 'closed';

/** Messages per batch a page asks for. */
export const DEFAULT_MAX_BATCH = 1000;
/** How long (ms) the server may hold a partial batch for a page: under one frame. */
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
  /** Many messages at once, in offset order (when given, used instead of `message`). */
  batch?(messages: StreamMessage[]): void;
  gap?(gap: GapMessage): void;
  /**
   * `n` messages arrived but are not handed over: the older part of a batch that no view of
   * the stream shows, never decoded (only views with this handler are spared decoding).
   */
  skipped?(n: number): void;
  subscribed?(reply: SubscribedReply, epochChanged: boolean): void;
  status?(status: SubscriptionStatus): void;
  /** Any other control message (e.g. `welcome`, `status`, `end`). */
  control?(message: ControlMessage): void;
}

/** What one view asks of a stream. */
export interface ViewRequest {
  /** The last k messages first (0: live only). */
  history: number;
  policy?: string;
  maxMessages?: number;
  /**
   * The most messages of one delivery this view can show (default: `history`, at least 1).
   * Only a view with a `skipped` handler is held to it; without one it gets every message.
   */
  keep?: number;
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
  1013: 'dropped by the server: this page could not keep up (policy disconnect)'
};

export function describeClose(code: number, reason: string): string {
  const meaning = CLOSE_REASONS[code] ?? 'closed';
  return reason ? `${meaning} (${code}: ${reason})` : `${meaning} (${code})`;
}

/** The newest messages of one epoch, at most `capacity` of them. */
export class HistoryRing {
  private items: StreamMessage[] = [];
  private start = 0;

  constructor(public capacity: number) {}

  get length(): number {
    return this.items.length - this.start;
  }

  /** The oldest offset kept, or null. */
  get firstOffset(): number | null {
    return this.length > 0 ? this.items[this.start].offset : null;
  }

  get lastOffset(): number | null {
    return this.length > 0 ? this.items[this.items.length - 1].offset : null;
  }

  push(message: StreamMessage): void {
    if (this.capacity <= 0) {
      return;
    }
    this.items.push(message);
    if (this.length > this.capacity) {
      this.start += 1;
      if (this.start >= this.capacity) {
        this.items = this.items.slice(this.start);
        this.start = 0;
      }
    }
  }

  /** The newest `k` messages, oldest first. */
  tail(k: number): StreamMessage[] {
    return this.items.slice(Math.max(this.start, this.items.length - k));
  }

  clear(): void {
    this.items = [];
    this.start = 0;
  }
}

/** One view of a stream: its handlers, what it asked for, where it is. */
export class ShareView {
  /** The last offset handed to this view (in `epoch`), null before the first. */
  last: number | null = null;
  epoch: string | null = null;
  /** The `subscribe` id this view waits for before it takes messages (null: it takes them). */
  waitingFor: number | null = null;
  /** While history is replayed: the offset where it ends (exclusive) and the live text. */
  replayEnd: number | null = null;
  liveDetail = 'live';
  status: SubscriptionStatus = { state: 'connecting', detail: 'connecting', problem: false };
  disposed = false;

  constructor(
    readonly request: ViewRequest,
    readonly handlers: SubscriptionHandlers
  ) {}

  report(state: SubscriptionState, detail: string, problem: boolean): void {
    this.status = { state, detail, problem };
    this.handlers.status?.(this.status);
  }

  /** How many of a delivery's newest messages this view needs (Infinity: all of them). */
  get keep(): number {
    if (!this.handlers.skipped) {
      return Infinity;
    }
    return Math.max(1, this.request.keep ?? this.request.history);
  }

  /**
   * Offsets [from, to) of `epoch` arrived undecoded: count the ones this view has not had
   * (as `fresh` would have handed them over) and move its cursor past them.
   */
  skip(from: number, to: number, epoch: string): void {
    if (this.waitingFor !== null || this.disposed) {
      return;
    }
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.last = null;
    }
    const start = this.last === null ? from : Math.max(from, this.last + 1);
    if (to > start) {
      this.last = to - 1;
      this.handlers.skipped?.(to - start);
    }
  }

  /** Offsets up to `offset` were given (or skipped): the replay may be over. */
  replayed(offset: number): void {
    if (this.replayEnd !== null && offset >= this.replayEnd - 1) {
      this.replayEnd = null;
      if (this.status.state === 'live' && !this.status.problem) {
        this.report('live', this.liveDetail, false);
      }
    }
  }

  /** The part of `messages` (one epoch, increasing offsets) this view has not had yet. */
  fresh(messages: StreamMessage[]): StreamMessage[] {
    if (this.waitingFor !== null || messages.length === 0) {
      return [];
    }
    const epoch = messages[0].epoch;
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.last = null;
    }
    let index = 0;
    if (this.last !== null) {
      const last = this.last;
      while (index < messages.length && messages[index].offset <= last) {
        index += 1;
      }
    }
    const out = index === 0 ? messages : messages.slice(index);
    if (out.length > 0) {
      this.last = out[out.length - 1].offset;
    }
    return out;
  }

  /** Hand messages over (the batch fast path when the view has one). */
  deliver(messages: StreamMessage[]): void {
    if (messages.length === 0 || this.disposed) {
      return;
    }
    if (this.handlers.batch) {
      this.handlers.batch(messages);
    } else {
      for (const message of messages) {
        this.handlers.message(message);
      }
    }
    this.replayed(messages[messages.length - 1].offset);
  }
}

/**
 * The shared state of one stream on one page connection: its views, resume books, history
 * ring and the subscription the server has (or is about to have) for it.
 */
export class StreamShare {
  readonly views = new Set<ShareView>();
  readonly ring = new HistoryRing(0);
  /** Books kept for the whole stream: what the next subscribe asks for. */
  resume: ResumeState | null = null;
  /** The id of the last `subscribe` sent (its reply is the one that counts), or null. */
  pending: number | null = null;
  /** The `since` that subscribe asked for. */
  requestedSince: number | null = null;
  /** The server confirmed a subscription (it may since have been asked to replace it). */
  live = false;
  /**
   * A subscribe is out and its `subscribed` has not come: a `consumed` now would be read
   * against the new subscription, so none is sent until it is confirmed.
   */
  awaiting = false;
  /** `first`/`next` of the last `subscribed`, and the reply itself. */
  reply: SubscribedReply | null = null;
  /** The subscription was asked with `credit` (so the page reports `consumed`). */
  credited = false;
  /** The last offset received (what `consumed` reports) and the last one reported. */
  received: number | null = null;
  reported: number | null = null;
  /** Delays between subscribes the server refused (missing stream, broker down). */
  readonly backoff = new Backoff();
  /** Successful subscriptions of this stream (1 + resumes), and the link of the last one. */
  confirmations = 0;
  confirmedOn = 0;

  constructor(readonly stream: string) {}

  /** The largest history any view asked for. */
  get historyWanted(): number {
    let most = 0;
    for (const view of this.views) {
      most = Math.max(most, view.request.history);
    }
    return most;
  }

  /**
   * How many of a batch's newest messages must be decoded: what the views show, and no
   * fewer than the ring holds (so the ring stays one run of consecutive offsets).
   */
  get keep(): number {
    let most = Math.max(1, this.ring.capacity);
    for (const view of this.views) {
      most = Math.max(most, view.keep);
    }
    return most;
  }

  /** Options of the subscription: the first view's policy, the largest buffer asked for. */
  get policy(): string | undefined {
    for (const view of this.views) {
      if (view.request.policy) {
        return view.request.policy;
      }
    }
    return undefined;
  }

  get maxMessages(): number | undefined {
    let most: number | undefined;
    for (const view of this.views) {
      const asked = view.request.maxMessages;
      if (asked && (most === undefined || asked > most)) {
        most = asked;
      }
    }
    return most;
  }

  /** Views that wait for history the next subscribe must bring. */
  get waiting(): ShareView[] {
    return [...this.views].filter(view => view.waitingFor !== null);
  }

  /**
   * The `since` (and epoch) of the next subscribe. With nobody waiting for history it is
   * the resume point. When a view waits for the last k messages it reaches back far enough
   * for that view, but never past where the others stopped, so they miss nothing either.
   */
  nextSubscribe(): { since: number | null; epoch?: string } {
    const wanted = Math.max(0, ...this.waiting.map(view => view.request.history));
    if (this.resume === null) {
      this.resume = new ResumeState(this.historyWanted > 0 ? -this.historyWanted : null);
    }
    const point = this.resume.resumePoint();
    if (wanted === 0 || (this.reply === null && this.resume.lastOffset === null)) {
      if (wanted > 0 && (point.since === null || (point.since < 0 && -point.since < wanted))) {
        return { since: -wanted };
      }
      return point;
    }
    const last = this.resume.lastOffset;
    const next = Math.max(this.reply?.next ?? 0, last === null ? 0 : last + 1);
    let since = Math.max(this.reply?.first ?? 0, next - wanted);
    if (point.since !== null && point.since >= 0) {
      since = Math.min(since, point.since);
    }
    const out: { since: number | null; epoch?: string } = { since };
    if (this.resume.epoch !== null) {
      out.epoch = this.resume.epoch;
    }
    return out;
  }

  /**
   * A new view. `ring`: its history is here (the caller hands it `ring.tail(k)`); `wait`: a
   * subscribe that will bring it is pending or will go out when the link opens; `send`: the
   * share must subscribe again, reaching back for this view.
   */
  join(view: ShareView): 'ring' | 'wait' | 'send' {
    this.views.add(view);
    this.ring.capacity = Math.max(this.ring.capacity, view.request.history);
    const k = view.request.history;
    if (!this.live) {
      view.waitingFor = this.pending ?? -1;
      const s = this.requestedSince;
      const covered = k === 0 || s === 0 || (s !== null && s < 0 && -s >= k);
      return this.pending === null || covered ? 'wait' : 'send';
    }
    if (k === 0) {
      view.epoch = this.resume?.epoch ?? null;
      view.last = this.resume?.lastOffset ?? null;
      return 'wait';
    }
    const reply = this.reply;
    const first = this.ring.firstOffset;
    // The ring holds everything the stream has, back to its first offset.
    const coversAll =
      reply !== null &&
      (first === null
        ? reply.next === reply.first && (this.resume?.lastOffset ?? null) === null
        : first <= reply.first);
    if (this.ring.length >= k || coversAll) {
      view.epoch = this.resume?.epoch ?? null;
      view.last = this.resume?.lastOffset ?? null;
      return 'ring';
    }
    view.waitingFor = -1;
    return 'send';
  }

  /** A subscribe went out (for everyone waiting). */
  sent(id: number, since: number | null): void {
    this.pending = id;
    this.awaiting = true;
    this.requestedSince = since;
    for (const view of this.views) {
      if (view.waitingFor !== null) {
        view.waitingFor = id;
      }
    }
  }

  /** The link is gone: the subscription with it. */
  lost(): void {
    this.pending = null;
    this.awaiting = false;
    this.live = false;
  }

  /** `subscribed` arrived; returns the views that start taking messages now. */
  subscribed(reply: SubscribedReply, reconnected: boolean): ShareView[] {
    const resume = this.resume ?? new ResumeState(this.requestedSince);
    this.resume = resume;
    const requested = this.requestedSince;
    const changed = resume.subscribed(reply, requested);
    this.live = true;
    this.awaiting = false;
    this.reply = reply;
    this.confirmations += 1;
    this.received = null;
    this.reported = null;
    const cursor =
      requested !== null && requested >= 0 && !changed ? requested : (resume.cursor ?? reply.next);
    if (changed || (requested !== null && requested < (this.ring.lastOffset ?? -1))) {
      this.ring.clear();
    }
    const starting: ShareView[] = [];
    for (const view of this.views) {
      let from: number;
      if (view.waitingFor !== null) {
        view.waitingFor = null;
        view.epoch = reply.epoch;
        from = Math.max(cursor, reply.next - view.request.history);
        view.last = from > 0 ? from - 1 : null;
        view.liveDetail = 'live';
        starting.push(view);
      } else {
        if (changed || view.epoch !== reply.epoch) {
          view.epoch = reply.epoch;
          view.last = null;
        }
        from = Math.max(cursor, view.last === null ? cursor : view.last + 1);
        view.liveDetail = reconnected ? `live again, resumed at offset ${from}` : 'live';
        if (!reconnected && view.status.state === 'live' && !view.status.problem) {
          // A re-subscribe for another view: nothing changes for this one.
          view.handlers.subscribed?.(reply, changed);
          continue;
        }
      }
      const replay = Math.max(0, reply.next - from);
      let detail = view.liveDetail;
      view.replayEnd = null;
      if (replay > 0) {
        detail += `, replaying ${replay} message${replay === 1 ? '' : 's'} of history`;
        view.replayEnd = reply.next;
      }
      view.report('live', detail, false);
      view.handlers.subscribed?.(reply, changed);
    }
    return starting;
  }

  /**
   * Messages of one epoch arrived, in offset order: book them and hand them to each view.
   * `skipped` older ones (the offsets just before `messages[0]`) came undecoded: they are
   * booked (the resume point moves past them) and counted to each view, never handed over.
   */
  receive(messages: StreamMessage[], skipped = 0): void {
    const resume = this.resume;
    if (resume === null || !this.live || messages.length === 0) {
      // Not confirmed: what arrives belongs to a subscription whose answer was dropped
      // (the stream was left and joined again), so it must not move the resume books.
      return;
    }
    const to = messages[0].offset;
    const from = to - skipped;
    if (skipped > 0) {
      const seen = { offset: from, epoch: messages[0].epoch };
      for (let offset = from; offset < to; offset++) {
        if (
          resume.lastOffset === null ||
          seen.epoch !== resume.epoch ||
          offset > resume.lastOffset
        ) {
          seen.offset = offset;
          resume.accept(seen);
        }
      }
    }
    for (const message of messages) {
      const isNew =
        resume.lastOffset === null ||
        message.epoch !== resume.epoch ||
        message.offset > resume.lastOffset;
      if (isNew && resume.accept(message)) {
        this.ring.push(message);
      }
    }
    this.received = messages[messages.length - 1].offset;
    for (const view of this.views) {
      if (skipped > 0) {
        view.skip(from, to, messages[0].epoch);
      }
      view.deliver(view.fresh(messages));
    }
  }

  gap(gap: GapMessage): void {
    this.resume?.gap(gap);
    if (gap.reason === 'epoch') {
      this.ring.clear();
    }
    for (const view of this.views) {
      if (view.waitingFor === null && !view.disposed) {
        view.handlers.gap?.(gap);
        if (gap.to !== null) {
          view.replayed(gap.to - 1);
        }
      }
    }
  }

  /** Where the next subscribe resumes, in words (for "reconnecting in …" lines). */
  resumeText(): string {
    const point = this.nextSubscribe();
    if (point.since === null) {
      return 'with live messages';
    }
    return point.since < 0
      ? `with the last ${-point.since} messages`
      : `from offset ${point.since}`;
  }

  report(state: SubscriptionState, detail: string, problem: boolean): void {
    for (const view of this.views) {
      view.report(state, detail, problem);
    }
  }
}
