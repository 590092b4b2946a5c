/**
 * `nbws.v1` messages on the browser side (docs/protocol.md): the encoder for what the
 * views send (`subscribe`, `consumed`, `unsubscribe`) and the decoder for what they
 * receive, with the same field checks as `nbws/protocol/messages.py`. The field tables below mirror
 * that module's dataclasses; `docs/nbws.v1.schema.json` is generated from it, and the
 * unit tests compare these tables with the schema and run the shared vectors in
 * `tests/vectors/`, so a field renamed on one side fails the tests of the other.
 *
 * The binary layout: a 4-byte big-endian header length, the JSON header, the payload.
 * A `batch` event (docs/protocol.md, "batch") carries many messages; `decodeEvent`
 * returns it with each element as a whole `StreamMessage`.
 */

export const PROTOCOL = 'nbws.v1';

export const MAX_HEADER_BYTES = 64 * 1024;
export const MAX_KEY_LENGTH = 256;
export const MAX_PRODUCER_LENGTH = 256;
export const MAX_CONTENT_TYPE_LENGTH = 256;
export const MAX_EPOCH_LENGTH = 64;
export const MAX_REF_LENGTH = 256;
export const MAX_BATCH = 10_000;
export const MAX_LINGER_MS = 100;
/** Largest `credit` (messages in flight) a subscriber may ask for. */
export const MAX_CREDIT = 100_000;
/** Largest `credit_bytes` a subscriber may ask for. */
export const MAX_CREDIT_BYTES = 2 ** 30;
export const STREAM_NAME = /^[A-Za-z0-9._:/-]{1,200}$/;
const STREAM_RULE = '1-200 characters from A-Z a-z 0-9 . _ : / -';

export const POLICIES = ['drop-oldest', 'drop-newest', 'conflate', 'disconnect', 'block'] as const;
export const GAP_REASONS = ['history', 'epoch', 'dropped', 'conflated'] as const;
export const HEALTH_STATES = ['ok', 'degraded'] as const;
export const ERROR_CODES = [
  'bad-request',
  'unknown-type',
  'unknown-stream',
  'not-subscribed',
  'unavailable'
] as const;
export const NACK_CODES = [
  'unknown-stream',
  'oversize',
  'forbidden',
  'unavailable',
  'bad-request'
] as const;

export type Policy = (typeof POLICIES)[number];
export type GapReason = (typeof GAP_REASONS)[number];
export type HealthState = (typeof HEALTH_STATES)[number];
export type ErrorCode = (typeof ERROR_CODES)[number];
export type NackCode = (typeof NACK_CODES)[number];
/** A request id (`id`), echoed back as `ref`. */
export type Ref = string | number;

/** True for a stream name nbws accepts. */
export function validStreamName(name: unknown): name is string {
  return typeof name === 'string' && STREAM_NAME.test(name);
}

// --- the field tables ------------------------------------------------------------------

/** What a field holds on the wire (one check per kind, as in messages.py `Kind`). */
export type Kind =
  | 'stream'
  | 'int'
  | 'nat'
  | 'positive'
  | 'str'
  | 'number'
  | 'bool'
  | 'ref'
  | 'enum'
  | 'json'
  | 'object';

/** How one field appears on the wire. */
export interface FieldSpec {
  readonly wire: string;
  readonly kind: Kind;
  readonly required?: boolean;
  /** Longest string (code points), for `str`. */
  readonly limit?: number;
  /** Largest value, for the integer kinds. */
  readonly max?: number;
  /** Allowed values, for `enum`. */
  readonly choices?: readonly string[];
  /** Sent as `null` when absent (decoded as null, never left out). */
  readonly keepNull?: boolean;
}

const req = (wire: string, kind: Kind, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  wire,
  kind,
  required: true,
  ...extra
});
const opt = (wire: string, kind: Kind, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  wire,
  kind,
  ...extra
});
const nul = (wire: string, kind: Kind, extra: Partial<FieldSpec> = {}): FieldSpec => ({
  wire,
  kind,
  keepNull: true,
  ...extra
});

