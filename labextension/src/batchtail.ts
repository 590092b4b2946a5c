/**
 * Dropping early in a JSON `batch`: decode only the newest `keep` messages of a batch
 * event's text and count the older ones without parsing them.
 *
 * This works because of how the server writes a JSON batch (messages.py `encode_batch`,
 * docs/protocol.md "batch"): `{"type":"batch","stream":..,"epoch":..,"messages":[` then
 * the elements joined by `,` then `]}`, every element starting `{"offset":N,`, and (no
 * conflation) consecutive offsets. A payload may itself hold `{"offset":` (a nested object),
 * so a cut found by searching is proven before it is used: the tail must parse as a JSON
 * array of exactly `keep` elements (a cut inside an element leaves unbalanced brackets),
 * and the older elements counted by their `,{"offset":` starts must agree with the offsets
 * (first offset to the tail's first). When anything does not fit, the answer is null and
 * the caller decodes the whole batch as usual (`decodeEvent`). The tail is checked exactly
 * as `decodeEvent` checks a batch; the skipped elements are not checked at all (that is
 * the point: they are never parsed).
 */

import { BatchMessage, batchOf } from './protocol';

/** The newest messages of a batch and how many older ones were left unparsed. */
export interface BatchTail {
  /** The batch with only its newest messages (whole `StreamMessage`s, checked). */
  batch: BatchMessage;
  /** Messages before them, neither parsed nor checked. */
  skipped: number;
}

const PREFIX = '{"type":"batch","stream":';
const MESSAGES = ',"messages":[{"offset":';
const ELEMENT = ',{"offset":';
const SUFFIX = ']}';

/**
 * The newest `keep` messages of the JSON batch `text`, or null when the batch must be
 * decoded whole (not the server's layout, fewer than `keep` + 1 messages, or a cut that
 * cannot be proven). Throws the `ProtocolError` `decodeEvent` would for a bad tail.
 */
export function decodeBatchTail(text: string, keep: number): BatchTail | null {
  if (!(keep >= 1) || !text.startsWith(PREFIX) || !text.endsWith(SUFFIX)) {
    return null;
  }
  const list = text.indexOf(MESSAGES, PREFIX.length);
  if (list < 0) {
    return null;
  }
  const firstElement = list + MESSAGES.length - ELEMENT.length + 1;
  const end = text.length - SUFFIX.length;
  // Walk back `keep` element starts from the end of the list.
  let cut = end;
  for (let i = 0; i < keep; i++) {
    cut = text.lastIndexOf(ELEMENT, cut - 1);
    if (cut < firstElement) {
      return null; // keep covers the whole batch: nothing to skip
    }
  }
  let elements: unknown;
  try {
    elements = JSON.parse('[' + text.slice(cut + 1, end) + ']');
  } catch {
    return null; // the cut was inside a payload
  }
  if (!Array.isArray(elements) || elements.length !== keep) {
    return null;
  }
  const head = elements[0] as { offset?: unknown } | null;
  const first = leadingInteger(text, list + MESSAGES.length);
  if (first === null || typeof head !== 'object' || head === null) {
    return null;
  }
  const tailFirst = head.offset;
  if (typeof tailFirst !== 'number' || !Number.isInteger(tailFirst)) {
    return null;
  }
  // Element starts before the cut: the first element plus each `,{"offset":` found.
  let counted = 1;
  for (let at = text.indexOf(ELEMENT, firstElement); at >= 0 && at < cut;) {
    counted += 1;
    at = text.indexOf(ELEMENT, at + ELEMENT.length);
  }
  if (tailFirst - first !== counted) {
    return null; // offsets not consecutive (conflation) or a payload's own "offset"
  }
  let frame: Record<string, unknown>;
  try {
    frame = JSON.parse(text.slice(0, list) + '}') as Record<string, unknown>;
  } catch {
    return null;
  }
  if (Object.keys(frame).length !== 3) {
    return null;
  }
  frame.messages = elements;
  return { batch: batchOf(frame as { type: string }), skipped: counted };
}

/** The non-negative integer written at `text[at:]` (up to the next `,`), or null. */
function leadingInteger(text: string, at: number): number | null {
  let value = 0;
  let digits = 0;
  for (let i = at; i < text.length && digits < 16; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48);
      digits += 1;
    } else {
      return digits > 0 && c === 44 ? value : null;
    }
  }
  return null;
}
