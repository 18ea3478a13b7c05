import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VendorError } from '../../shared/core/errors.ts';
import type { ConnectorRef } from '../../shared/core/identifiers.ts';
import { parseConnector, peekAllowedPrincipals } from '../../shared/domain/connector.ts';

const REF: ConnectorRef = { family: 'client-credentials', connectorId: 'demo' };
const ROLE = 'arn:aws:iam::123456789012:role/caller';

const clientCredentials = {
  grantType: 'client_credentials',
  tokenUrl: 'https://idp.example.com/oauth2/token',
  clientId: 'client-1',
  clientSecret: 'client-secret-1',
  allowedPrincipals: [ROLE],
};
const passwordGrant = {
  grantType: 'password',
  tokenUrl: 'https://idp.example.com/oauth2/token',
  clientId: 'client-2',
  clientSecret: 'client-secret-2',
  username: 'service-user',
  password: 'service-password',
  scope: 'read write',
  allowedPrincipals: ['123456789012'],
};
const refreshGrant = {
  grantType: 'refresh_token',
  tokenUrl: 'https://idp.example.com/oauth2/token',
  clientId: 'client-3',
  clientSecret: 'client-secret-3',
  refreshToken: 'refresh-token-3',
  allowedPrincipals: ['*'],
};

const parse = (document: unknown, ref: ConnectorRef = REF) => parseConnector(ref, JSON.stringify(document));

