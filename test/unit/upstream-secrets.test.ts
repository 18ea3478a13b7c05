import { describe, expect, it } from 'vitest';
import { VendorError } from '../../shared/core/errors.ts';
import type { ConnectorDocument } from '../../shared/domain/connector.ts';
import {
  echoesSecret,
  secretsOf,
  tokensWithoutEchoedSecrets,
  withoutEchoedSecrets,
} from '../../shared/domain/oauth/upstream-secrets.ts';

const document = {
  grantType: 'password',
  tokenUrl: 'https://id.example/token',
  clientId: 'client',
  clientSecret: 'client-secret-1234',
  username: 'alice',
  password: 'alice-password-5678',
  additionalHeaders: { 'X-Api-Key': 'api-key-abcdefgh' },
  signingKey: { privateKeyPem: 'made-up PEM body line.0f3a9c' },
  allowedPrincipals: ['*'],
} as unknown as ConnectorDocument;

describe('Function: withoutEchoedSecrets', () => {
  const secrets = secretsOf(document, 'refresh-token-90ab');

  it.each([
    ['the client secret', 'client-secret-1234'],
    ['the password, wrapped', 'bad_alice-password-5678_x'],
    ['a cut-off run of the password', 'pw:password-56'],
    ['the refresh token', 'refresh-token-90ab'],
    ['a header value', 'key=api-key-abcdefgh'],
    ['a run of the private key', 'PEM body line.0f'],
  ])('drops an upstream error code that echoes %s', (_what, code) => {
    // Act
    const error = withoutEchoedSecrets(
      new VendorError('upstream_rejected', 'refused', { upstreamError: code, upstreamStatus: 400 }),
      secrets,
    ) as VendorError;

    // Assess
    expect(error.upstreamError).toBeUndefined();
    expect(error).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamStatus: 400 });
  });

  it('keeps an ordinary code', () => {
    // Act
    const error = withoutEchoedSecrets(
      new VendorError('upstream_rejected', 'refused', { upstreamError: 'invalid_grant' }),
      secrets,
    ) as VendorError;

    // Assess
    expect(error.upstreamError).toBe('invalid_grant');
    expect(echoesSecret('invalid_client', secrets)).toBe(false);
  });

  it('drops a granted scope that echoes a secret', () => {
    // Act
    const tokens = tokensWithoutEchoedSecrets(
      {
        accessToken: 'a',
        tokenType: 'Bearer',
        expiresIn: 60,
        scope: 'read client-secret-1234',
        refreshToken: undefined,
      },
      secrets,
    );

    // Assess
    expect(tokens.scope).toBeUndefined();
  });
});
