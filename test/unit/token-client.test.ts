import { describe, expect, it } from 'vitest';
import { VendorError } from '../../shared/core/errors.ts';
import type { ConnectorDocument } from '../../shared/domain/connector.ts';
import {
  authAttempts,
  neverSent,
  outcomeUnknown,
  requestToken,
  type TokenClientDeps,
} from '../../shared/domain/oauth/token-client.ts';
import type { HttpClient, HttpRequest, HttpResponse } from '../../shared/ports/http.ts';
import type { KmsSigner } from '../../shared/ports/kms-signer.ts';

const confidential: ConnectorDocument = {
  grantType: 'client_credentials',
  tokenUrl: 'https://idp.example.com/token',
  clientId: 'client',
  clientSecret: 'secret',
  allowedPrincipals: ['*'],
};
const { clientSecret: _omitted, ...publicClient } = confidential;

describe('Function: authAttempts', () => {
  it.each(['basic', 'body'] as const)('tries only an explicit clientAuthentication %s', (method) => {
    // Act
    const attempts = authAttempts(
      { ...confidential, clientAuthentication: method },
      method === 'basic' ? 'body' : 'basic',
    );

    // Assess
    expect(attempts).toEqual([method]);
  });

  it('sends only the client ID for a public client', () => {
    // Act
    const attempts = authAttempts(publicClient, 'basic');

    // Assess
    expect(attempts).toEqual(['none']);
  });

  it('tries Basic, then body, when nothing is remembered', () => {
    // Act
    const attempts = authAttempts(confidential);

    // Assess
    expect(attempts).toEqual(['basic', 'body']);
  });

  it('tries Basic first when Basic is remembered', () => {
    // Act
    const attempts = authAttempts(confidential, 'basic');

    // Assess
    expect(attempts).toEqual(['basic', 'body']);
  });

  it('tries body first when body is remembered', () => {
    // Act
    const attempts = authAttempts(confidential, 'body');

    // Assess
    expect(attempts).toEqual(['body', 'basic']);
  });
});