export type RequestType =
  'subscribe' | 'consumed' | 'unsubscribe' | 'publish' | 'info' | 'publish_batch';
export type EventType =
  | 'welcome'
  | 'subscribed'
  | 'unsubscribed'
  | 'message'
  | 'end'
  | 'ack'
  | 'nack'
  | 'gap'
  | 'info'
  | 'error'
  | 'status'
  | 'batch';

/** Client → server messages: their fields, in the order messages.py declares them. */
export const REQUEST_FIELDS: { readonly [T in RequestType]: readonly FieldSpec[] } = {
  subscribe: [
    req('stream', 'stream'),
    opt('id', 'ref'),
    opt('since', 'int'),
    opt('until', 'nat'),
    opt('epoch', 'str', { limit: MAX_EPOCH_LENGTH }),
    opt('policy', 'enum', { choices: POLICIES }),
    opt('max_messages', 'positive'),
    opt('max_bytes', 'positive'),
    opt('max_batch', 'positive', { max: MAX_BATCH }),
    opt('linger_ms', 'nat', { max: MAX_LINGER_MS }),
    opt('credit', 'positive', { max: MAX_CREDIT }),
    opt('credit_bytes', 'positive', { max: MAX_CREDIT_BYTES })
  ],
  consumed: [req('stream', 'stream'), req('offset', 'nat'), opt('id', 'ref')],
  unsubscribe: [req('stream', 'stream'), opt('id', 'ref')],
  publish: [
    req('stream', 'stream'),
    opt('payload', 'json'),
    opt('producer', 'str', { limit: MAX_PRODUCER_LENGTH }),
    opt('seq', 'nat'),
    opt('key', 'str', { limit: MAX_KEY_LENGTH }),
    opt('content_type', 'str', { limit: MAX_CONTENT_TYPE_LENGTH }),
    opt('id', 'ref')
  ],
  info: [req('stream', 'stream'), opt('id', 'ref')],
  publish_batch: [
    req('stream', 'stream'),
    req('producer', 'str', { limit: MAX_PRODUCER_LENGTH }),
    req('seq', 'nat'),
    opt('payloads', 'json'),
    opt('keys', 'json'),
    opt('sizes', 'json'),
    opt('content_type', 'str', { limit: MAX_CONTENT_TYPE_LENGTH }),
    opt('id', 'ref')
  ]
};

/** Server → client messages: their fields, in the order messages.py declares them. */
export const EVENT_FIELDS: { readonly [T in EventType]: readonly FieldSpec[] } = {
  welcome: [
    req('protocol', 'str'),
    req('server', 'str'),
    req('connection', 'str'),
    req('max_message_size', 'nat'),
    req('heartbeat_interval', 'number'),
    req('dedupe_window', 'nat')
  ],
  subscribed: [
    req('stream', 'stream'),
    req('epoch', 'str'),
    req('first', 'nat'),
    req('next', 'nat'),
    req('policy', 'enum', { choices: POLICIES }),
    req('max_messages', 'positive'),
    req('max_bytes', 'positive'),
    nul('since', 'int'),
    nul('ref', 'ref'),
    opt('max_batch', 'positive'),
    opt('linger_ms', 'nat'),
    opt('credit', 'positive'),
    opt('credit_bytes', 'positive')
  ],
  unsubscribed: [req('stream', 'stream'), nul('ref', 'ref')],
  message: [
    req('stream', 'stream'),
    req('offset', 'nat'),
    req('epoch', 'str'),
    req('time', 'number'),
    opt('payload', 'json'),
    opt('producer', 'str'),
    opt('seq', 'nat'),
    opt('key', 'str'),
    opt('content_type', 'str')
  ],
  end: [req('stream', 'stream'), req('next', 'nat')],
  ack: [
    req('stream', 'stream'),
    req('producer', 'str'),
    req('seq', 'nat'),
    req('epoch', 'str'),
    req('duplicate', 'bool'),
    nul('offset', 'nat'),
    opt('last', 'nat'),
    opt('duplicates', 'object')
  ],
  nack: [
    req('stream', 'stream'),
    req('code', 'enum', { choices: NACK_CODES }),
    req('reason', 'str'),
    req('retry', 'bool'),
    nul('producer', 'str'),
    nul('seq', 'nat'),
    opt('last', 'nat')
  ],
  gap: [
    req('stream', 'stream'),
    req('from', 'nat'),
    req('reason', 'enum', { choices: GAP_REASONS }),
    nul('to', 'nat'),
    nul('count', 'nat'),
    nul('epoch', 'str')
  ],
  info: [
    req('stream', 'stream'),
    req('epoch', 'str'),
    req('first', 'nat'),
    req('next', 'nat'),
    req('history_messages', 'nat'),
    req('history_bytes', 'nat'),
    req('rate', 'number'),
    req('subscribers', 'nat'),
    req('drops', 'nat'),
    req('held_acks', 'nat'),
    nul('ref', 'ref')
  ],
  error: [req('code', 'enum', { choices: ERROR_CODES }), req('message', 'str'), nul('ref', 'ref')],
  status: [req('state', 'enum', { choices: HEALTH_STATES }), opt('reason', 'str')],
  batch: [
    req('stream', 'stream'),
    req('epoch', 'str'),
    req('messages', 'json'),
    opt('binary', 'bool'),
    opt('sizes', 'json')
  ]
};

