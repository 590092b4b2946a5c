/**
 * Batched deliveries: the shared vectors in tests/vectors/batch.json (also run by pytest
 * against nbws/protocol/messages.py) against `decodeEvent`, and the subscribe options.
 */
import {
  BatchMessage,
  decodeEvent,
  decodeRequest,
  encodeSubscribe,
  ProtocolError,
  StreamMessage
} from '../protocol';
import { fromHex, readVectors, wireOf } from './vectorfiles';

interface Case {
  name: string;
  json?: Record<string, unknown>;
  hex?: string;
  fields?: Record<string, unknown>;
  payloads_hex?: string[];
  direction?: 'request' | 'event';
  expect?: { error?: string };
  mentions?: string[];
  ref?: string | number;
}

const FILE = readVectors<{ cases: Case[]; invalid: Case[] }>('batch.json');

const wire = (c: Case): string | ArrayBuffer => wireOf(c);

/** A decoded batch as the vectors write it: elements without type, stream and epoch. */
function asFields(batch: BatchMessage): Record<string, unknown> {
  const out: Record<string, unknown> = {
    stream: batch.stream,
    epoch: batch.epoch,
    messages: batch.messages.map(message => {
      const { type: _t, stream: _s, epoch: _e, binary: _b, data: _d, ...rest } = message;
      return rest;
    })
  };
  if (batch.binary) {
    out.binary = true;
  }
  return out;
}

describe('vectors: batch events', () => {
  it.each(FILE.cases.map(c => [c.name, c] as const))('%s decodes', (_name, c) => {
    const event = decodeEvent(wire(c));
    expect(event.type).toBe('batch');
    const batch = event as BatchMessage;
    expect(asFields(batch)).toEqual(c.fields);
    for (const message of batch.messages) {
      expect(message.type).toBe('message');
      expect([message.stream, message.epoch]).toEqual([batch.stream, batch.epoch]);
    }
    if (c.payloads_hex !== undefined) {
      expect(batch.messages.map(m => Array.from(m.data as Uint8Array))).toEqual(
        c.payloads_hex.map(hex => Array.from(fromHex(hex)))
      );
      expect(batch.messages.every(m => m.binary === true && !('payload' in m))).toBe(true);
    } else {
      expect(batch.messages.every(m => m.data === undefined && 'payload' in m)).toBe(true);
    }
  });

  it('gives each element what a one-message event would have', () => {
    const c = FILE.cases.find(x => x.name === 'batch-documented') as Case;
    const [first] = (decodeEvent(wire(c)) as BatchMessage).messages;
    const single = decodeEvent(
      JSON.stringify({
        ...(c.json?.messages as object[])[0],
        type: 'message',
        stream: 'prices',
        epoch: c.json?.epoch
      })
    ) as StreamMessage;
    expect(first).toEqual(single);
  });
});

describe('vectors: refused batches and batch options', () => {
  it.each(FILE.invalid.map(c => [c.name, c] as const))('%s is refused', (_name, c) => {
    const decode = c.direction === 'request' ? decodeRequest : decodeEvent;
    let thrown: unknown = null;
    try {
      decode(wire(c));
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    const error = thrown as ProtocolError;
    expect(error.code).toBe(c.expect?.error);
    for (const text of c.mentions ?? []) {
      expect(error.message).toContain(text);
    }
    if (c.ref !== undefined) {
      expect(error.ref).toEqual(c.ref);
    }
    expect(error.message).not.toContain('\n');
  });

  it('encodes the batch options of a subscribe', () => {
    expect(JSON.parse(encodeSubscribe({ stream: 's', max_batch: 500, linger_ms: 0 }))).toEqual({
      type: 'subscribe',
      stream: 's',
      max_batch: 500,
      linger_ms: 0
    });
    expect(() => encodeSubscribe({ stream: 's', max_batch: 10_001 })).toThrow('at most 10000');
    expect(() => encodeSubscribe({ stream: 's', linger_ms: 5 })).toThrow("needs 'max_batch'");
  });
});
