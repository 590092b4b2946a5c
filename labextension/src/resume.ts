/**
 * Resume bookkeeping for one stream subscription (docs/protocol.md, "nbws.v1").
 *
 * A view subscribes with an initial `since` (e.g. `-1000`: the last 1000 messages, so a
 * view displayed again after a page reload replays its history). After a reconnect it
 * must continue exactly where it stopped: `since` = last offset received + 1, with the
 * epoch it had, so the server sends neither a duplicate nor leaves a hole without a
 * `gap`. Offsets are only comparable within one epoch: when the server reports another
 * epoch the bookkeeping starts over. Pure: no socket, no clock.
 */

/**
 * The `since` to send when (re)subscribing: the same arithmetic as `resume_since` in
 * `nbws/protocol/messages.py` (both run `tests/vectors/resume.json`).
 *
 * @param lastOffset the last offset received in the current epoch, or null if none was.
 * @param requested the `since` the subscription was first opened with.
 * @param bounds `first` and `next` of the last `subscribed` reply in the current epoch,
 *   if one came: where that subscription started delivering.
 * @returns `lastOffset + 1` once anything arrived (no gap, no duplicate). Before that,
 *   where the confirmed subscription started (live only: `next`; the last k:
 *   `max(first, next - k)`; an offset: that offset), so what was published while
 *   disconnected still comes and "last k" is not replayed twice. With neither, the
 *   original request.
 */
export function resumeSince(
  lastOffset: number | null,
  requested: number | null,
  bounds: { first: number; next: number } | null = null
): number | null {
  if (lastOffset !== null) {
    return lastOffset + 1;
  }
  if (bounds === null || (requested !== null && requested >= 0)) {
    return requested;
  }
  if (requested === null) {
    return bounds.next;
  }
  return Math.max(bounds.first, bounds.next + requested);
}

/** The part of a `subscribe` request that depends on what was received so far. */
export interface ResumePoint {
  since: number | null;
  epoch?: string;
}

/** Header fields of a delivered `message`. */
export interface Delivered {
  offset: number;
  epoch?: string;
}

/** A `gap` notice. */
export interface GapNotice {
  from: number;
  /** Exclusive end; null when unknown (an epoch change). */
  to: number | null;
  count: number | null;
  reason: string;
  epoch?: string | null;
}

export class ResumeState {
  /** The stream's epoch as last reported by the server. */
  epoch: string | null = null;
  /** The last offset received in `epoch` (null before the first message). */
  lastOffset: number | null = null;
  /** Where the current subscription started delivering, until a message arrives. */
  cursor: number | null = null;
  /** Messages accepted. */
  received = 0;
  /** Messages ignored because they were already received (never expected). */
  duplicates = 0;
  /** Gap notices seen, and the messages they said were skipped. */
  gaps = 0;
  missed = 0;
  /** Times the epoch changed under us (history lost as a whole). */
  epochChanges = 0;
  /** Subscriptions confirmed (1 + reconnects). */
  subscriptions = 0;

  /**
   * @param initialSince `since` of the first subscribe: null (live only), 0 (all
   *   history) or -k (the last k messages).
   */
  constructor(readonly initialSince: number | null) {}

  /** What the next `subscribe` asks for. */
  resumePoint(): ResumePoint {
    // Subscribed before but nothing arrived yet: `cursor` is where that subscription
    // started, so messages published while disconnected still come.
    const since = resumeSince(this.lastOffset, this.cursor ?? this.initialSince);
    const point: ResumePoint = { since };
    if ((this.lastOffset !== null || this.cursor !== null) && this.epoch !== null) {
      point.epoch = this.epoch;
    }
    return point;
  }

  /**
   * The server confirmed a subscription (`subscribed` carries the stream's epoch,
   * `first` and `next`); returns true when the epoch changed under us.
   */
  subscribed(
    reply: { epoch: string; first: number; next: number },
    requested: number | null
  ): boolean {
    this.subscriptions += 1;
    const changed = this.adoptEpoch(reply.epoch);
    if (changed) {
      // The server replays the new epoch's history from its start.
      this.cursor = reply.first;
    } else if (this.lastOffset === null) {
      // Where this subscription starts delivering (the server's cursor).
      this.cursor = resumeSince(null, requested, reply);
    }
    return changed;
  }

  /**
   * A message arrived; returns false when it must be ignored (an offset already
   * received in the same epoch).
   */
  accept(message: Delivered): boolean {
    if (message.epoch !== undefined) {
      this.adoptEpoch(message.epoch);
    }
    if (this.lastOffset !== null && message.offset <= this.lastOffset) {
      this.duplicates += 1;
      return false;
    }
    this.lastOffset = message.offset;
    this.received += 1;
    return true;
  }

  /** A gap notice arrived: offsets [from, to) will not come. */
  gap(notice: GapNotice): void {
    this.gaps += 1;
    this.missed += notice.count ?? 0;
    if (notice.reason === 'epoch') {
      if (notice.epoch !== undefined && notice.epoch !== null) {
        this.adoptEpoch(notice.epoch);
      }
      return;
    }
    // `history` and `dropped` holes end where delivery resumes: resume after them, not
    // inside them. A `conflated` range may still contain messages of other keys that
    // follow the notice, so it does not move the resume point.
    const to = notice.to;
    const skipsAhead = notice.reason === 'history' || notice.reason === 'dropped';
    if (
      skipsAhead &&
      to !== null &&
      to > 0 &&
      (this.lastOffset === null || to - 1 > this.lastOffset)
    ) {
      this.lastOffset = to - 1;
    }
  }

  private adoptEpoch(epoch: string): boolean {
    if (this.epoch === epoch) {
      return false;
    }
    const changed = this.epoch !== null;
    if (changed) {
      this.epochChanges += 1;
    }
    this.epoch = epoch;
    this.lastOffset = null;
    this.cursor = null;
    return changed;
  }
}

/** Reconnect delays: exponential from `initial` to `max`, reset after a success. */
export class Backoff {
  private attempt = 0;

  constructor(
    readonly initial = 250,
    readonly max = 10000,
    /** 0..1 random source (injected so tests are exact). */
    readonly random: () => number = Math.random
  ) {}

  /** Milliseconds to wait before the next attempt (with up to 20% jitter). */
  next(): number {
    const base = Math.min(this.max, this.initial * Math.pow(2, this.attempt));
    this.attempt += 1;
    return Math.round(base * (0.8 + 0.2 * this.random()));
  }

  /** Attempts since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  reset(): void {
    this.attempt = 0;
  }
}
