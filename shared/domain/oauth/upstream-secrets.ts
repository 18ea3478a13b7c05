import { VendorError } from '../../core/errors.ts';
import type { ConnectorDocument } from '../connector.ts';
import type { TokenSet } from './token-response.ts';

/** A run this long shared with a secret is taken as the secret echoed (a server may cut or wrap it). */
const ECHO_RUN = 8;

/**
 * Every value of a connector that must never travel on: the client secret, the password, the refresh token presented,
 * the private key, and the header and form values it sends (they may be API keys, and may carry templated secrets).
 */
export function secretsOf(document: ConnectorDocument, refreshToken: string | undefined): string[] {
  return [
    document.clientSecret,
    document.password,
    refreshToken,
    document.refreshToken,
    document.signingKey?.privateKeyPem,
    ...Object.values(document.additionalHeaders ?? {}),
    ...Object.values(document.additionalRequestData ?? {}),
  ].filter((value): value is string => value !== undefined && value.length >= 4);
}

/** Does `text` hold a secret, whole or a long enough run of it? */
export function echoesSecret(text: string, secrets: readonly string[]): boolean {
  return secrets.some((secret) => {
    if (text.includes(secret)) return true;
    for (let start = 0; start + ECHO_RUN <= secret.length; start += 1) {
      if (text.includes(secret.slice(start, start + ECHO_RUN))) return true;
    }
    return false;
  });
}

/**
 * What the vendor passes on from a token server's answer, without anything that echoes one of the connector's
 * secrets: a hostile or careless server must not get a secret into a caller's body, a log line or the table.
 */
export function withoutEchoedSecrets(error: unknown, secrets: readonly string[]): unknown {
  if (!(error instanceof VendorError) || error.upstreamError === undefined) return error;
  if (!echoesSecret(error.upstreamError, secrets)) return error;
  return new VendorError(error.code, error.message, {
    ...(error.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: error.retryAfterSeconds }),
    ...(error.upstreamStatus === undefined ? {} : { upstreamStatus: error.upstreamStatus }),
  });
}

export function tokensWithoutEchoedSecrets(tokens: TokenSet, secrets: readonly string[]): TokenSet {
  return tokens.scope !== undefined && echoesSecret(tokens.scope, secrets) ? { ...tokens, scope: undefined } : tokens;
}
