/**
 * Client authentication as a strategy (the shape oauth4webapi uses): each adds the client's credentials to the
 * request headers or form body.
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 */
export type ClientAuthMethod = 'basic' | 'body' | 'none' | 'private_key_jwt';

export interface ClientCredentials {
  readonly clientId: string;
  readonly clientSecret?: string | undefined;
  /** The signed client assertion, for `private_key_jwt` (signed per request: each carries its own `jti`). */
  readonly clientAssertion?: string | undefined;
}

/** @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2 */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

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
    case 'private_key_jwt':
      // The assertion proves the client; client_id is optional beside it (RFC 7521 §4.2) and helps servers that
      // look the client up before they read the assertion. No secret goes anywhere.
      if (credentials.clientAssertion === undefined) throw new Error('private_key_jwt without a signed assertion');
      form.set('client_id', credentials.clientId);
      form.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
      form.set('client_assertion', credentials.clientAssertion);
      return;
  }
}
