import {
  decodeEvent,
  encodeSubscribe,
  encodeUnsubscribe,
  fieldOf,
  formatNumber,
  formatRate,
  formatValue,
  MAX_HEADER_BYTES,
  numericValue,
  parseBinary,
  parseText,
  ProtocolError,
  StreamMessage
} from '../protocol';
import { closeCodeName, payloadText } from '../framefmt';
import { browserCloseCodeProblem, fragmentSize } from '../rules';
import { MODULE_VERSION } from '../version';

function binaryMessage(header: object, payload: Uint8Array): ArrayBuffer {
  const head = new TextEncoder().encode(JSON.stringify(header));
  const buffer = new ArrayBuffer(4 + head.byteLength + payload.byteLength);
  new DataView(buffer).setUint32(0, head.byteLength, false);
  new Uint8Array(buffer, 4).set(head);
  new Uint8Array(buffer, 4 + head.byteLength).set(payload);
  return buffer;
}

const message = (payload: unknown, extra: Partial<StreamMessage> = {}): StreamMessage => ({
  type: 'message',
  stream: 's',
  offset: 7,
  epoch: 'e',
  time: 1764050400.125,
  payload,
  ...extra
});

describe('parsing', () => {
  it('parses a control message and rejects what is not a typed JSON object', () => {
    expect(parseText('{"type":"welcome","protocol":"nbws.v1"}')).toEqual({
      type: 'welcome',
      protocol: 'nbws.v1'
    });
    expect(parseText('not json')).toBeNull();
    expect(parseText('[1,2]')).toBeNull();
    expect(parseText('{"no":"type"}')).toBeNull();
  });

  it('splits a binary message into header and payload', () => {
    const payload = new Uint8Array([0, 1, 2, 255]);
    const parsed = parseBinary(
      binaryMessage({ type: 'message', offset: 3, binary: true }, payload)
    );
    expect(parsed?.type).toBe('message');
    expect(parsed?.offset).toBe(3);
    expect(Array.from(parsed?.data as Uint8Array)).toEqual([0, 1, 2, 255]);
  });

  it('rejects a binary message whose header length is wrong', () => {
    const buffer = binaryMessage({ type: 'message' }, new Uint8Array());
    new DataView(buffer).setUint32(0, 1000, false);
    expect(parseBinary(buffer)).toBeNull();
    expect(parseBinary(new ArrayBuffer(2))).toBeNull();
  });
});

describe('encoding requests', () => {
  it('leaves out optional fields that are null or undefined', () => {
    expect(
      JSON.parse(encodeSubscribe({ stream: 'prices', id: 1, since: null, epoch: undefined }))
    ).toEqual({
      type: 'subscribe',
      stream: 'prices',
      id: 1
    });
    expect(JSON.parse(encodeUnsubscribe({ stream: 'prices', id: 'u' }))).toEqual({
      type: 'unsubscribe',
      stream: 'prices',
      id: 'u'
    });
  });

  it('refuses what the server would refuse, before sending it', () => {
    const refused = (f: () => unknown): ProtocolError => {
      try {
        f();
      } catch (error) {
        return error as ProtocolError;
      }
      throw new Error('not refused');
    };
    expect(refused(() => encodeSubscribe({ stream: 'a b' })).code).toBe('bad-request');
    expect(refused(() => encodeSubscribe({ stream: 's', since: 1.5 })).message).toBe(
      "'since' must be an integer"
    );
    expect(refused(() => encodeSubscribe({ stream: 's', max_messages: 0 })).message).toBe(
      "'max_messages' must be at least 1"
    );
    expect(
      refused(() => encodeSubscribe({ stream: 's', policy: 'nope' as never })).message
    ).toMatch(/use one of drop-oldest, /);
    expect(refused(() => encodeSubscribe({ stream: 's', maxMessages: 5 } as never)).message).toBe(
      "subscribe has no field 'maxMessages'"
    );
    expect(refused(() => encodeUnsubscribe({} as never)).message).toBe(
      "unsubscribe needs 'stream'"
    );
  });

  it('measures string limits in code points, as the server does', () => {
    expect(() => encodeSubscribe({ stream: 's', epoch: '\u{1F600}'.repeat(64) })).not.toThrow();
    expect(() => encodeSubscribe({ stream: 's', epoch: '\u{1F600}'.repeat(65) })).toThrow(
      ProtocolError
    );
  });
});

describe('decoding events', () => {
  it('returns typed messages with null for the fields nbws sends as null', () => {
    const gap = decodeEvent('{"type":"gap","stream":"s","from":3,"reason":"epoch"}');
    expect(gap).toEqual({
      type: 'gap',
      stream: 's',
      from: 3,
      reason: 'epoch',
      to: null,
      count: null,
      epoch: null
    });
    const message = decodeEvent('{"type":"message","stream":"s","offset":1,"epoch":"e","time":2}');
    expect(message).toEqual({
      type: 'message',
      stream: 's',
      offset: 1,
      epoch: 'e',
      time: 2,
      payload: null
    });
  });

  it('decodes a binary message with its payload as a view', () => {
    const payload = new Uint8Array([9, 8, 7]);
    const decoded = decodeEvent(
      binaryMessage(
        { type: 'message', stream: 's', offset: 0, epoch: 'e', time: 1, binary: true },
        payload
      )
    );
    expect(decoded.type).toBe('message');
    const message = decoded as StreamMessage;
    expect(message.binary).toBe(true);
    expect(message.payload).toBeUndefined();
    expect(Array.from(message.data as Uint8Array)).toEqual([9, 8, 7]);
  });

  it('refuses a binary header over the limit, as the lenient parser does', () => {
    const header = { type: 'message', key: 'k'.repeat(MAX_HEADER_BYTES) };
    const buffer = binaryMessage(header, new Uint8Array([1]));
    expect(() => decodeEvent(buffer)).toThrow(/binary header length/);
    expect(parseBinary(buffer)).toBeNull();
  });

  it('says which field is wrong', () => {
    expect(() => decodeEvent('{"type":"end","stream":"s","next":-1}')).toThrow(
      "'next' must be at least 0"
    );
    expect(() => decodeEvent('{"type":"status","state":"fine"}')).toThrow(
      'unknown state "fine"; use one of ok, degraded'
    );
  });
});

