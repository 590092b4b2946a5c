/**
 * How a frame's payload preview reads in the FrameInspector: text as text, binary as
 * hex, and a close frame as its status code, meaning and reason (RFC 6455 section 7.4).
 */

/** Short meanings of the close codes a user is likely to see. */
export const CLOSE_CODE_NAMES: Record<number, string> = {
  1000: 'normal closure',
  1001: 'going away',
  1002: 'protocol error',
  1003: 'unsupported data',
  1005: 'no status received',
  1006: 'abnormal closure',
  1007: 'invalid payload data',
  1008: 'policy violation',
  1009: 'message too big',
  1010: 'mandatory extension',
  1011: 'internal error',
  1012: 'service restart',
  1013: 'try again later',
  1014: 'bad gateway',
  1015: 'TLS handshake'
};

export function closeCodeName(code: number): string {
  if (CLOSE_CODE_NAMES[code] !== undefined) {
    return CLOSE_CODE_NAMES[code];
  }
  if (code >= 3000 && code <= 3999) {
    return 'registered';
  }
  if (code >= 4000 && code <= 4999) {
    return 'application';
  }
  return 'not a valid close code';
}

/** The preview's bytes (`preview_kind` is "text" or "hex", as tap.py sends it). */
export function previewBytes(preview: string, kind: string): Uint8Array {
  if (kind === 'hex') {
    const pairs = preview.split(/\s+/).filter(part => /^[0-9a-fA-F]{2}$/.test(part));
    return Uint8Array.from(pairs.map(part => parseInt(part, 16)));
  }
  return new TextEncoder().encode(preview);
}

/** A frame's payload preview for display (callers set it as textContent). */
export function payloadText(record: {
  opcode: number;
  preview: string;
  preview_kind: string;
}): string {
  if (record.opcode === 0x8) {
    const bytes = previewBytes(record.preview, record.preview_kind);
    if (bytes.length === 0) {
      return '(no status code)';
    }
    if (bytes.length === 1) {
      return `malformed close body: ${record.preview}`;
    }
    const code = (bytes[0] << 8) | bytes[1];
    const reason = new TextDecoder('utf-8').decode(bytes.subarray(2));
    return `${code} ${closeCodeName(code)}${reason ? ` "${reason}"` : ''}`;
  }
  return record.preview_kind === 'hex' ? `hex ${record.preview}` : record.preview;
}
