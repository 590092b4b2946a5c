/**
 * Credit on the browser side: the `subscribe` options and the `consumed` builder check
 * their fields as nbws/protocol/messages.py does (the shared vectors cover decoding).
 */
import {
  decodeRequest,
  encodeConsumed,
  encodeSubscribe,
  MAX_CREDIT,
  ProtocolError
} from '../protocol';

function refusal(build: () => string): ProtocolError {
  try {
    build();
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    return error as ProtocolError;
  }
  throw new Error('not refused');
}

describe('credit', () => {
  it('encodes a consumed report that the request decoder reads back', () => {
    const text = encodeConsumed({ stream: 'prices', offset: 129 });
    expect(JSON.parse(text)).toEqual({ type: 'consumed', stream: 'prices', offset: 129 });
    expect(decodeRequest(text)).toEqual({ type: 'consumed', stream: 'prices', offset: 129 });
  });

  it('refuses a consumed report without a valid offset', () => {
    expect(refusal(() => encodeConsumed({ stream: 'prices', offset: -1 })).message).toContain(
      "'offset' must be at least 0"
    );
    const missing = { stream: 'prices' } as unknown as { stream: string; offset: number };
    expect(refusal(() => encodeConsumed(missing)).message).toContain("consumed needs 'offset'");
  });

  it('asks for credit with batches only, and within bounds', () => {
    const text = encodeSubscribe({ stream: 'prices', max_batch: 500, credit: 2000 });
    expect(JSON.parse(text)).toEqual({
      type: 'subscribe',
      stream: 'prices',
      max_batch: 500,
      credit: 2000
    });
    expect(refusal(() => encodeSubscribe({ stream: 'prices', credit: 10 })).message).toContain(
      "'credit' needs 'max_batch'"
    );
    expect(
      refusal(() => encodeSubscribe({ stream: 'p', max_batch: 5, credit: MAX_CREDIT + 1 })).code
    ).toBe('bad-request');
    expect(
      refusal(() => encodeSubscribe({ stream: 'p', max_batch: 5, credit_bytes: 1024 })).message
    ).toContain("'credit_bytes' needs 'credit'");
  });
});
