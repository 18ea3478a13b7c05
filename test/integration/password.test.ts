import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoAuthServer, startDemoAuthServer } from '../../local/demo-auth-server.ts';
import { CALLER_ROLE, type Harness, startHarness } from '../support/harness.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

describe('Integration: password grant against @node-oauth/oauth2-server', () => {
  let server: DemoAuthServer;
  let harness: Harness;

  beforeAll(async () => {
    server = await startDemoAuthServer({
      clients: [{ id: 'pw-client', secret: 'pw-secret', grants: ['password'] }],
      users: { alice: 'correct horse battery staple' },
      accessTokenLifetime: 1800,
    });
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await server.close();
  });

  const connector = (extra: object = {}) => ({
    grantType: 'password',
    tokenUrl: server.tokenUrl,
    clientId: 'pw-client',
    clientSecret: 'pw-secret',
    username: 'alice',
    password: 'correct horse battery staple',
    scope: 'read',
    allowedPrincipals: [CALLER_ROLE],
    ...extra,
  });

  it.each(['basic', 'body'] as const)(
    'exchanges username and password with %s client authentication',
    async (method) => {
      // Prepare
      await harness.writeConnector('password', `alice-${method}`, connector({ clientAuthentication: method }));

      // Act
      const token = await harness.vendor().vend('password', `alice-${method}`);

      // Assess
      expect(token.access_token).toBeTruthy();
      expect(token.expires_in).toBeGreaterThan(1700);
      expect(token.expires_in).toBeLessThanOrEqual(1800);
      expect(token.scope).toBe('read');
    },
  );

  it('reports a wrong password as upstream_rejected invalid_grant without echoing it', async () => {
    // Prepare
    await harness.writeConnector('password', 'wrong', connector({ password: 'not-her-password' }));

    // Act
    const failure = await harness
      .vendor()
      .vend('password', 'wrong')
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamError: 'invalid_grant' });
    expect(JSON.stringify(failure)).not.toContain('not-her-password');
  });
});

describe('Integration: request options every family shares', () => {
  let scripted: ScriptedServer;
  let harness: Harness;

  beforeAll(async () => {
    scripted = await startScriptedServer(() => tokenAnswer());
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await scripted.close();
  });

  it('fills {{…}} templates in additional headers and form data, and replaces grant_type with customGrantType', async () => {
    // Prepare
    await harness.writeConnector('password', 'templated', {
      grantType: 'password',
      tokenUrl: scripted.url,
      clientId: 'tpl-client',
      clientSecret: 'tpl-secret',
      username: 'bob',
      password: 'bob-password',
      clientAuthentication: 'body',
      customGrantType: 'urn:example:password',
      additionalHeaders: {
        'Client-Id': '{{clientId}}',
        'Client-Secret': '{{clientSecret}}',
        Username: '{{username}}',
        Password: '{{password}}',
        'X-Custom': 'fixed',
      },
      additionalRequestData: { audience: 'api://{{clientId}}', pin: '{{password}}' },
      allowedPrincipals: [CALLER_ROLE],
    });
    const before = scripted.requests.length;

    // Act
    await harness.vendor().vend('password', 'templated');

    // Assess
    const request = scripted.requests[before];
    expect(request?.method).toBe('POST');
    expect(request?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(request?.headers.accept).toBe('application/json');
    expect(request?.headers['client-id']).toBe('tpl-client');
    expect(request?.headers['client-secret']).toBe('tpl-secret');
    expect(request?.headers.username).toBe('bob');
    expect(request?.headers.password).toBe('bob-password');
    expect(request?.headers['x-custom']).toBe('fixed');
    expect(request?.form.get('grant_type')).toBe('urn:example:password');
    expect(request?.form.get('username')).toBe('bob');
    expect(request?.form.get('password')).toBe('bob-password');
    expect(request?.form.get('audience')).toBe('api://tpl-client');
    expect(request?.form.get('pin')).toBe('bob-password');
    expect(request?.form.get('client_id')).toBe('tpl-client');
    expect(request?.form.get('client_secret')).toBe('tpl-secret');
  });

  it('builds the caller header from headerAuthKey and headerAuthValuePattern', async () => {
    // Prepare
    scripted.setScript(() => tokenAnswer({ token_type: 'bearer' }));
    await harness.writeConnector('client-credentials', 'custom-header', {
      grantType: 'client_credentials',
      tokenUrl: scripted.url,
      clientId: 'hdr-client',
      clientSecret: 'hdr-secret',
      headerAuthKey: 'X-Api-Token',
      headerAuthValuePattern: 'Token {{access_token}} ({{token_type}})',
      allowedPrincipals: [CALLER_ROLE],
    });

    // Act
    const token = await harness.vendor().vend('client-credentials', 'custom-header');

    // Assess
    expect(token.token_type).toBe('Bearer');
    expect(token.header).toEqual({ name: 'X-Api-Token', value: `Token ${token.access_token} (Bearer)` });
  });

  it.each([
    ['expires_in missing', { access_token: 'a1' }, 'defaultExpiresIn', 600],
    ['expires_in as a string', { access_token: 'a2', expires_in: '120' }, undefined, 120],
    ['an absurd expires_in', { access_token: 'a3', expires_in: 1e15 }, undefined, 365 * 24 * 3600],
  ])('reads a sloppy answer leniently: %s', async (_name, body, defaulted, expected) => {
    // Prepare
    scripted.setScript(() => ({ body }));
    const id = `lenient-${String(body.access_token)}`;
    await harness.writeConnector('client-credentials', id, {
      grantType: 'client_credentials',
      tokenUrl: scripted.url,
      clientId: 'x',
      clientSecret: 'y',
      allowedPrincipals: [CALLER_ROLE],
      ...(defaulted === undefined ? {} : { defaultExpiresIn: 600 }),
    });

    // Act
    const token = await harness.vendor().vend('client-credentials', id);

    // Assess
    expect(token.token_type).toBe('Bearer');
    expect(token.expires_in).toBeGreaterThanOrEqual(expected - 2);
    expect(token.expires_in).toBeLessThanOrEqual(expected);
  });

  it.each([
    [
      'an HTML login page with status 200',
      { status: 200, body: '<html><body>Sign in</body></html>' },
      'upstream_invalid_response',
      502,
    ],
    ['JSON without access_token', { status: 200, body: { token_type: 'Bearer' } }, 'upstream_invalid_response', 502],
    ['an OAuth error with status 200', { status: 200, body: { error: 'invalid_scope' } }, 'upstream_rejected', 502],
    [
      'an OAuth error with status 400',
      { status: 400, body: { error: 'unauthorized_client' } },
      'upstream_rejected',
      502,
    ],
    ['a 503', { status: 503, body: 'down' }, 'upstream_unavailable', 503],
  ])('answers %s with the contract error', async (_name, answer, code, status) => {
    // Prepare
    scripted.setScript(() => answer);
    const id = `bad-${code}-${status}-${String(answer.status)}${typeof answer.body}`;
    await harness.writeConnector('client-credentials', id, {
      grantType: 'client_credentials',
      tokenUrl: scripted.url,
      clientId: 'x',
      clientSecret: 'y',
      clientAuthentication: 'body',
      allowedPrincipals: [CALLER_ROLE],
    });

    // Act
    const failure = await harness
      .vendor()
      .vend('client-credentials', id)
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code, status });
  });
});
