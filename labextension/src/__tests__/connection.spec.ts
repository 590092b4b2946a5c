import type { ServerConnection } from '@jupyterlab/services';

import { redactSecrets, wsUrl } from '../connection';

describe('redactSecrets', () => {
  it('hides secret query values and keeps the rest', () => {
    expect(redactSecrets('nbws/echo?tap=L&token=abc123&fragment=4')).toBe(
      'nbws/echo?tap=L&token=…&fragment=4'
    );
    expect(redactSecrets("The URL 'ws://h/nbws/ws?access_token=xyz' is invalid.")).toBe(
      "The URL 'ws://h/nbws/ws?access_token=…' is invalid."
    );
    expect(redactSecrets('password=hunter2 api_key=k1')).toBe('password=… api_key=…');
    expect(redactSecrets('nbws/echo?fragment=4')).toBe('nbws/echo?fragment=4');
  });

  it("hides the page's own token wherever it appears", () => {
    const settings = { token: 's3cr3t-token-value' } as unknown as ServerConnection.ISettings;
    expect(redactSecrets('failed: s3cr3t-token-value was refused', settings)).toBe(
      'failed: … was refused'
    );
  });
});

describe('wsUrl', () => {
  const base = {
    baseUrl: 'http://lab.example/user/a/',
    wsUrl: 'ws://lab.example/user/a/',
    token: 'secret-token'
  } as const;

  it('leaves the token out when the cookie authenticates (same host)', () => {
    const settings = { ...base, appendToken: false } as unknown as Parameters<typeof wsUrl>[2];
    expect(wsUrl('nbws/ws', { a: '1' }, settings)).toBe('ws://lab.example/user/a/nbws/ws?a=1');
  });

  it('appends the token when JupyterLab would (another host)', () => {
    const settings = { ...base, appendToken: true } as unknown as Parameters<typeof wsUrl>[2];
    expect(wsUrl('nbws/ws', {}, settings)).toBe(
      'ws://lab.example/user/a/nbws/ws?token=secret-token'
    );
  });
});
