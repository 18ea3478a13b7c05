import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger, redactSecrets } from '../../shared/adapters/powertools-logger.ts';

describe('Function: redactSecrets', () => {
  it.each([
    'clientSecret',
    'client_secret',
    'password',
    'Password',
    'passwd',
    'refreshToken',
    'refresh_token',
    'accessToken',
    'access_token',
    'authorization',
    'Authorization',
    'credentials',
    'cookie',
    'set-cookie',
    'x-amz-signature',
    'idToken',
  ])('redacts the string under %s', (key) => {
    // Act
    const value = redactSecrets(key, 'the-secret-value');

    // Assess
    expect(value).toBe('[redacted]');
  });

  it.each([
    'tokenUrl',
    'tokenKey',
    'tokenType',
    'token_type',
    'tokenRevision',
    'connector',
    'error',
    'upstreamError',
    'status',
  ])('keeps the value under %s', (key) => {
    // Act
    const value = redactSecrets(key, 'https://idp.example.com/token');

    // Assess
    expect(value).toBe('https://idp.example.com/token');
  });

  it('redacts at any depth when used as a JSON replacer', () => {
    // Prepare
    const record = {
      message: 'token fetched',
      tokenUrl: 'https://idp.example.com/token',
      connector: 'client-credentials/demo',
      request: { headers: { authorization: 'Basic Y2xpZW50OnNlY3JldA==' }, form: { client_secret: 'shh-1' } },
      answer: { access_token: 'at-2', refresh_token: 'rt-3', expires_in: 3600 },
    };

    // Act
    const line = JSON.stringify(record, redactSecrets);

    // Assess
    expect(line).not.toContain('Y2xpZW50OnNlY3JldA==');
    expect(line).not.toContain('shh-1');
    expect(line).not.toContain('at-2');
    expect(line).not.toContain('rt-3');
    expect(JSON.parse(line)).toMatchObject({
      tokenUrl: 'https://idp.example.com/token',
      connector: 'client-credentials/demo',
      answer: { expires_in: 3600 },
    });
  });

  it('redacts whole arrays and objects under a secret-looking key, whose items the replacer sees by index', () => {
    // Act
    const underSecretKey = redactSecrets('credentials', { value: 'x' });
    const arrayOfTokens = JSON.stringify({ refreshTokens: ['rt-1', 'rt-2'] }, redactSecrets);

    // Assess
    expect(underSecretKey).toBe('[redacted]');
    expect(arrayOfTokens).not.toContain('rt-1');
  });

  it('passes objects under other keys through for the replacer to descend into', () => {
    // Prepare
    const nested = { value: 'x' };

    // Act
    const result = redactSecrets('details', nested);

    // Assess
    expect(result).toBe(nested);
  });
});

describe('Function: createLogger', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('writes log records with secrets redacted and identifiers kept', () => {
    // Prepare
    const lines: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    const logger = createLogger('token-vendor-test');

    // Act
    logger.info('token fetched', {
      connector: 'password/crm',
      tokenUrl: 'https://idp.example.com/token',
      clientSecret: 'cs-value-1',
      nested: { password: 'pw-value-2', refresh_token: 'rt-value-3' },
    });

    // Assess
    const output = lines.join('');
    expect(output).toContain('token fetched');
    expect(output).toContain('password/crm');
    expect(output).toContain('https://idp.example.com/token');
    expect(output).not.toContain('cs-value-1');
    expect(output).not.toContain('pw-value-2');
    expect(output).not.toContain('rt-value-3');
  });
});