/** The fields of one `batch` element: a `message` without `stream` and `epoch`. */
export const BATCH_ITEM_FIELDS: readonly FieldSpec[] = EVENT_FIELDS.message.filter(
  spec => spec.wire !== 'stream' && spec.wire !== 'epoch'
);

// --- message shapes (as decoded: optional fields absent, `keepNull` ones null) ----------

export interface WelcomeMessage {
  type: 'welcome';
  protocol: string;
  server: string;
  connection: string;
  max_message_size: number;
  heartbeat_interval: number;
  dedupe_window: number;
}

export interface SubscribedReply {
  type: 'subscribed';
  stream: string;
  epoch: string;
  first: number;
  next: number;
  since: number | null;
  policy: Policy;
  max_messages: number;
  max_bytes: number;
  ref?: Ref | null;
  max_batch?: number;
  linger_ms?: number;
  /** A subscriber with credit: messages that may be in flight (see `consumed`). */
  credit?: number;
  credit_bytes?: number;
}

export interface UnsubscribedReply {
  type: 'unsubscribed';
  stream: string;
  ref: Ref | null;
}

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
  /** The JSON payload (absent for a binary message). */
  payload?: unknown;
  binary?: boolean;
  content_type?: string;
  /** Set for binary messages: the payload bytes. */
  data?: Uint8Array;
}

/** Many delivered messages of one stream and epoch, in offset order. */
export interface BatchMessage {
  type: 'batch';
  stream: string;
  epoch: string;
  /** Each a whole `message` (with `stream` and `epoch`), as if sent one by one. */
  messages: StreamMessage[];
  /** A binary batch: every payload is bytes (`data`). */
  binary?: boolean;
}

export interface EndMessage {
  type: 'end';
  stream: string;
  next: number;
}

export interface AckMessage {
  type: 'ack';
  stream: string;
  producer: string;
  seq: number;
  epoch: string;
  duplicate: boolean;
  offset: number | null;
}

export interface NackMessage {
  type: 'nack';
  stream: string;
  code: NackCode;
  reason: string;
  retry: boolean;
  producer: string | null;
  seq: number | null;
}

export interface GapMessage {
  type: 'gap';
  stream: string;
  from: number;
  to: number | null;
  count: number | null;
  reason: GapReason;
  epoch?: string | null;
}

export interface InfoMessage {
  type: 'info';
  stream: string;
  epoch: string;
  first: number;
  next: number;
  history_messages: number;
  history_bytes: number;
  rate: number;
  subscribers: number;
  drops: number;
  held_acks: number;
  ref: Ref | null;
}

