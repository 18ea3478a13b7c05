/**
 * Client authentication as a strategy (the shape oauth4webapi uses): each adds the client's credentials to the
 * request headers or form body.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 */
export type ClientAuthMethod = 'basic' | 'body' | 'none';

export interface ClientCredentials {
  readonly clientId: string;
  readonly clientSecret?: string | undefined;
}

/**
 * RFC 6749 §2.3.1 / Appendix B: client ID and secret are each `application/x-www-form-urlencoded` before they
 * are joined with ":" and base64-encoded. URLSearchParams encodes space as "+", which is that format exactly.
 */
export function formUrlEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

export function basicAuthorization(credentials: ClientCredentials): string {
  const pair = `${formUrlEncode(credentials.clientId)}:${formUrlEncode(credentials.clientSecret ?? '')}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

export function applyClientAuth(
  method: ClientAuthMethod,
  credentials: ClientCredentials,
  headers: Record<string, string>,
  form: URLSearchParams,
): void {
  switch (method) {
    case 'basic':
      headers.authorization = basicAuthorization(credentials);
      return;
    case 'body':
      form.set('client_id', credentials.clientId);
      if (credentials.clientSecret !== undefined) form.set('client_secret', credentials.clientSecret);
      return;
    case 'none':
      // A public client identifies itself but has nothing to prove (RFC 6749 §3.2.1).
      form.set('client_id', credentials.clientId);
      return;
  }
}