describe('Function: requestToken', () => {
  const json = (status: number, body: unknown): HttpResponse => ({
    status,
    headers: new Headers({ 'content-type': 'application/json' }),
    text: JSON.stringify(body),
  });

  /** An in-memory token endpoint that answers each request in turn and records what it got. */
  function scripted(...answers: HttpResponse[]): { http: HttpClient; requests: HttpRequest[] } {
    const requests: HttpRequest[] = [];
    const http: HttpClient = async (request) => {
      requests.push(request);
      const answer = answers.shift();
      if (answer === undefined) throw new Error('unexpected extra request');
      return answer;
    };
    return { http, requests };
  }

  /** A fake clock that sleeping advances, so retries and deadlines need no real time. */
  function deps(http: HttpClient, overrides: Partial<TokenClientDeps> = {}) {
    let clock = 0;
    const sleeps: number[] = [];
    const value: TokenClientDeps = {
      http,
      clock: {
        now: () => clock,
        sleep: async (ms) => {
          sleeps.push(ms);
          clock += ms;
        },
        random: () => 0.5,
      },
      attemptTimeoutMs: 1000,
      deadlineMs: 10_000,
      maxAttempts: 1,
      ...overrides,
    };
    return Object.assign(value, { sleeps });
  }
  const usedBody = (request: HttpRequest | undefined) => new URLSearchParams(request?.body).has('client_secret');

  it('presents no refresh token when KMS cannot sign the client assertion, and says the server saw nothing', async () => {
    // Prepare
    const { http, requests } = scripted(json(200, { access_token: 'at', refresh_token: 'rt-2' }));
    let signs = 0;
    const kms: KmsSigner = {
      sign: async () => {
        signs += 1;
        throw new VendorError('upstream_unavailable', 'KMS could not sign the assertion (throttled or unavailable).');
      },
    };
    const document: ConnectorDocument = {
      ...confidential,
      grantType: 'refresh_token',
      refreshToken: 'rt-1',
      clientAuthentication: 'private_key_jwt',
      signingKey: { kmsKeyId: 'alias/k' },
    };

    // Act
    const error = await requestToken(deps(http, { kms, maxAttempts: 2 }), document, {
      scope: undefined,
      refreshToken: 'rt-1',
    }).catch((caught: unknown) => caught);

    // Assess
    expect(error).toMatchObject({ code: 'upstream_unavailable' });
    expect(requests).toHaveLength(0);
    // Nothing reached the server: the refresh token is unspent (so signing is tried again), not "outcome unknown".
    expect(neverSent(error)).toBe(true);
    expect(outcomeUnknown(error)).toBe(false);
    expect(signs).toBe(2);
  });

  it('falls back from Basic to body once on invalid_client and reports the method that worked', async () => {
    // Prepare
    const { http, requests } = scripted(json(401, { error: 'invalid_client' }), json(200, { access_token: 'at' }));

    // Act
    const result = await requestToken(deps(http), confidential, { scope: undefined });

    // Assess
    expect(requests).toHaveLength(2);
    expect(requests[0]?.headers.authorization).toMatch(/^Basic /);
    expect(usedBody(requests[1])).toBe(true);
    expect(result.authMethod).toBe('body');
    expect(result.tokens.accessToken).toBe('at');
  });

  it('falls back on a bare 401 without an OAuth error body', async () => {
    // Prepare
    const { http, requests } = scripted(
      { status: 401, headers: new Headers(), text: 'Unauthorized' },
      json(200, { access_token: 'at' }),
    );

    // Act
    const result = await requestToken(deps(http), confidential, { scope: undefined });

    // Assess
    expect(requests).toHaveLength(2);
    expect(result.authMethod).toBe('body');
  });

  it('does not fall back on invalid_grant', async () => {
    // Prepare
    const { http, requests } = scripted(json(400, { error: 'invalid_grant' }), json(200, { access_token: 'at' }));

    // Act
    const attempt = requestToken(deps(http), confidential, { scope: undefined });

    // Assess
    await expect(attempt).rejects.toMatchObject({ code: 'upstream_rejected', upstreamError: 'invalid_grant' });
    expect(requests).toHaveLength(1);
  });

  it('does not fall back when clientAuthentication is explicit', async () => {
    // Prepare
    const { http, requests } = scripted(json(401, { error: 'invalid_client' }), json(200, { access_token: 'at' }));

    // Act
    const attempt = requestToken(deps(http), { ...confidential, clientAuthentication: 'basic' }, { scope: undefined });

    // Assess
    await expect(attempt).rejects.toMatchObject({ code: 'upstream_rejected', upstreamError: 'invalid_client' });
    expect(requests).toHaveLength(1);
  });

  it('reports a refused second method as the error', async () => {
    // Prepare
    const { http, requests } = scripted(json(401, { error: 'invalid_client' }), json(401, { error: 'invalid_client' }));

    // Act
    const attempt = requestToken(deps(http), confidential, { scope: undefined });

    // Assess
    await expect(attempt).rejects.toMatchObject({ code: 'upstream_rejected', upstreamError: 'invalid_client' });
    expect(requests).toHaveLength(2);
  });

  it('turns a failed connection into upstream_unavailable', async () => {
    // Prepare
    const http: HttpClient = async () => {
      throw new TypeError('fetch failed');
    };

    // Act
    const attempt = requestToken(deps(http), confidential, { scope: undefined });

    // Assess
    await expect(attempt).rejects.toBeInstanceOf(VendorError);
    await expect(attempt).rejects.toMatchObject({ code: 'upstream_unavailable' });
  });

  it('uses the connector defaultExpiresIn when the answer has no expires_in', async () => {
    // Prepare
    const { http } = scripted(json(200, { access_token: 'at' }));

    // Act
    const result = await requestToken(deps(http), { ...confidential, defaultExpiresIn: 120 }, { scope: undefined });

    // Assess
    expect(result.tokens.expiresIn).toBe(120);
  });

  describe('retries', () => {
    const unavailable = (headers: Record<string, string> = {}): HttpResponse => ({
      status: 503,
      headers: new Headers(headers),
      text: 'Service Unavailable',
    });

    it('asks again after a transient failure, up to maxAttempts', async () => {
      // Prepare
      const { http, requests } = scripted(unavailable(), json(200, { access_token: 'at' }));
      const client = deps(http, { maxAttempts: 3 });

      // Act
      const result = await requestToken(client, confidential, { scope: undefined });

      // Assess
      expect(result.tokens.accessToken).toBe('at');
      expect(requests).toHaveLength(2);
      expect(client.sleeps).toHaveLength(1);
    });

    it('gives up after maxAttempts transient failures', async () => {
      // Prepare
      const { http, requests } = scripted(unavailable(), unavailable(), unavailable());
      const client = deps(http, { maxAttempts: 2 });

      // Act
      const attempt = requestToken(client, confidential, { scope: undefined });

      // Assess
      await expect(attempt).rejects.toMatchObject({ code: 'upstream_unavailable' });
      expect(requests).toHaveLength(2);
    });

    it('presents an authorization code once: no second request after a 503 the server may have acted on', async () => {
      // Prepare
      const { http, requests } = scripted(unavailable(), json(200, { access_token: 'at' }));
      const client = deps(http, { maxAttempts: 3 });
      const authorizationCode = { code: 'made-up.code', codeVerifier: 'made-up.verifier', redirectUri: 'http://x/cb' };

      // Act
      const attempt = requestToken(client, confidential, { scope: undefined, authorizationCode });

      // Assess
      await expect(attempt).rejects.toMatchObject({ code: 'upstream_unavailable' });
      expect(requests).toHaveLength(1);
      expect(new URLSearchParams(requests[0]?.body).get('grant_type')).toBe('authorization_code');
    });

    it('never asks again after a refusal', async () => {
      // Prepare
      const { http, requests } = scripted(json(400, { error: 'invalid_scope' }), json(200, { access_token: 'at' }));
      const client = deps(http, { maxAttempts: 3 });

      // Act
      const attempt = requestToken(client, confidential, { scope: undefined });

      // Assess
      await expect(attempt).rejects.toMatchObject({ code: 'upstream_rejected', upstreamError: 'invalid_scope' });
      expect(requests).toHaveLength(1);
    });

    it('waits as long as Retry-After asks', async () => {
      // Prepare
      const { http } = scripted(unavailable({ 'retry-after': '2' }), json(200, { access_token: 'at' }));
      const client = deps(http, { maxAttempts: 3 });

      // Act
      await requestToken(client, confidential, { scope: undefined });

      // Assess
      expect(client.sleeps).toEqual([2000]);
    });

    it('answers at once when Retry-After reaches past the deadline', async () => {
      // Prepare
      const { http, requests } = scripted(unavailable({ 'retry-after': '60' }), json(200, { access_token: 'at' }));
      const client = deps(http, { maxAttempts: 3, deadlineMs: 10_000 });

      // Act
      const attempt = requestToken(client, confidential, { scope: undefined });

      // Assess
      await expect(attempt).rejects.toMatchObject({ code: 'upstream_unavailable', retryAfterSeconds: 60 });
      expect(requests).toHaveLength(1);
      expect(client.sleeps).toEqual([]);
    });
  });
});
