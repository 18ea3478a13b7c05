import { describe, expect, it } from 'vitest';
import type { ConnectorDocument } from '../../shared/domain/connector.ts';
import { buildAuthorizationUrl, readAuthorizationResponse } from '../../shared/domain/oauth/authorization-request.ts';

const connector: ConnectorDocument = {
  grantType: 'refresh_token',
  tokenUrl: 'https://idp.example.com/oauth2/token',
  authorizationUrl: 'https://idp.example.com/oauth2/authorize?prompt=login&tenant=acme',
  authorizationScope: 'offline_access read',
  clientId: 'rt-client',
  clientSecret: 'made-up.secret.1',
  allowedPrincipals: ['*'],
};
const request = { redirectUri: 'http://127.0.0.1:5000/callback', state: 'made-up.state', codeChallenge: 'challenge' };

describe('Function: buildAuthorizationUrl (RFC 6749 §4.1.1, RFC 7636 §4.3)', () => {
  it("keeps the endpoint's own query and adds the flow's parameters with PKCE S256", () => {
    // Act
    const url = new URL(buildAuthorizationUrl(connector, request));

    // Assess
    expect(url.origin + url.pathname).toBe('https://idp.example.com/oauth2/authorize');
    expect([...url.searchParams.entries()]).toEqual([
      ['prompt', 'login'],
      ['tenant', 'acme'],
      ['response_type', 'code'],
      ['client_id', 'rt-client'],
      ['redirect_uri', 'http://127.0.0.1:5000/callback'],
      ['scope', 'offline_access read'],
      ['state', 'made-up.state'],
      ['code_challenge', 'challenge'],
      ['code_challenge_method', 'S256'],
    ]);
    expect(url.toString()).not.toContain('made-up.secret');
  });

  it('lets extra parameters add or replace one, never sending a parameter twice', () => {
    // Act
    const url = new URL(
      buildAuthorizationUrl(connector, { ...request, parameters: { prompt: 'consent', access_type: 'offline' } }),
    );

    // Assess
    expect(url.searchParams.getAll('prompt')).toEqual(['consent']);
    expect(url.searchParams.getAll('access_type')).toEqual(['offline']);
    const names = [...url.searchParams.keys()];
    expect(new Set(names).size).toBe(names.length);
  });

  it("refuses an extra parameter that would replace the flow's own", () => {
    // Act / Assess
    expect(() => buildAuthorizationUrl(connector, { ...request, parameters: { state: 'other' } })).toThrow(/state/);
  });
});

describe('Function: readAuthorizationResponse (RFC 6749 §4.1.2)', () => {
  const read = (query: string) => readAuthorizationResponse(new URLSearchParams(query), 'made-up.state');

  it('returns the code when the state matches', () => {
    expect(read('code=abc&state=made-up.state&iss=x')).toEqual({ ok: true, code: 'abc' });
  });

  it('refuses a missing, wrong or repeated state before reading anything else, an error included', () => {
    expect(read('code=abc')).toMatchObject({ ok: false, problem: 'state' });
    expect(read('code=abc&state=other')).toMatchObject({ ok: false, problem: 'state' });
    expect(read('code=abc&state=made-up.state&state=made-up.state')).toMatchObject({ ok: false, problem: 'state' });
    expect(read('error=access_denied&state=other')).toMatchObject({ ok: false, problem: 'state' });
  });

  it("passes the server's error on, sanitised", () => {
    expect(read('error=access_denied&error_description=No%0Dway&state=made-up.state')).toEqual({
      ok: false,
      problem: 'error',
      error: 'access_denied',
      description: 'No?way',
    });
    expect(read('error=%3Cscript%3E%20x&state=made-up.state')).toMatchObject({ error: 'invalid_error_code' });
  });

  it('refuses an answer with no code, or two', () => {
    expect(read('state=made-up.state')).toMatchObject({ ok: false, problem: 'no_code' });
    expect(read('code=a&code=b&state=made-up.state')).toMatchObject({ ok: false, problem: 'no_code' });
  });
});