export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  message: string;
  ref?: Ref | null;
}

export interface StatusMessage {
  type: 'status';
  state: HealthState;
  reason?: string;
}

/** Any server → client message, as `decodeEvent` returns it. */
export type ServerEvent =
  | WelcomeMessage
  | SubscribedReply
  | UnsubscribedReply
  | StreamMessage
  | EndMessage
  | AckMessage
  | NackMessage
  | GapMessage
  | InfoMessage
  | ErrorMessage
  | StatusMessage
  | BatchMessage;

export interface SubscribeRequest {
  stream: string;
  id?: Ref | null;
  /** null: live only; 0: all history; -k: the last k messages. */
  since?: number | null;
  until?: number | null;
  epoch?: string | null;
  policy?: Policy | null;
  max_messages?: number | null;
  max_bytes?: number | null;
  /** Ask for `batch` events of at most this many messages. */
  max_batch?: number | null;
  /** How long (ms, at most 100) a partial live batch may wait; needs `max_batch`. */
  linger_ms?: number | null;
  /**
   * Messages the server may have sent and the client not yet reported `consumed`
   * (at most 100000); needs `max_batch`.
   */
  credit?: number | null;
  /** The same bound in bytes; needs `credit`. */
  credit_bytes?: number | null;
}

/** Everything of `stream` up to and including `offset` has been applied (with credit). */
export interface ConsumedRequest {
  stream: string;
  offset: number;
  id?: Ref | null;
}

export interface UnsubscribeRequest {
  stream: string;
  id?: Ref | null;
}

/** Any server → client control message (JSON object with a `type`). */
export interface ControlMessage {
  type: string;
  [key: string]: unknown;
}

// --- errors -----------------------------------------------------------------------------

/**
 * A message nbws.v1 does not allow. `code` is the `error` code a server answers with
 * (`bad-request`, `unknown-type`), or null when `close` is set: the close code for a
 * peer that does not speak nbws.v1 at all (1007 not JSON, 1008 not an object or a
 * malformed binary header). `ref` is the message's request id, when it had a valid one.
 */
export class ProtocolError extends Error {
  constructor(
    message: string,
    readonly code: 'bad-request' | 'unknown-type' | null,
    readonly close: 1007 | 1008 | null = null,
    public ref: Ref | null = null
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const bad = (message: string) => new ProtocolError(message, 'bad-request');
const notNbws = (message: string, close: 1007 | 1008) => new ProtocolError(message, null, close);

/** Strings are measured in code points, as Python does. */
function longerThan(value: string, limit: number): boolean {
  return value.length > limit && Array.from(value).length > limit;
}

/** The check of one field kind on a present, non-null value (messages.py `_checker`). */
function check(spec: FieldSpec, value: unknown, type: string): unknown {
  const name = spec.wire;
  switch (spec.kind) {
    case 'stream':
      if (!validStreamName(value)) {
        throw bad(`${type} needs a '${name}' of ${STREAM_RULE}`);
      }
      return value;
    case 'int':
    case 'nat':
    case 'positive': {
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        throw bad(`'${name}' must be an integer`);
      }
      const minimum = spec.kind === 'nat' ? 0 : spec.kind === 'positive' ? 1 : null;
      if (minimum !== null && value < minimum) {
        throw bad(`'${name}' must be at least ${minimum}`);
      }
      if (spec.max !== undefined && value > spec.max) {
        throw bad(`'${name}' must be at most ${spec.max}`);
      }
      return value;
    }
    case 'str':
      if (typeof value !== 'string') {
        throw bad(`'${name}' must be a string`);
      }
      if (spec.limit && longerThan(value, spec.limit)) {
        throw bad(`'${name}' is longer than ${spec.limit} characters`);
      }
      return value;
    case 'ref':
      if (
        (typeof value === 'number' && Number.isInteger(value)) ||
        (typeof value === 'string' && !longerThan(value, MAX_REF_LENGTH))
      ) {
        return value;
      }
      throw bad(`'${name}' must be an integer or a string of at most ${MAX_REF_LENGTH}`);
    case 'enum': {
      const choices = spec.choices ?? [];
      if (typeof value === 'string' && choices.includes(value)) {
        return value;
      }
      throw bad(`unknown ${name} ${JSON.stringify(value)}; use one of ${choices.join(', ')}`);
    }
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw bad(`'${name}' must be a finite number`);
      }
      return value;
    case 'bool':
      if (typeof value !== 'boolean') {
        throw bad(`'${name}' must be true or false`);
      }
      return value;
    case 'object':
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw bad(`'${name}' must be an object`);
      }
      return value;
    default:
      return value;
  }
}

