/**
 * The batch tail decoder against the whole-batch decoder: on the shared vectors in
 * tests/vectors/batch.json (as the server writes them: compact JSON) and on generated
 * batches, it either answers exactly what `decodeEvent` gives for the newest messages or
 * says null (decode it whole); it never answers something else.
 */
import { decodeBatchTail } from '../batchtail';
import { BatchMessage, decodeEvent, ProtocolError } from '../protocol';
import { readVectors } from './vectorfiles';

interface Case {
  name: string;
  json?: Record<string, unknown>;
  direction?: string;
  expect?: { error?: string };
}

const FILE = readVectors<{ cases: Case[]; invalid: Case[] }>('batch.json');

/** The server's layout (orjson: no spaces, keys in order). */
const wire = (batch: Record<string, unknown>): string => JSON.stringify(batch);

function batchText(offsets: number[], payload: (i: number) => unknown): string {
  return wire({
    type: 'batch',
    stream: 'prices',
    epoch: '9b1c',
    messages: offsets.map((offset, i) => ({ offset, time: 1000 + i, payload: payload(i) }))
  });
}

/** decodeBatchTail is null or exactly the newest `keep` of the whole decode. */
function agrees(text: string, keep: number): 'tail' | 'null' {
  const whole = decodeEvent(text) as BatchMessage;
  const tail = decodeBatchTail(text, keep);
  if (tail === null) {
    return 'null';
  }
  expect(tail.batch).toEqual({ ...whole, messages: whole.messages.slice(-keep) });
  expect(tail.skipped).toBe(whole.messages.length - keep);
  return 'tail';
}

describe('decodeBatchTail on the shared vectors', () => {
  const json = FILE.cases.filter(c => c.json !== undefined);

  it.each(json.map(c => [c.name, c] as const))('%s: null or the newest messages', (_n, c) => {
    const text = wire(c.json as Record<string, unknown>);
    const n = (c.json?.messages as unknown[]).length;
    for (let keep = 1; keep <= n + 1; keep++) {
      agrees(text, keep);
    }
    // Keeping all of it (or more) skips nothing: decode it whole.
    expect(decodeBatchTail(text, n)).toBeNull();
  });

  it('slices the documented batch', () => {
    const c = json.find(x => x.name === 'batch-documented') as Case;
    expect(agrees(wire(c.json as Record<string, unknown>), 1)).toBe('tail');
  });

  it('declines a batch whose offsets skip (after conflation)', () => {
    const c = json.find(x => x.name === 'batch-offsets-after-conflation') as Case;
    expect(decodeBatchTail(wire(c.json as Record<string, unknown>), 1)).toBeNull();
  });

  it.each(
    FILE.invalid
      .filter(c => c.direction === 'event' && c.json !== undefined)
      .map(c => [c.name, c] as const)
  )('%s: refused as decodeEvent refuses it, or left to it', (_n, c) => {
    const text = wire(c.json as Record<string, unknown>);
    let thrown: unknown = null;
    let result: unknown = undefined;
    try {
      result = decodeBatchTail(text, 1);
    } catch (error) {
      thrown = error;
    }
    if (thrown !== null) {
      expect(thrown).toBeInstanceOf(ProtocolError);
      expect((thrown as ProtocolError).code).toBe(c.expect?.error);
    } else {
      expect(result).toBeNull();
    }
  });
});

describe('decodeBatchTail on generated batches', () => {
  const offsets = (first: number, n: number): number[] =>
    Array.from({ length: n }, (_, i) => first + i);

  it('keeps the newest messages and counts the others', () => {
    const text = batchText(offsets(500, 1000), i => ({ v: i, note: `m-${i}` }));
    for (const keep of [1, 2, 100, 999]) {
      expect(agrees(text, keep)).toBe('tail');
    }
    const tail = decodeBatchTail(text, 3) as { batch: BatchMessage; skipped: number };
    expect(tail.batch.messages.map(m => m.offset)).toEqual([1497, 1498, 1499]);
    expect(tail.batch.messages[0]).toMatchObject({ stream: 'prices', epoch: '9b1c' });
    expect(tail.skipped).toBe(997);
  });

  it('is never fooled by payloads that contain {"offset": themselves', () => {
    const nasty = [
      (i: number) => ({ offset: i }),
      (i: number) => [{ offset: i }, { offset: i + 1 }],
      (i: number) => ({ a: [1, { offset: 2 }], s: '],{"offset":1,"x":[' }),
      (i: number) => (i % 3 === 0 ? [{ offset: 7, time: 1, payload: 0 }] : i),
      () => ',{"offset":'
    ];
    for (const payload of nasty) {
      const text = batchText(offsets(10, 30), payload);
      for (let keep = 1; keep < 31; keep++) {
        agrees(text, keep);
      }
    }
  });

  it('declines what is not the server layout', () => {
    const text = batchText(offsets(0, 5), i => i);
    expect(decodeBatchTail(text.replace('{"type":"batch",', '{ "type":"batch",'), 1)).toBeNull();
    expect(decodeBatchTail(text + ' ', 1)).toBeNull();
    expect(decodeBatchTail(text, 0)).toBeNull();
    expect(decodeBatchTail('{"type":"message"}', 1)).toBeNull();
    const extra = text.replace('"epoch":"9b1c",', '"epoch":"9b1c","binary":false,');
    expect(decodeBatchTail(extra, 1)).toBeNull();
  });

  it('checks the tail as decodeEvent does', () => {
    const text = batchText(offsets(0, 5), i => i).replace('"time":1004', '"time":"late"');
    expect(() => decodeEvent(text)).toThrow(ProtocolError);
    expect(() => decodeBatchTail(text, 1)).toThrow("batch messages need a number 'time'");
  });

  it('measures a 10,000-message batch (printed, not asserted)', () => {
    const text = batchText(offsets(0, 10_000), i => ({ symbol: 'AAPL', price: 100 + i / 7, i }));
    const runs = 20;
    let t0 = performance.now();
    for (let r = 0; r < runs; r++) {
      decodeEvent(text);
    }
    const whole = (performance.now() - t0) / runs;
    t0 = performance.now();
    for (let r = 0; r < runs; r++) {
      decodeBatchTail(text, 100);
    }
    const tail = (performance.now() - t0) / runs;
    console.log(
      `10,000-message batch (${(text.length / 1024).toFixed(0)} KiB): decodeEvent ${whole.toFixed(
        2
      )} ms, newest 100 only ${tail.toFixed(2)} ms (under jest)`
    );
  });
});
