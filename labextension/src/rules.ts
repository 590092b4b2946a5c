/**
 * What a browser's WebSocket API can and cannot do, as pure functions the
 * FrameInspector uses to explain itself.
 */

/** RFC 6455 + the browser: `WebSocket.close()` accepts only 1000 and 3000-4999. */
export function browserCloseCodeProblem(code: number): string | null {
  if (!Number.isInteger(code)) {
    return 'the close code must be an integer';
  }
  if (code === 1000 || (code >= 3000 && code <= 4999)) {
    return null;
  }
  return `browsers may only send close code 1000 or 3000-4999 (WebSocket.close() throws for ${code}); send other codes from the kernel with nbws.explore`;
}

/** The byte size of each fragment so that `bytes` splits into `fragments` pieces. */
export function fragmentSize(bytes: number, fragments: number): number {
  const n = Math.max(1, Math.floor(fragments));
  return Math.max(1, Math.ceil(bytes / n));
}
