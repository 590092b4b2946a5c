/**
 * `nbws.v1` message shapes the views use, and the binary message layout
 * (docs/protocol.md): a 4-byte big-endian header length, the JSON header, the payload.
 */

export const PROTOCOL = 'nbws.v1';

/** A delivered stream message. */
export interface StreamMessage {
  type: 'message';
  stream: string;
  offset: number;
  epoch: string;
  time: number;
  producer?: string;
  seq?: number;
  key?: string;
  payload?: unknown;
  binary?: boolean;
  content_type?: string;
  /** Set for binary messages: the payload bytes. */
  data?: Uint8Array;
}

export interface SubscribedReply {
  type: 'subscribed';
  stream: string;
  epoch: string;
  first: number;
  next: number;
  since: number | null;
  policy: string;
  max_messages: number;
  max_bytes: number;
}

export interface GapMessage {
  type: 'gap';
  stream: string;
  from: number;
  to: number | null;
  count: number | null;
  reason: string;
  epoch?: string;
}

export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
  ref?: unknown;
}

export interface StatusMessage {
  type: 'status';
  state: string;
  reason?: string;
}

/** Any server → client control message (JSON object with a `type`). */
export interface ControlMessage {
  type: string;
  [key: string]: unknown;
}

/** Parse a text frame; null if it is not a JSON object with a `type`. */
export function parseText(data: string): ControlMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return null;
  }
  const type = (value as { type?: unknown }).type;
  return typeof type === 'string' ? (value as ControlMessage) : null;
}

/** Split a binary message into its JSON header and payload; null if malformed. */
export function parseBinary(buffer: ArrayBuffer): ControlMessage | null {
  if (buffer.byteLength < 4) {
    return null;
  }
  const size = new DataView(buffer).getUint32(0, false);
  if (size > buffer.byteLength - 4) {
    return null;
  }
  const headerText = new TextDecoder().decode(new Uint8Array(buffer, 4, size));
  const header = parseText(headerText);
  if (header === null) {
    return null;
  }
  header.data = new Uint8Array(buffer, 4 + size);
  return header;
}

/** A message field for display: payload field first, then the message's own header. */
export function fieldOf(message: StreamMessage, name: string): unknown {
  const payload = message.payload;
  if (payload !== null && typeof payload === 'object' && !Array.isArray(payload)) {
    const record = payload as Record<string, unknown>;
    if (name in record) {
      return record[name];
    }
  }
  switch (name) {
    case 'offset':
      return message.offset;
    case 'time':
      return message.time;
    case 'key':
      return message.key;
    case 'producer':
      return message.producer;
    case 'seq':
      return message.seq;
    case 'payload':
      return message.binary ? message.data : message.payload;
    default:
      return undefined;
  }
}

/** The payload's own field names, in order ([] for non-object payloads). */
export function payloadFields(message: StreamMessage): string[] {
  const payload = message.payload;
  if (payload !== null && typeof payload === 'object' && !Array.isArray(payload)) {
    return Object.keys(payload as object);
  }
  return [];
}

/** Short readable text for any value (never HTML: callers assign it to textContent). */
export function formatValue(value: unknown, limit = 200): string {
  let text: string;
  if (value === undefined) {
    text = '';
  } else if (value === null) {
    text = 'null';
  } else if (typeof value === 'string') {
    text = value;
  } else if (typeof value === 'number') {
    text = formatNumber(value);
  } else if (value instanceof Uint8Array) {
    text = `<${value.byteLength} bytes>`;
  } else {
    try {
      text = JSON.stringify(value);
    } catch {
      text = String(value);
    }
  }
  return text.length > limit ? text.slice(0, limit - 1) + '…' : text;
}

/** A number with at most 6 significant digits for fractions, integers in full. */
export function formatNumber(value: number): string {
  if (Number.isInteger(value) || !Number.isFinite(value)) {
    return String(value);
  }
  const text = value.toPrecision(6);
  if (text.includes('e') || !text.includes('.')) {
    return text;
  }
  return text.replace(/0+$/, '').replace(/\.$/, '');
}

/** A message rate for display: one decimal below 10/s, whole numbers above. */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) {
    return '0';
  }
  return perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond).toLocaleString('en-US');
}

/** The numeric value of a field (numbers, numeric strings, booleans); NaN otherwise. */
export function numericValue(value: unknown): number {
  if (typeof value === 'number') {
    return value;
  }
  if (typeof value === 'boolean') {
    return value ? 1 : 0;
  }
  if (typeof value === 'string' && value.trim() !== '') {
    const parsed = Number(value);
    if (!Number.isNaN(parsed)) {
      return parsed;
    }
    const date = Date.parse(value);
    return Number.isNaN(date) ? NaN : date / 1000;
  }
  return NaN;
}