function safeRef(value: unknown): Ref | null {
  if (typeof value === 'number' && Number.isInteger(value)) {
    return value;
  }
  return typeof value === 'string' && !longerThan(value, MAX_REF_LENGTH) ? value : null;
}

// --- decoding ---------------------------------------------------------------------------

type Direction = 'request' | 'event';
const TABLES: Record<Direction, Readonly<Record<string, readonly FieldSpec[]>>> = {
  request: REQUEST_FIELDS,
  event: EVENT_FIELDS
};

/**
 * Validate a parsed JSON object as a message of `direction`: returns it normalised
 * (`type` first, optional fields left out when absent or null, `keepNull` ones null,
 * a JSON payload always present) or throws a `ProtocolError`.
 */
export function validateMessage(
  direction: Direction,
  obj: Record<string, unknown>,
  binary = false
): ControlMessage {
  const type = obj.type;
  const table =
    typeof type === 'string' && Object.prototype.hasOwnProperty.call(TABLES[direction], type)
      ? TABLES[direction][type]
      : null;
  const ref = safeRef(direction === 'request' ? obj.id : obj.ref);
  if (table === null) {
    const error = new ProtocolError(
      `unknown message type ${type === undefined ? 'None' : JSON.stringify(type)}`,
      'unknown-type'
    );
    error.ref = ref;
    throw error;
  }
  const out: ControlMessage = { type: type as string };
  try {
    for (const spec of table) {
      const value = obj[spec.wire];
      if (value === undefined || value === null) {
        if (spec.required) {
          throw bad(`${type as string} needs '${spec.wire}'`);
        }
        if (spec.keepNull || (spec.kind === 'json' && !binary)) {
          out[spec.wire] = null;
        }
        continue;
      }
      if (spec.kind === 'json' && binary) {
        continue;
      }
      out[spec.wire] = check(spec, value, type as string);
    }
    if (type === 'subscribe' && direction === 'request') {
      checkSubscribeOptions(out);
    }
    if (type === 'publish' && direction === 'request') {
      if ((out.producer === undefined) !== (out.seq === undefined)) {
        throw bad("'producer' and 'seq' go together (both for an acked publish)");
      }
      if (!binary && !('payload' in obj)) {
        throw bad("publish needs a 'payload' (or send it as a binary message)");
      }
    }
  } catch (error) {
    if (error instanceof ProtocolError) {
      error.ref = ref;
    }
    throw error;
  }
  if (binary) {
    out.binary = true;
  }
  return out;
}

function parseJson(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw notNbws(`text frame is not JSON: ${String(error)}`, 1007);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw notNbws('a control message must be a JSON object', 1008);
  }
  return value as Record<string, unknown>;
}

function bytesOf(data: ArrayBuffer | Uint8Array): Uint8Array {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/**
 * Split a binary message into its JSON header and a view of the payload (no copy).
 * Throws a `ProtocolError` (close 1008) when the header is missing, too long or not a
 * JSON object.
 */
export function splitBinary(data: ArrayBuffer | Uint8Array): {
  header: Record<string, unknown>;
  payload: Uint8Array;
} {
  const bytes = bytesOf(data);
  if (bytes.byteLength < 4) {
    throw notNbws('binary message shorter than its 4-byte header length', 1008);
  }
  const size = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, false);
  if (size > MAX_HEADER_BYTES || size > bytes.byteLength - 4) {
    throw notNbws(`binary header length ${size} is invalid`, 1008);
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(4, 4 + size))
    );
  } catch {
    throw notNbws('binary header is not JSON', 1008);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw notNbws('binary header must be a JSON object', 1008);
  }
  return { header: header as Record<string, unknown>, payload: bytes.subarray(4 + size) };
}

