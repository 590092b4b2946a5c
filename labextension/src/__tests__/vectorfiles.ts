/**
 * Reading the shared nbws.v1 vectors (tests/vectors/*.json, also run by pytest against
 * nbws/protocol/messages.py): one loader and one wire conversion for every spec.
 */
import * as fs from 'fs';
import * as path from 'path';

export const VECTORS = path.join(__dirname, '..', '..', '..', 'tests', 'vectors');

/** One vector file's parsed content. */
export function readVectors<T>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf-8')) as T;
}

export function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** A case's WebSocket message as the browser gets it: a string or an ArrayBuffer. */
export function wireOf(c: {
  hex?: string;
  text?: string;
  json?: Record<string, unknown>;
}): string | ArrayBuffer {
  if (c.hex !== undefined) {
    const bytes = fromHex(c.hex);
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  }
  return c.text ?? JSON.stringify(c.json);
}