/** Runs `act`, which must throw, and returns what it threw. */
function thrown(act: () => unknown): unknown {
  try {
    act();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

function misconfiguration(document: unknown): VendorError {
  const error = thrown(() => parse(document));
  expect(error).toBeInstanceOf(VendorError);
  expect((error as VendorError).code).toBe('connector_misconfigured');
  expect((error as VendorError).status).toBe(500);
  return error as VendorError;
}

describe('Function: parseConnector', () => {
  describe('valid documents', () => {
    it.each([
      ['client_credentials', clientCredentials],
      ['password', passwordGrant],
      ['refresh_token', refreshGrant],
    ])('accepts a minimal %s document and keeps every field', (_name, document) => {
      // Act
      const connector = parse(document);

      // Assess
      expect(connector.document).toEqual(document);
      expect(connector.ref).toEqual(REF);
    });

    it('accepts every optional field of CONTRACT §2', () => {
      // Prepare
      const document = {
        ...clientCredentials,
        scope: 'read write admin:all',
        clientAuthentication: 'body',
        customGrantType: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        additionalHeaders: { 'Client-Id': '{{clientId}}', 'X-Tenant': 'acme' },
        additionalRequestData: { audience: 'https://api.example.com', resource: '{{clientSecret}}' },
        headerAuthKey: 'X-Api-Token',
        headerAuthValuePattern: 'Token {{access_token}}',
        prewarm: true,
        defaultExpiresIn: 600,
        allowedPrincipals: [
          '123456789012',
          'arn:aws:iam::123456789012:role/path/to/role',
          'arn:aws:iam::123456789012:user/alice',
          'arn:aws-us-gov:iam::123456789012:role/gov',
          '*',
        ],
      };

      // Act
      const connector = parse(document);

      // Assess
      expect(connector.document).toEqual(document);
    });

    it('accepts a public client without clientSecret', () => {
      // Prepare
      const { clientSecret: _omitted, ...publicClient } = clientCredentials;

      // Act
      const connector = parse(publicClient);

      // Assess
      expect(connector.document.clientSecret).toBeUndefined();
    });

    it.each(['basic', 'body'])('accepts clientAuthentication %s', (method) => {
      // Act
      const connector = parse({ ...clientCredentials, clientAuthentication: method });

      // Assess
      expect(connector.document.clientAuthentication).toBe(method);
    });

    it('accepts an http token URL (the https rule is applied per mode when vending)', () => {
      // Act
      const connector = parse({ ...clientCredentials, tokenUrl: 'http://127.0.0.1:8080/token' });

      // Assess
      expect(connector.document.tokenUrl).toBe('http://127.0.0.1:8080/token');
    });
  });

  describe('unknown fields', () => {
    it.each(['client_secret', 'grant_type', 'extra', 'scopes', '__proto__', 'constructor'])(
      'refuses the unknown field %s and names it',
      (field) => {
        // Prepare
        const text = `${JSON.stringify(clientCredentials).slice(0, -1)},${JSON.stringify(field)}:"hunter2-value"}`;

        // Act
        const error = thrown(() => parseConnector(REF, text));

        // Assess
        expect(error).toBeInstanceOf(VendorError);
        expect((error as VendorError).code).toBe('connector_misconfigured');
        expect((error as VendorError).message).toContain(`"${field}"`);
        expect((error as VendorError).message).not.toContain('hunter2-value');
      },
    );
  });

  describe('missing required fields', () => {
    it.each(['grantType', 'tokenUrl', 'clientId', 'allowedPrincipals'])('refuses a document without %s', (field) => {
      // Prepare
      const document: Record<string, unknown> = { ...clientCredentials };
      delete document[field];

      // Act
      const error = misconfiguration(document);

      // Assess
      expect(error.message).toContain(`"${field}"`);
      expect(error.message).toMatch(/required/);
    });

    it.each(['username', 'password'])('refuses a password grant without %s', (field) => {
      // Prepare
      const document: Record<string, unknown> = { ...passwordGrant };
      delete document[field];

      // Act
      const error = misconfiguration(document);

      // Assess
      expect(error.message).toContain(`"${field}"`);
    });

    it('refuses a refresh grant without refreshToken', () => {
      // Prepare
      const { refreshToken: _omitted, ...document } = refreshGrant;

      // Act
      const error = misconfiguration(document);

      // Assess
      expect(error.message).toContain('"refreshToken"');
    });

    it('refuses an empty allowedPrincipals', () => {
      // Act
      const error = misconfiguration({ ...clientCredentials, allowedPrincipals: [] });

      // Assess
      expect(error.message).toContain('"allowedPrincipals"');
    });

    it.each([
      'arn:aws:sts::123456789012:assumed-role/caller/session',
      '12345678901',
      '1234567890123',
      'arn:aws:iam::123456789012:group/admins',
      'arn:aws:iam::12345:role/short-account',
      'everyone',
      '',
    ])('refuses the allowedPrincipals entry %j and names its position', (entry) => {
      // Act
      const error = misconfiguration({ ...clientCredentials, allowedPrincipals: [ROLE, entry] });

      // Assess
      expect(error.message).toContain('"allowedPrincipals.1"');
    });
  });

  describe('every problem at once', () => {
    it('reports all the problems of a document in one message, each field named once', () => {
      // Act
      const error = misconfiguration({
        ...clientCredentials,
        clientId: 42,
        tokenUrl: 'not a url',
        allowedPrincipals: [],
        clientSecrett: 'made-up.secret.1234',
        extra: true,
      });

      // Assess
      for (const field of ['clientId', 'tokenUrl', 'allowedPrincipals', 'clientSecrett', 'extra']) {
        expect(error.message).toContain(`field "${field}": `);
      }
      expect(error.message).not.toContain('made-up.secret.1234');
    });

    it('lists the allowed values of an enum, never the value given', () => {
      // Act
      const grantType = misconfiguration({ ...clientCredentials, grantType: 'authorization_code' });
      const authentication = misconfiguration({ ...clientCredentials, clientAuthentication: 'made-up.value.77' });

      // Assess
      expect(grantType.message).toBe(
        'Connector document field "grantType": must be one of client_credentials, password, refresh_token, jwt_bearer.',
      );
      expect(authentication.message).toBe(
        'Connector document field "clientAuthentication": must be one of basic, body, private_key_jwt.',
      );
    });

    it.each([
      ['{\n  "clientId": "a",\n  "clientSecret": "made-up.secret.1234"\n  "scope": "read"\n}', 4, 3],
      ['{"clientSecret": "made-up.secret.1234",}', 1, 40],
      ['', 1, 1],
    ])('locates invalid JSON by line and column without quoting it (%#)', (text, line, column) => {
      // Act
      let error: unknown;
      try {
        parseConnector(REF, text);
      } catch (caught) {
        error = caught;
      }

      // Assess
      expect((error as VendorError).message).toBe(
        `Connector document field "(document)": is not valid JSON at line ${line}, column ${column}.`,
      );
      expect((error as VendorError).message).not.toContain('made-up');
    });
  });

  describe('wrong types and values', () => {
    it.each([
      ['grantType', 'authorization_code'],
      ['tokenUrl', 'not a url'],
      ['tokenUrl', 'ftp://idp.example.com/token'],
      ['tokenUrl', 'https://user:pass@idp.example.com/token'],
      ['clientId', ''],
      ['clientSecret', ''],
      ['scope', 'read "write"'],
      ['clientAuthentication', 'client_secret_jwt'],
      ['customGrantType', ''],
      ['headerAuthKey', 'Bad Header'],
      ['headerAuthValuePattern', 'Bearer\r\n{{access_token}}'],
      ['defaultExpiresIn', 0],
      ['defaultExpiresIn', -5],
      ['defaultExpiresIn', 1e12],
    ])('refuses %s = %j and names the field', (field, value) => {
      // Act
      const error = misconfiguration({ ...clientCredentials, [field]: value });

      // Assess
      expect(error.message).toContain(`"${field}"`);
    });

    it.each([
      ['grantType', 1],
      ['tokenUrl', ['https://idp.example.com/token']],
      ['clientId', 42],
      ['clientSecret', null],
      ['scope', ['read']],
      ['additionalHeaders', 'Client-Id: x'],
      ['additionalRequestData', ['a=b']],
      ['allowedPrincipals', ROLE],
      ['prewarm', 'yes'],
      ['defaultExpiresIn', '3600'],
    ])('refuses %s of the wrong type %j and names the field', (field, value) => {
      // Act
      const error = misconfiguration({ ...clientCredentials, [field]: value });

      // Assess
      expect(error.message).toContain(`"${field}"`);
    });

    it.each([
      ['clientId', 42, 'string'],
      ['prewarm', 'yes', 'boolean'],
      ['defaultExpiresIn', '3600', 'number'],
      ['allowedPrincipals', ROLE, 'array'],
    ])('describes %s = %j as a wrong type, not as a missing field', (field, value, expected) => {
      // Act
      const error = misconfiguration({ ...clientCredentials, [field]: value });

      // Assess
      expect(error.message).not.toMatch(/is required/);
      expect(error.message).toContain(expected);
    });

    it('describes a fractional defaultExpiresIn as needing an integer', () => {
      // Act
      const error = misconfiguration({ ...clientCredentials, defaultExpiresIn: 1.5 });

      // Assess
      expect(error.message).toContain('"defaultExpiresIn"');
      expect(error.message).toMatch(/integer/);
    });

    it('refuses an additionalHeaders name that is not an HTTP header name', () => {
      // Act
      const error = misconfiguration({ ...clientCredentials, additionalHeaders: { 'Bad Name': 'v' } });

      // Assess
      expect(error.message).toContain('additionalHeaders');
    });

    it('refuses an additionalHeaders value with a line break, naming the header but not the value', () => {
      // Act
      const error = misconfiguration({
        ...clientCredentials,
        additionalHeaders: { 'X-Injected': 'ok\r\nX-Evil: s3cr3t-header-value' },
      });

      // Assess
      expect(error.message).toContain('additionalHeaders.X-Injected');
      expect(error.message).not.toContain('s3cr3t-header-value');
    });

    it('refuses a non-string additionalRequestData value', () => {
      // Act
      const error = misconfiguration({ ...clientCredentials, additionalRequestData: { audience: 7 } });

      // Assess
      expect(error.message).toContain('additionalRequestData.audience');
    });

    it.each(['not json', '{"grantType":', '', "{'single':'quotes'}"])('refuses %j as not JSON', (text) => {
      // Act
      const error = thrown(() => parseConnector(REF, text));

      // Assess
      expect(error).toBeInstanceOf(VendorError);
      expect((error as VendorError).code).toBe('connector_misconfigured');
      expect((error as VendorError).message).toContain('(document)');
      expect((error as VendorError).message).toMatch(/JSON/);
    });

    it.each(['null', '[]', '42', '"a string"'])('refuses the JSON %s, which is not an object', (text) => {
      // Act
      const error = thrown(() => parseConnector(REF, text));

      // Assess
      expect(error).toBeInstanceOf(VendorError);
      expect((error as VendorError).code).toBe('connector_misconfigured');
      expect((error as VendorError).message).toContain('(document)');
    });

    it('never quotes a secret value of a field it refuses', () => {
      // Prepare
      const secret = 'sup3r-s3cret-value';

      // Act
      const errors = [
        misconfiguration({ ...clientCredentials, clientSecret: 12, password: secret, extra: secret }),
        misconfiguration({ ...clientCredentials, grantType: secret }),
        misconfiguration({ ...clientCredentials, tokenUrl: secret }),
        misconfiguration({ ...clientCredentials, scope: `"${secret}"` }),
        misconfiguration({ ...clientCredentials, clientAuthentication: secret }),
        misconfiguration({ ...clientCredentials, allowedPrincipals: [secret] }),
      ];

      // Assess
      for (const error of errors) expect(error.message).not.toContain(secret);
    });
  });

  describe('properties', () => {
    const KNOWN_FIELDS = [
      'grantType',
      'tokenUrl',
      'clientId',
      'clientSecret',
      'scope',
      'username',
      'password',
      'refreshToken',
      'clientAuthentication',
      'customGrantType',
      'additionalHeaders',
      'additionalRequestData',
      'headerAuthKey',
      'headerAuthValuePattern',
      'allowedPrincipals',
      'prewarm',
      'defaultExpiresIn',
      'signingKey',
      'signingAlgorithm',
      'assertionIssuer',
      'assertionSubject',
      'assertionAudience',
      'assertionClaims',
    ];
    // Every problem a message may state; a message is `Connector document field "<path>": <problem>.`
    const PROBLEMS = [
      'is not a known field',
      'is required',
      'must be an integer',
      ...['string', 'number', 'boolean', 'object', 'array', 'record'].map((type) => `must be of type ${type}`),
      'must be one of client_credentials, password, refresh_token, jwt_bearer',
      'must be one of basic, body, private_key_jwt',
      'must be one of RS256, PS256, ES256',
      'must hold exactly one of kmsKeyId and privateKeyPem',
      'is a claim the vendor sets itself',
      'must be a valid HTTP field value (no line breaks or control characters, Latin-1 only)',
      'is too small or empty',
      'must not be empty',
      'is too large',
      'has an invalid key',
      'must be space-separated scope tokens (RFC 6749 §3.3)',
      'must be a valid HTTP header name',
      'is a header the vendor sets itself',
      'must not be a header that frames the message',
      'is a parameter the vendor sets itself',
      'must not contain line breaks or NUL',
      'must be an absolute http(s) URL without credentials',
      'each entry must be a 12-digit account ID, an IAM role or user ARN, or "*"',
      'is not valid JSON',
      'is invalid',
    ];

    const secretValue = fc.string({ minLength: 6, maxLength: 24, unit: 'grapheme' });
    const anyValue = fc.oneof(
      { weight: 4, arbitrary: secretValue },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    );
    const unknownKey = fc.string({ minLength: 1, maxLength: 12 }).filter((key) => !KNOWN_FIELDS.includes(key));

    /** Collects every path of a JSON value (dotted, as messages name fields) and every leaf value as text. */
    function collect(value: unknown, path: string[], paths: string[], values: string[]): void {
      paths.push(path.length === 0 ? '(document)' : path.join('.'));
      if (typeof value === 'string') values.push(value);
      else if (typeof value === 'number') values.push(String(value));
      else if (Array.isArray(value))
        for (const [i, item] of value.entries()) collect(item, [...path, String(i)], paths, values);
      else if (value !== null && typeof value === 'object') {
        for (const [key, item] of Object.entries(value)) collect(item, [...path, key], paths, values);
      }
    }

    function assertNoValueIn(message: string, document: unknown): void {
      const paths: string[] = [];
      const values: string[] = [];
      collect(document, [], paths, values);
      // Everything the parser may legitimately say about this document; a value inside it is not a leak.
      const sayable = paths
        .flatMap((path) =>
          PROBLEMS.map((problem) => `Connector document field "${path}": ${problem}.; field "${path}": ${problem};`),
        )
        .join('\n');
      for (const value of values) {
        if (value.length >= 4 && !sayable.includes(value)) expect(message).not.toContain(value);
      }
    }

    it('names a field and never a value, whatever the document', () => {
      // Prepare
      const documents = fc.record(
        {
          grantType: fc.oneof(fc.constantFrom('client_credentials', 'password', 'refresh_token'), anyValue),
          tokenUrl: fc.oneof(fc.constant('https://idp.example.com/token'), anyValue),
          clientId: anyValue,
          clientSecret: anyValue,
          scope: anyValue,
          username: anyValue,
          password: anyValue,
          refreshToken: anyValue,
          clientAuthentication: fc.oneof(fc.constantFrom('basic', 'body'), anyValue),
          customGrantType: anyValue,
          additionalHeaders: fc.oneof(fc.dictionary(fc.constantFrom('X-A', 'Client-Id'), anyValue), anyValue),
          additionalRequestData: fc.oneof(fc.dictionary(fc.constantFrom('audience', 'resource'), anyValue), anyValue),
          headerAuthKey: anyValue,
          headerAuthValuePattern: anyValue,
          allowedPrincipals: fc.oneof(fc.constant([ROLE]), fc.array(anyValue, { maxLength: 3 }), anyValue),
          prewarm: fc.oneof(fc.boolean(), anyValue),
          defaultExpiresIn: fc.oneof(fc.integer(), anyValue),
        },
        { requiredKeys: [] },
      );
      const unknownFields = fc.dictionary(unknownKey, anyValue, { maxKeys: 2 });

      // Act & Assess
      fc.assert(
        fc.property(documents, unknownFields, (known, unknown) => {
          const document = { ...known, ...unknown };
          let error: unknown;
          try {
            parse(document);
          } catch (caught) {
            error = caught;
          }
          if (Object.keys(unknown).length > 0) expect(error).toBeDefined();
          if (error === undefined) return;
          expect(error).toBeInstanceOf(VendorError);
          expect((error as VendorError).code).toBe('connector_misconfigured');
          expect((error as VendorError).message).toMatch(/^Connector document field "[^"]+": /);
          assertNoValueIn((error as VendorError).message, document);
        }),
        { numRuns: 300 },
      );
    });

    it('names the unknown field of an otherwise valid document, never its value', () => {
      // Prepare
      const documents = fc.record({
        base: fc.constantFrom(clientCredentials, passwordGrant, refreshGrant),
        secrets: fc.record({ clientId: secretValue, clientSecret: secretValue }),
        key: unknownKey,
        value: anyValue,
      });

      // Act & Assess
      fc.assert(
        fc.property(documents, ({ base, secrets, key, value }) => {
          const document = { ...base, ...secrets, [key]: value };
          const error = thrown(() => parse(document));
          expect(error).toBeInstanceOf(VendorError);
          expect((error as VendorError).message).toContain(`field "${key}": is not a known field`);
          assertNoValueIn((error as VendorError).message, document);
        }),
        { numRuns: 200 },
      );
    });
  });

  describe('revisions', () => {
    it('keeps tokenRevision when only refreshToken changes, and changes revision', () => {
      // Prepare
      const before = parse(refreshGrant);

      // Act
      const after = parse({ ...refreshGrant, refreshToken: 'rotated-refresh-token' });

      // Assess
      expect(after.tokenRevision).toBe(before.tokenRevision);
      expect(after.revision).not.toBe(before.revision);
    });

    it.each([
      ['allowedPrincipals', ['*', ROLE]],
      ['prewarm', true],
      ['headerAuthKey', 'X-Token'],
      ['headerAuthValuePattern', '{{access_token}}'],
    ])('keeps tokenRevision when only %s changes', (field, value) => {
      // Prepare
      const before = parse(clientCredentials);

      // Act
      const after = parse({ ...clientCredentials, [field]: value });

      // Assess
      expect(after.tokenRevision).toBe(before.tokenRevision);
    });

    it.each([
      ['clientId', 'another-client'],
      ['clientSecret', 'another-secret'],
      ['tokenUrl', 'https://other.example.com/token'],
      ['scope', 'read'],
      ['clientAuthentication', 'body'],
      ['customGrantType', 'urn:custom'],
      ['additionalRequestData', { audience: 'x' }],
      ['additionalHeaders', { 'X-A': 'x' }],
      ['defaultExpiresIn', 60],
    ])('changes tokenRevision when %s changes', (field, value) => {
      // Prepare
      const before = parse(clientCredentials);

      // Act
      const after = parse({ ...clientCredentials, [field]: value });

      // Assess
      expect(after.tokenRevision).not.toBe(before.tokenRevision);
    });

    it('gives the same revisions to the same text', () => {
      // Act
      const first = parse(passwordGrant);
      const second = parse(passwordGrant);

      // Assess
      expect(second.revision).toBe(first.revision);
      expect(second.tokenRevision).toBe(first.tokenRevision);
    });
  });
});

describe('Function: peekAllowedPrincipals', () => {
  it('reads allowedPrincipals from a valid document', () => {
    // Act
    const principals = peekAllowedPrincipals(JSON.stringify(clientCredentials));

    // Assess
    expect(principals).toEqual([ROLE]);
  });

  it('reads allowedPrincipals from a document that is invalid otherwise', () => {
    // Prepare
    const text = JSON.stringify({ grantType: 'nonsense', unknown: 1, allowedPrincipals: ['*', '123456789012'] });

    // Act
    const principals = peekAllowedPrincipals(text);

    // Assess
    expect(principals).toEqual(['*', '123456789012']);
  });

  it.each([
    ['not JSON', 'not json'],
    ['without allowedPrincipals', JSON.stringify({ clientId: 'x' })],
    ['with allowedPrincipals of the wrong type', JSON.stringify({ allowedPrincipals: 'arn' })],
    ['with a non-string entry', JSON.stringify({ allowedPrincipals: [1] })],
    ['that is not an object', 'null'],
  ])('answers undefined for a document %s', (_name, text) => {
    // Act
    const principals = peekAllowedPrincipals(text);

    // Assess
    expect(principals).toBeUndefined();
  });
});

describe('Function: parseConnector — signed assertions (CONTRACT §2)', () => {
  const jwtBearer = {
    grantType: 'jwt_bearer',
    tokenUrl: 'https://login.example.com/services/oauth2/token',
    clientId: 'connected-app',
    assertionIssuer: 'connected-app-consumer-key',
    signingKey: { kmsKeyId: 'alias/token-vendor-salesforce' },
    allowedPrincipals: [ROLE],
  };

  it('accepts a jwt_bearer document without a client secret, and every assertion field', () => {
    // Prepare
    const document = {
      ...jwtBearer,
      signingKey: { privateKeyPem: 'made-up PEM', kid: 'key-2026' },
      signingAlgorithm: 'ES256',
      assertionSubject: 'integration@example.com',
      assertionAudience: 'https://login.salesforce.com',
      assertionClaims: { scope: 'https://www.googleapis.com/auth/cloud-platform', extra: { nested: [1, true, null] } },
      scope: 'api',
    };

    // Act
    const connector = parse(document, { family: 'jwt-bearer', connectorId: 'sf' });

    // Assess
    expect(connector.document).toEqual(document);
  });

  it('accepts private_key_jwt client authentication on any grant, with no client secret', () => {
    // Prepare
    const { clientSecret: _omitted, ...withoutSecret } = clientCredentials;

    // Act
    const connector = parse({
      ...withoutSecret,
      clientAuthentication: 'private_key_jwt',
      signingKey: { kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/0b9d4c3e-2f1a-4e5d-8c7b-6a5f4e3d2c1b' },
      signingAlgorithm: 'PS256',
    });

    // Assess
    expect(connector.document.clientAuthentication).toBe('private_key_jwt');
  });

  it.each([
    ['assertionIssuer', { assertionIssuer: undefined }, 'is required'],
    ['signingKey', { signingKey: undefined }, 'is required'],
    ['signingKey', { signingKey: {} }, 'exactly one of kmsKeyId and privateKeyPem'],
    ['signingKey', { signingKey: { kmsKeyId: 'alias/a', privateKeyPem: 'made-up PEM' } }, 'exactly one of'],
    ['signingKey.keyArn', { signingKey: { keyArn: 'alias/a' } }, 'is not a known field'],
    ['signingAlgorithm', { signingAlgorithm: 'HS256' }, 'must be one of RS256, PS256, ES256'],
    ['assertionClaims.aud', { assertionClaims: { aud: 'https://elsewhere.example.com' } }, 'vendor sets itself'],
    ['assertionClaims.jti', { assertionClaims: { jti: 'fixed' } }, 'vendor sets itself'],
  ])('names %s (%s)', (field, change, problem) => {
    // Act
    const error = misconfiguration({ ...jwtBearer, ...change });

    // Assess
    expect(error.message).toContain(`"${field}"`);
    expect(error.message).toContain(problem);
  });

  it('requires signingKey with private_key_jwt', () => {
    // Act
    const error = misconfiguration({ ...clientCredentials, clientAuthentication: 'private_key_jwt' });

    // Assess
    expect(error.message).toContain('"signingKey"');
  });

  it('never quotes a private key it refuses', () => {
    // Act
    const error = misconfiguration({ ...jwtBearer, signingKey: { privateKeyPem: 42 } });

    // Assess
    expect(error.message).toContain('"signingKey.privateKeyPem"');
    expect(error.message).not.toContain('42');
  });
});
