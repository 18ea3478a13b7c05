import { describe, expect, it } from 'vitest';
import type { ConnectorDocument } from '../../shared/domain/connector.ts';
import { buildTokenRequest, fillCredentialTemplate } from '../../shared/domain/oauth/token-request.ts';

const TOKEN_URL = 'https://idp.example.com/oauth2/token';

const clientCredentials: ConnectorDocument = {
  grantType: 'client_credentials',
  tokenUrl: TOKEN_URL,
  clientId: 'cc-client',
  clientSecret: 'cc-secret',
  scope: 'read write',
  allowedPrincipals: ['*'],
};
const passwordGrant: ConnectorDocument = {
  grantType: 'password',
  tokenUrl: TOKEN_URL,
  clientId: 'pw-client',
  clientSecret: 'pw-secret',
  username: 'alice@example.com',
  password: 'p@ss w&rd=1',
  allowedPrincipals: ['*'],
};
const refreshGrant: ConnectorDocument = {
  grantType: 'refresh_token',
  tokenUrl: TOKEN_URL,
  clientId: 'rt-client',
  clientSecret: 'rt-secret',
  refreshToken: 'document-refresh-token',
  allowedPrincipals: ['*'],
};

/** The form as a server decodes it, in order. */
const formOf = (body: string): [string, string][] => [...new URLSearchParams(body).entries()];