// --- batches ----------------------------------------------------------------------------

/**
 * A `batch` event (`payload`: what follows a binary batch's header, else null), its
 * elements checked and completed into whole `StreamMessage`s. Throws a `ProtocolError`
 * (`bad-request`) with the same messages as messages.py `_decode_batch`.
 */
function decodeBatch(obj: Record<string, unknown>, payload: Uint8Array | null): BatchMessage {
  const { stream, epoch, messages: items } = obj;
  if (!validStreamName(stream)) {
    throw bad(`batch needs a 'stream' of ${STREAM_RULE}`);
  }
  if (typeof epoch !== 'string') {
    throw bad("batch needs a string 'epoch'");
  }
  if (!Array.isArray(items) || items.length === 0) {
    throw bad("batch needs a non-empty list 'messages'");
  }
  const binary = payload !== null;
  const sizes = obj.sizes;
  if (binary) {
    if (!Array.isArray(sizes) || sizes.length !== items.length) {
      throw bad("binary batch needs 'sizes', one per message");
    }
    let total = 0;
    for (const size of sizes) {
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) {
        throw bad("binary batch 'sizes' do not add up to its payload");
      }
      total += size;
    }
    if (total !== payload.byteLength) {
      throw bad("binary batch 'sizes' do not add up to its payload");
    }
  }
  const out: StreamMessage[] = [];
  let last = -1;
  let at = 0;
  items.forEach((item: unknown, index: number) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw bad("batch 'messages' must be objects");
    }
    const element = item as Record<string, unknown>;
    const offset = element.offset;
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset <= last) {
      throw bad('batch offsets must be increasing integers');
    }
    if (typeof element.time !== 'number' || !Number.isFinite(element.time)) {
      throw bad("batch messages need a number 'time'");
    }
    last = offset;
    const message: Record<string, unknown> = { type: 'message', stream };
    for (const spec of BATCH_ITEM_FIELDS) {
      const value = element[spec.wire];
      if (spec.kind === 'json') {
        continue;
      }
      if (value !== undefined && value !== null) {
        message[spec.wire] = check(spec, value, 'batch');
      }
      if (spec.wire === 'offset') {
        message.epoch = epoch;
      }
    }
    if (binary) {
      const size = (sizes as number[])[index];
      message.binary = true;
      message.data = payload.subarray(at, at + size);
      at += size;
    } else if ('payload' in element) {
      message.payload = element.payload;
    } else {
      throw bad("batch messages need a 'payload' (or a binary batch)");
    }
    out.push(message as unknown as StreamMessage);
  });
  const batch: BatchMessage = { type: 'batch', stream, epoch, messages: out };
  if (binary) {
    batch.binary = true;
  }
  return batch;
}

/**
 * The batch of a `batch` event already split by `parseText`/`parseBinary` (a binary
 * batch's payload in `data`), checked as `decodeEvent` checks it.
 */
export function batchOf(message: ControlMessage): BatchMessage {
  const payload =
    message.binary === true && message.data instanceof Uint8Array ? message.data : null;
  return decodeBatch(message, payload);
}

function decode(direction: Direction, data: string | ArrayBuffer | Uint8Array): ControlMessage {
  if (typeof data === 'string') {
    const obj = parseJson(data);
    if (direction === 'event' && obj.type === 'batch') {
      return decodeBatch(obj, null) as unknown as ControlMessage;
    }
    return validateMessage(direction, obj);
  }
  const { header, payload } = splitBinary(data);
  if (direction === 'event' && header.type === 'batch') {
    return decodeBatch(header, payload) as unknown as ControlMessage;
  }
  const allowed = direction === 'request' ? 'publish' : 'message';
  if (header.type !== allowed) {
    const error = bad(`only ${allowed} may be sent as a binary message`);
    error.ref = safeRef(direction === 'request' ? header.id : header.ref);
    throw error;
  }
  const message = validateMessage(direction, header, true);
  message.data = payload;
  return message;
}