describe('fields and formatting', () => {
  it('reads payload fields first, then the message header', () => {
    const m = message({ price: 1.5, offset: 'mine' }, { key: 'AAPL' });
    expect(fieldOf(m, 'price')).toBe(1.5);
    expect(fieldOf(m, 'offset')).toBe('mine');
    expect(fieldOf(m, 'time')).toBe(1764050400.125);
    expect(fieldOf(m, 'key')).toBe('AAPL');
    expect(fieldOf(m, 'missing')).toBeUndefined();
    expect(fieldOf(message([1, 2]), 'payload')).toEqual([1, 2]);
  });

  it('formats values as plain text, markup included literally', () => {
    expect(formatValue('<img src=x onerror=alert(1)>')).toBe('<img src=x onerror=alert(1)>');
    expect(formatValue({ a: 1 })).toBe('{"a":1}');
    expect(formatValue(null)).toBe('null');
    expect(formatValue(undefined)).toBe('');
    expect(formatValue(new Uint8Array(5))).toBe('<5 bytes>');
    expect(formatValue('x'.repeat(300), 10)).toBe('xxxxxxxxx…');
  });

  it('formats numbers without losing integer digits', () => {
    expect(formatNumber(120000)).toBe('120000');
    expect(formatNumber(189.5)).toBe('189.5');
    expect(formatNumber(1200.0004)).toBe('1200');
    expect(formatNumber(0.000123456789)).toBe('0.000123457');
    expect(formatNumber(123456.7)).toBe('123457');
  });

  it('formats rates readably', () => {
    expect(formatRate(5.53914)).toBe('5.5');
    expect(formatRate(12345.6)).toBe('12,346');
    expect(formatRate(0)).toBe('0');
    expect(formatRate(NaN)).toBe('0');
  });

  it('reads numbers from numbers, numeric strings, booleans and ISO dates', () => {
    expect(numericValue(3)).toBe(3);
    expect(numericValue('2.5')).toBe(2.5);
    expect(numericValue(true)).toBe(1);
    expect(numericValue('1970-01-01T00:00:10Z')).toBe(10);
    expect(numericValue('abc')).toBeNaN();
    expect(numericValue(null)).toBeNaN();
  });
});

describe('browser rules', () => {
  it('allows only the close codes a browser may send', () => {
    expect(browserCloseCodeProblem(1000)).toBeNull();
    expect(browserCloseCodeProblem(3000)).toBeNull();
    expect(browserCloseCodeProblem(4999)).toBeNull();
    expect(browserCloseCodeProblem(1001)).toMatch(/1000 or 3000-4999/);
    expect(browserCloseCodeProblem(1005)).toMatch(/nbws.explore/);
    expect(browserCloseCodeProblem(5000)).not.toBeNull();
    expect(browserCloseCodeProblem(1000.5)).toMatch(/integer/);
  });

  it('sizes echo fragments so a message splits into N pieces', () => {
    expect(fragmentSize(12, 3)).toBe(4);
    expect(fragmentSize(10, 3)).toBe(4);
    expect(Math.ceil(10 / fragmentSize(10, 3))).toBe(3);
    expect(fragmentSize(5, 10)).toBe(1);
    expect(fragmentSize(0, 3)).toBe(1);
    expect(fragmentSize(9, 0)).toBe(9);
  });
});

describe('version', () => {
  it('registers the version package.json declares', () => {
    const pkg = require('../../package.json') as { version: string };
    expect(MODULE_VERSION).toBe(pkg.version);
  });
});

describe('frame previews', () => {
  it('shows text as text and binary as hex', () => {
    expect(payloadText({ opcode: 1, preview: '<b>hi</b>', preview_kind: 'text' })).toBe(
      '<b>hi</b>'
    );
    expect(payloadText({ opcode: 2, preview: '00 ff', preview_kind: 'hex' })).toBe('hex 00 ff');
  });

  it('reads a close frame as code, meaning and reason', () => {
    expect(payloadText({ opcode: 8, preview: '03 e8 62 79 65', preview_kind: 'hex' })).toBe(
      '1000 normal closure "bye"'
    );
    expect(payloadText({ opcode: 8, preview: '0f a1', preview_kind: 'hex' })).toBe(
      '4001 application'
    );
    expect(payloadText({ opcode: 8, preview: '', preview_kind: 'text' })).toBe('(no status code)');
    expect(payloadText({ opcode: 8, preview: '03', preview_kind: 'hex' })).toMatch(/malformed/);
    // Both code bytes below 0x80 decode as text on the server: still a code.
    expect(payloadText({ opcode: 8, preview: '\u0003\u0003', preview_kind: 'text' })).toBe(
      '771 not a valid close code'
    );
  });

  it('names close codes by range', () => {
    expect(closeCodeName(1011)).toBe('internal error');
    expect(closeCodeName(3500)).toBe('registered');
    expect(closeCodeName(4999)).toBe('application');
    expect(closeCodeName(2000)).toBe('not a valid close code');
  });
});