describe('Function: buildTokenRequest', () => {
  describe('grant families (CONTRACT §1)', () => {
    it('client_credentials: grant_type and scope', () => {
      // Act
      const request = buildTokenRequest(clientCredentials, { authMethod: 'basic', scope: 'read write' });

      // Assess
      expect(request.url).toBe(TOKEN_URL);
      expect(request.method).toBe('POST');
      expect(formOf(request.body)).toEqual([
        ['grant_type', 'client_credentials'],
        ['scope', 'read write'],
      ]);
    });

    it('client_credentials: no scope parameter when none is asked for', () => {
      // Act
      const request = buildTokenRequest(clientCredentials, { authMethod: 'basic', scope: undefined });

      // Assess
      expect(new URLSearchParams(request.body).has('scope')).toBe(false);
    });

    it('password: grant_type, username and password, form-urlencoded', () => {
      // Act
      const request = buildTokenRequest(passwordGrant, { authMethod: 'basic', scope: 'openid' });

      // Assess
      expect(formOf(request.body)).toEqual([
        ['grant_type', 'password'],
        ['username', 'alice@example.com'],
        ['password', 'p@ss w&rd=1'],
        ['scope', 'openid'],
      ]);
      expect(request.body).toContain('password=p%40ss+w%26rd%3D1');
    });

    it('refresh_token: grant_type and the document refresh token, no scope unless set', () => {
      // Act
      const request = buildTokenRequest(refreshGrant, { authMethod: 'basic', scope: undefined });

      // Assess
      expect(formOf(request.body)).toEqual([
        ['grant_type', 'refresh_token'],
        ['refresh_token', 'document-refresh-token'],
      ]);
    });

    it('refresh_token: sends scope when it is set', () => {
      // Act
      const request = buildTokenRequest(refreshGrant, { authMethod: 'basic', scope: 'offline_access' });

      // Assess
      expect(new URLSearchParams(request.body).get('scope')).toBe('offline_access');
    });

    it('refresh_token: prefers the newest stored refresh token over the document one', () => {
      // Act
      const request = buildTokenRequest(refreshGrant, {
        authMethod: 'basic',
        scope: undefined,
        refreshToken: 'rotated-refresh-token',
      });

      // Assess
      expect(new URLSearchParams(request.body).get('refresh_token')).toBe('rotated-refresh-token');
    });

    it('sends no scope for an empty scope string', () => {
      // Act
      const request = buildTokenRequest(clientCredentials, { authMethod: 'basic', scope: '' });

      // Assess
      expect(new URLSearchParams(request.body).has('scope')).toBe(false);
    });

    it.each([
      ['client_credentials', clientCredentials],
      ['password', passwordGrant],
      ['refresh_token', refreshGrant],
    ])('%s: customGrantType replaces grant_type and keeps the rest of the family', (_name, document) => {
      // Prepare
      const custom = { ...document, customGrantType: 'urn:example:custom-grant' };

      // Act
      const standard = formOf(buildTokenRequest(document, { authMethod: 'basic', scope: undefined }).body);
      const replaced = formOf(buildTokenRequest(custom, { authMethod: 'basic', scope: undefined }).body);

      // Assess
      expect(replaced).toEqual([['grant_type', 'urn:example:custom-grant'], ...standard.slice(1)]);
    });

    it('authorization_code (token-vendor connect): code, redirect_uri and code_verifier, whatever the grantType', () => {
      // Act
      const request = buildTokenRequest(
        { ...refreshGrant, customGrantType: 'urn:example:refresh', additionalRequestData: { resource: 'api' } },
        {
          authMethod: 'body',
          scope: undefined,
          authorizationCode: {
            code: 'made-up.code',
            codeVerifier: 'made-up.verifier',
            redirectUri: 'http://127.0.0.1:1/cb',
          },
        },
      );

      // Assess
      expect(formOf(request.body)).toEqual([
        ['grant_type', 'authorization_code'],
        ['code', 'made-up.code'],
        ['redirect_uri', 'http://127.0.0.1:1/cb'],
        ['code_verifier', 'made-up.verifier'],
        ['resource', 'api'],
        ['client_id', 'rt-client'],
        ['client_secret', 'rt-secret'],
      ]);
    });
  });

  describe('headers', () => {
    it('asks for JSON with a form-urlencoded body', () => {
      // Act
      const request = buildTokenRequest(clientCredentials, { authMethod: 'body', scope: undefined });

      // Assess
      expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
      expect(request.headers.accept).toBe('application/json');
    });

    it('keeps content-type and accept even when additionalHeaders set them', () => {
      // Prepare
      const document = {
        ...clientCredentials,
        additionalHeaders: { 'Content-Type': 'text/plain', Accept: 'text/html' },
      };

      // Act
      const request = buildTokenRequest(document, { authMethod: 'body', scope: undefined });

      // Assess
      expect(request.headers['content-type']).toBe('application/x-www-form-urlencoded');
      expect(request.headers.accept).toBe('application/json');
    });
  });

  describe('client authentication placement', () => {
    it('basic: Authorization header, no credentials in the body', () => {
      // Act
      const request = buildTokenRequest(clientCredentials, { authMethod: 'basic', scope: undefined });

      // Assess
      expect(request.headers.authorization).toBe(`Basic ${Buffer.from('cc-client:cc-secret').toString('base64')}`);
      const form = new URLSearchParams(request.body);
      expect(form.has('client_id')).toBe(false);
      expect(form.has('client_secret')).toBe(false);
    });

    it('body: client_id and client_secret in the body, no Authorization header', () => {
      // Act
      const request = buildTokenRequest(clientCredentials, { authMethod: 'body', scope: undefined });

      // Assess
      expect(request.headers.authorization).toBeUndefined();
      const form = new URLSearchParams(request.body);
      expect(form.get('client_id')).toBe('cc-client');
      expect(form.get('client_secret')).toBe('cc-secret');
    });

    it('none: client_id alone in the body', () => {
      // Prepare
      const { clientSecret: _omitted, ...publicClient } = clientCredentials;

      // Act
      const request = buildTokenRequest(publicClient, { authMethod: 'none', scope: undefined });

      // Assess
      expect(request.headers.authorization).toBeUndefined();
      const form = new URLSearchParams(request.body);
      expect(form.get('client_id')).toBe('cc-client');
      expect(form.has('client_secret')).toBe(false);
    });
  });

  describe('additionalHeaders and additionalRequestData (CONTRACT §2)', () => {
    it('sends additionalHeaders with credential templates filled', () => {
      // Prepare
      const document: ConnectorDocument = {
        ...passwordGrant,
        additionalHeaders: {
          'Client-Id': '{{clientId}}',
          'X-Client-Secret': '{{clientSecret}}',
          'X-User': 'user={{username}};pass={{password}}',
          'X-Static': 'static-value',
        },
      };

      // Act
      const request = buildTokenRequest(document, { authMethod: 'body', scope: undefined });

      // Assess
      expect(request.headers['client-id']).toBe('pw-client');
      expect(request.headers['x-client-secret']).toBe('pw-secret');
      expect(request.headers['x-user']).toBe('user=alice@example.com;pass=p@ss w&rd=1');
      expect(request.headers['x-static']).toBe('static-value');
    });

    it('sends additionalRequestData form-urlencoded with credential templates filled', () => {
      // Prepare
      const document: ConnectorDocument = {
        ...clientCredentials,
        additionalRequestData: {
          audience: 'https://api.example.com/',
          client_assertion: '{{clientId}}.{{clientSecret}}',
        },
      };

      // Act
      const request = buildTokenRequest(document, { authMethod: 'basic', scope: 'read' });

      // Assess
      const form = new URLSearchParams(request.body);
      expect(form.get('grant_type')).toBe('client_credentials');
      expect(form.get('scope')).toBe('read');
      expect(form.get('audience')).toBe('https://api.example.com/');
      expect(form.get('client_assertion')).toBe('cc-client.cc-secret');
    });

    it('fills templates once: a credential that looks like a template stays literal', () => {
      // Prepare
      const document: ConnectorDocument = {
        ...clientCredentials,
        clientId: '{{clientSecret}}',
        additionalHeaders: { 'Client-Id': '{{clientId}}' },
      };

      // Act
      const request = buildTokenRequest(document, { authMethod: 'body', scope: undefined });

      // Assess
      expect(request.headers['client-id']).toBe('{{clientSecret}}');
    });
  });
});