/**
 * Decode a server → client WebSocket message (a string from a text frame, an
 * ArrayBuffer from a binary one). Throws a `ProtocolError` for anything nbws.v1 does
 * not allow; fields are checked as the Python client checks them.
 */
export function decodeEvent(data: string | ArrayBuffer | Uint8Array): ServerEvent {
  return decode('event', data) as unknown as ServerEvent;
}

/** Decode a client → server message (what a server or a test sees); as `decodeEvent`. */
export function decodeRequest(data: string | ArrayBuffer | Uint8Array): ControlMessage {
  return decode('request', data);
}

// --- encoding ---------------------------------------------------------------------------

/**
 * The JSON text of a client → server request, with its fields checked: optional fields
 * that are null or undefined are left out. Throws a `ProtocolError` (`bad-request`) for
 * a missing or invalid field, or one the message does not have.
 */
export function encodeRequest(
  type: 'subscribe' | 'consumed' | 'unsubscribe' | 'info',
  fields: Readonly<Record<string, unknown>>
): string {
  const table = REQUEST_FIELDS[type];
  const known = new Set(table.map(spec => spec.wire));
  for (const name of Object.keys(fields)) {
    if (!known.has(name) && name !== 'type') {
      throw bad(`${type} has no field '${name}'`);
    }
  }
  const out: Record<string, unknown> = { type };
  for (const spec of table) {
    const value = fields[spec.wire];
    if (value === undefined || value === null) {
      if (spec.required) {
        throw bad(`${type} needs '${spec.wire}'`);
      }
      continue;
    }
    out[spec.wire] = check(spec, value, type);
  }
  if (type === 'subscribe') {
    checkSubscribeOptions(out);
  }
  return JSON.stringify(out);
}

/** The `subscribe` option pairs the field tables cannot express (as messages.py). */
function checkSubscribeOptions(out: Record<string, unknown>): void {
  if (out.linger_ms !== undefined && out.max_batch === undefined) {
    throw bad("'linger_ms' needs 'max_batch' (it only applies to batches)");
  }
  if (out.credit !== undefined && out.max_batch === undefined) {
    throw bad("'credit' needs 'max_batch' (credit applies to batched deliveries)");
  }
  if (out.credit_bytes !== undefined && out.credit === undefined) {
    throw bad("'credit_bytes' needs 'credit'");
  }
}

/** The text of a `subscribe` request (see `SubscribeRequest`). */
export function encodeSubscribe(request: SubscribeRequest): string {
  return encodeRequest('subscribe', request as unknown as Record<string, unknown>);
}

/** The text of a `consumed` report (a subscription with credit; no reply unless refused). */
export function encodeConsumed(request: ConsumedRequest): string {
  return encodeRequest('consumed', request as unknown as Record<string, unknown>);
}

/** The text of an `unsubscribe` request. */
export function encodeUnsubscribe(request: UnsubscribeRequest): string {
  return encodeRequest('unsubscribe', request as unknown as Record<string, unknown>);
}

// --- lenient parsing (kept for callers that only need `type`) ---------------------------

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

/** Split a binary message into its JSON header (with `data`: the payload); null if malformed. */
export function parseBinary(buffer: ArrayBuffer): ControlMessage | null {
  let parts: { header: Record<string, unknown>; payload: Uint8Array };
  try {
    parts = splitBinary(buffer);
  } catch {
    return null;
  }
  const type = parts.header.type;
  if (typeof type !== 'string') {
    return null;
  }
  const header = parts.header as ControlMessage;
  header.data = parts.payload;
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
