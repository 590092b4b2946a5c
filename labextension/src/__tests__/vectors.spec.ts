/**
 * The shared nbws.v1 vectors (tests/vectors/*.json, also run by pytest against
 * nbws/protocol/messages.py) against this side's decoder, encoder and resume arithmetic.
 */
import {
  ControlMessage,
  decodeEvent,
  decodeRequest,
  encodeRequest,
  ProtocolError
} from '../protocol';
import { resumeSince } from '../resume';
import { fromHex, readVectors, wireOf } from './vectorfiles';

interface Case {
  name: string;
  json?: Record<string, unknown>;
  text?: string;
  hex?: string;
  fields?: Record<string, unknown>;
  payload_hex?: string;
  direction?: 'request' | 'event';
  expect?: { error?: string; close?: number };
  ts_expect?: { error?: string; close?: number };
  mentions?: string[];
  ref?: string | number | null;
}

function cases(name: string): Case[] {
  return readVectors<{ cases: Case[] }>(name).cases;
}

const wire = (c: Case): string | ArrayBuffer => wireOf(c);

function typeOf(c: Case): string {
  if (c.json !== undefined) {
    return String(c.json.type);
  }
  const data = wire(c);
  return typeof data === 'string' ? String(JSON.parse(data).type) : '';
}

function checkDecoded(decoded: ControlMessage, c: Case): void {
  const { data, ...rest } = decoded;
  expect(rest).toEqual({ type: decoded.type, ...c.fields });
  if (c.payload_hex !== undefined) {
    expect(data).toBeInstanceOf(Uint8Array);
    expect(Array.from(data as Uint8Array)).toEqual(Array.from(fromHex(c.payload_hex)));
  } else {
    expect(data).toBeUndefined();
  }
}

const REQUESTS = cases('requests.json');
const EVENTS = cases('events.json');
const INVALID = cases('invalid.json');
const RESUME = cases('resume.json') as unknown as {
  name: string;
  last_offset: number | null;
  requested: number | null;
  bounds: [number, number] | null;
  expected: number | null;
}[];

describe('vectors: requests', () => {
  it.each(REQUESTS.map(c => [c.name, c] as const))('%s decodes', (_name, c) => {
    checkDecoded(decodeRequest(wire(c)), c);
  });

  const encodable = REQUESTS.filter(c => ['subscribe', 'unsubscribe', 'info'].includes(typeOf(c)));
  it.each(encodable.map(c => [c.name, c] as const))('%s encodes to its fields', (_name, c) => {
    const type = typeOf(c) as 'subscribe' | 'unsubscribe' | 'info';
    expect(JSON.parse(encodeRequest(type, c.fields ?? {}))).toEqual({ type, ...c.fields });
  });
});

describe('vectors: events', () => {
  it.each(EVENTS.map(c => [c.name, c] as const))('%s decodes', (_name, c) => {
    checkDecoded(decodeEvent(wire(c)) as unknown as ControlMessage, c);
  });

  it('decodes a binary message given as a Uint8Array view too', () => {
    const c = EVENTS.find(e => e.hex !== undefined) as Case;
    const bytes = fromHex(c.hex as string);
    const padded = new Uint8Array(bytes.byteLength + 3);
    padded.set(bytes, 3);
    checkDecoded(decodeEvent(padded.subarray(3)) as unknown as ControlMessage, c);
  });
});

describe('vectors: invalid', () => {
  it.each(INVALID.map(c => [c.name, c] as const))('%s is refused', (_name, c) => {
    const decode = c.direction === 'request' ? decodeRequest : decodeEvent;
    let thrown: unknown = null;
    try {
      decode(wire(c));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    const error = thrown as ProtocolError;
    const expected = c.ts_expect ?? c.expect ?? {};
    if (expected.close !== undefined) {
      expect(error.close).toBe(expected.close);
      expect(error.code).toBeNull();
    } else {
      expect(error.code).toBe(expected.error);
      expect(error.close).toBeNull();
      if (c.ref !== undefined) {
        expect(error.ref).toEqual(c.ref);
      }
      for (const text of c.mentions ?? []) {
        expect(error.message).toContain(text);
      }
    }
    expect(error.message).not.toContain('\n');
  });
});

describe('vectors: resume', () => {
  it.each(RESUME.map(c => [c.name, c] as const))('%s', (_name, c) => {
    const bounds = c.bounds === null ? null : { first: c.bounds[0], next: c.bounds[1] };
    expect(resumeSince(c.last_offset, c.requested, bounds)).toBe(c.expected);
  });
});