describe('Function: buildTokenRequest — signed assertions', () => {
  const jwtBearer: ConnectorDocument = {
    grantType: 'jwt_bearer',
    tokenUrl: TOKEN_URL,
    clientId: 'jb-client',
    assertionIssuer: 'jb-issuer',
    signingKey: { kmsKeyId: 'alias/jb' },
    scope: 'api refresh_token',
    allowedPrincipals: ['*'],
  };

  it('sends the JWT bearer grant with the assertion and the scope alone when no client authentication is set', () => {
    // Act
    const request = buildTokenRequest(jwtBearer, { authMethod: 'none', scope: 'api', assertion: 'h.p.s' });

    // Assess
    expect(formOf(request.body)).toEqual([
      ['grant_type', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
      ['assertion', 'h.p.s'],
      ['scope', 'api'],
    ]);
    expect(request.headers.authorization).toBeUndefined();
  });

  it('adds client authentication to the JWT bearer grant when the connector has it', () => {
    // Act
    const request = buildTokenRequest(
      { ...jwtBearer, clientSecret: 'jb-secret' },
      { authMethod: 'basic', scope: undefined, assertion: 'h.p.s' },
    );

    // Assess
    expect(formOf(request.body)).toEqual([
      ['grant_type', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
      ['assertion', 'h.p.s'],
    ]);
    expect(request.headers.authorization).toMatch(/^Basic /);
  });

  it('sends customGrantType in place of the JWT bearer URN, the assertion unchanged', () => {
    // Act
    const request = buildTokenRequest(
      { ...jwtBearer, customGrantType: 'jwt-bearer' },
      { authMethod: 'none', scope: undefined, assertion: 'h.p.s' },
    );

    // Assess
    expect(formOf(request.body)).toEqual([
      ['grant_type', 'jwt-bearer'],
      ['assertion', 'h.p.s'],
    ]);
  });

  it.each([clientCredentials, passwordGrant, refreshGrant, jwtBearer])(
    'authenticates a $grantType client with private_key_jwt: client assertion, no secret anywhere',
    (document) => {
      // Act
      const request = buildTokenRequest(
        { ...document, clientAuthentication: 'private_key_jwt', signingKey: { kmsKeyId: 'alias/c' } },
        { authMethod: 'private_key_jwt', scope: undefined, assertion: 'g.g.g', clientAssertion: 'c.c.c' },
      );

      // Assess
      const form = new URLSearchParams(request.body);
      expect(form.get('client_id')).toBe(document.clientId);
      expect(form.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      expect(form.get('client_assertion')).toBe('c.c.c');
      expect(form.has('client_secret')).toBe(false);
      expect(request.headers.authorization).toBeUndefined();
      if (document.clientSecret !== undefined) expect(request.body).not.toContain(document.clientSecret);
    },
  );
});

describe('Function: fillCredentialTemplate', () => {
  it('fills an absent credential with an empty string and leaves unknown placeholders alone', () => {
    // Prepare
    const { clientSecret: _omitted, ...publicClient } = clientCredentials;

    // Act
    const filled = fillCredentialTemplate('[{{clientSecret}}][{{username}}][{{other}}]', publicClient);

    // Assess
    expect(filled).toBe('[][][{{other}}]');
  });
});
