import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VendorError } from '../../shared/core/errors.ts';
import {
  MAX_EXPIRES_IN,
  MIN_EXPIRES_IN,
  processTokenResponse,
  retryAfterSeconds,
} from '../../shared/domain/oauth/token-response.ts';
import type { HttpResponse } from '../../shared/ports/http.ts';

const NOW = Date.parse('2026-11-24T12:00:00.000Z');
const DEFAULT_EXPIRES_IN = 3600;

const answer = (status: number, text: string, headers: Record<string, string> = {}): HttpResponse => ({
  status,
  headers: new Headers(headers),
  text,
});
const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  answer(status, JSON.stringify(body), { 'content-type': 'application/json', ...headers });

const process = (response: HttpResponse, defaultExpiresIn = DEFAULT_EXPIRES_IN) =>
  processTokenResponse(response, defaultExpiresIn, NOW);

function refusal(response: HttpResponse): VendorError {
  try {
    process(response);
  } catch (error) {
    expect(error).toBeInstanceOf(VendorError);
    return error as VendorError;
  }
  throw new Error('expected the answer to be refused');
}

describe('Function: processTokenResponse', () => {
  describe('successful answers (RFC 6749 §5.1)', () => {
    it('keeps access token, type, lifetime, scope and refresh token', () => {
      // Act
      const tokens = process(
        json(200, {
          access_token: 'at-1',
          token_type: 'Bearer',
          expires_in: 1800,
          scope: 'read write',
          refresh_token: 'rt-1',
        }),
      );

      // Assess
      expect(tokens).toEqual({
        accessToken: 'at-1',
        tokenType: 'Bearer',
        expiresIn: 1800,
        scope: 'read write',
        refreshToken: 'rt-1',
      });
    });

    it('uses the default lifetime when expires_in is missing', () => {
      // Act
      const tokens = process(json(200, { access_token: 'at', token_type: 'Bearer' }), 900);

      // Assess
      expect(tokens.expiresIn).toBe(900);
    });

    it.each([
      ['"3600"', '3600', 3600],
      ['" 120 "', ' 120 ', 120],
      ['a fraction', 59.9, 59],
    ])('reads expires_in given as %s', (_name, expiresIn, expected) => {
      // Act
      const tokens = process(json(200, { access_token: 'at', expires_in: expiresIn }));

      // Assess
      expect(tokens.expiresIn).toBe(expected);
    });

    it.each([
      ['not a number', 'soon'],
      ['empty', ''],
      ['a boolean', true],
      ['null', null],
      ['an object', { seconds: 10 }],
      // Mailchimp documents `expires_in: 0` for tokens that never expire.
      ['0 (never expires)', 0],
      ['negative', -60],
    ])('uses the default lifetime when expires_in is %s', (_name, expiresIn) => {
      // Act
      const tokens = process(json(200, { access_token: 'at', expires_in: expiresIn }), 777);

      // Assess
      expect(tokens.expiresIn).toBe(777);
    });

    it.each([
      [0.5, MIN_EXPIRES_IN],
      [1e12, MAX_EXPIRES_IN],
      ['1e12', MAX_EXPIRES_IN],
    ])('clamps the absurd expires_in %j to %d', (expiresIn, expected) => {
      // Act
      const tokens = process(json(200, { access_token: 'at', expires_in: expiresIn }));

      // Assess
      expect(tokens.expiresIn).toBe(expected);
    });

    it('keeps every expires_in within the believable range', () => {
      // Act & Assess
      fc.assert(
        fc.property(fc.oneof(fc.double(), fc.integer(), fc.string()), (expiresIn) => {
          const tokens = process(json(200, { access_token: 'at', expires_in: expiresIn }));
          expect(Number.isInteger(tokens.expiresIn)).toBe(true);
          expect(tokens.expiresIn).toBeGreaterThanOrEqual(MIN_EXPIRES_IN);
          expect(tokens.expiresIn).toBeLessThanOrEqual(MAX_EXPIRES_IN);
        }),
      );
    });

    it.each(['bearer', 'BEARER', 'Bearer', 'bEaReR'])('reports token_type %s as Bearer', (tokenType) => {
      // Act
      const tokens = process(json(200, { access_token: 'at', token_type: tokenType }));

      // Assess
      expect(tokens.tokenType).toBe('Bearer');
    });

    it('reports a missing token_type as Bearer', () => {
      // Act
      const tokens = process(json(200, { access_token: 'at' }));

      // Assess
      expect(tokens.tokenType).toBe('Bearer');
    });

    it('keeps another token_type as sent', () => {
      // Act
      const tokens = process(json(200, { access_token: 'at', token_type: 'DPoP' }));

      // Assess
      expect(tokens.tokenType).toBe('DPoP');
    });

    it('ignores unknown fields and sloppy optional ones', () => {
      // Act
      const tokens = process(
        json(200, {
          access_token: 'at',
          id_token: 'eyJ...',
          not_before_policy: 0,
          'ext-tenant': { id: 1 },
          scope: 42,
          refresh_token: '',
        }),
      );

      // Assess
      expect(tokens).toEqual({
        accessToken: 'at',
        tokenType: 'Bearer',
        expiresIn: DEFAULT_EXPIRES_IN,
        scope: undefined,
        refreshToken: undefined,
      });
    });

    it('reports an empty scope as no scope', () => {
      // Act
      const tokens = process(json(200, { access_token: 'at', scope: '' }));

      // Assess
      expect(tokens.scope).toBeUndefined();
    });

    it('accepts any 2xx status', () => {
      // Act
      const tokens = process(json(201, { access_token: 'at' }));

      // Assess
      expect(tokens.accessToken).toBe('at');
    });
  });

  describe('answers that are not a token', () => {
    it.each([
      ['no access_token', { token_type: 'Bearer', expires_in: 3600 }],
      ['an empty access_token', { access_token: '' }],
      ['a numeric access_token', { access_token: 12345 }],
      ['a JSON array', [{ access_token: 'at' }]],
      ['JSON null', null],
      ['a JSON string', 'at'],
    ])('refuses a 200 with %s as upstream_invalid_response', (_name, body) => {
      // Act
      const error = refusal(json(200, body));

      // Assess
      expect(error.code).toBe('upstream_invalid_response');
      expect(error.status).toBe(502);
    });

    it('refuses an HTML login page served with 200 as upstream_invalid_response', () => {
      // Prepare
      const html = '<!DOCTYPE html><html><body><form action="/login"><input name="password"></form></body></html>';

      // Act
      const error = refusal(answer(200, html, { 'content-type': 'text/html' }));

      // Assess
      expect(error.code).toBe('upstream_invalid_response');
    });

    it('refuses an empty 200 as upstream_invalid_response', () => {
      // Act
      const error = refusal(answer(200, ''));

      // Assess
      expect(error.code).toBe('upstream_invalid_response');
    });
  });

  describe('OAuth error answers (RFC 6749 §5.2)', () => {
    it.each(['invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope'])(
      'refuses %s with 400 as upstream_rejected carrying the code',
      (code) => {
        // Act
        const error = refusal(json(400, { error: code, error_description: 'nope' }));

        // Assess
        expect(error.code).toBe('upstream_rejected');
        expect(error.status).toBe(502);
        expect(error.upstreamError).toBe(code);
      },
    );

    it('refuses an OAuth error sent with 200 as upstream_rejected', () => {
      // Act
      const error = refusal(json(200, { error: 'invalid_grant', error_description: 'expired' }));

      // Assess
      expect(error.code).toBe('upstream_rejected');
      expect(error.upstreamError).toBe('invalid_grant');
    });

    it('prefers the error to an access_token in the same answer', () => {
      // Act
      const error = refusal(json(200, { error: 'invalid_client', access_token: 'should-not-be-used' }));

      // Assess
      expect(error.code).toBe('upstream_rejected');
    });

    it('refuses a 401 without an OAuth error body as upstream_rejected without upstreamError', () => {
      // Act
      const error = refusal(answer(401, 'Unauthorized'));

      // Assess
      expect(error.code).toBe('upstream_rejected');
      expect(error.upstreamError).toBeUndefined();
    });

    it.each([
      ['with a space', 'invalid client'],
      ['with a quote', 'invalid_"client"'],
      ['with a backslash', 'invalid\\client'],
      ['with a line break', 'invalid\nclient'],
      ['with non-ASCII', 'invalid_clïent'],
      ['very long', 'x'.repeat(65)],
      ['empty', ''],
    ])('does not echo a non-RFC error code %s', (_name, code) => {
      // Act
      const error = refusal(json(400, { error: code }));

      // Assess
      expect(error.code).toBe('upstream_rejected');
      expect(error.upstreamError).toBeUndefined();
      if (code !== '') expect(error.message).not.toContain(code);
    });

    it('never echoes error_description or error_uri', () => {
      // Act
      const error = refusal(
        json(400, {
          error: 'invalid_request',
          error_description: 'client secret s3cr3t-value is wrong',
          error_uri: 'https://idp.example.com/errors/s3cr3t-value',
        }),
      );

      // Assess
      expect(error.message).not.toContain('s3cr3t-value');
    });
  });

  describe('unavailable servers', () => {
    it.each([500, 502, 503, 504, 429, 408])('refuses HTTP %d as upstream_unavailable', (status) => {
      // Act
      const error = refusal(json(status, { error: 'temporarily_unavailable' }));

      // Assess
      expect(error.code).toBe('upstream_unavailable');
      expect(error.status).toBe(503);
    });

    it('passes on Retry-After in seconds', () => {
      // Act
      const error = refusal(answer(429, 'slow down', { 'retry-after': '30' }));

      // Assess
      expect(error.retryAfterSeconds).toBe(30);
    });

    it('passes on Retry-After as an HTTP date', () => {
      // Act
      const error = refusal(answer(503, '', { 'retry-after': new Date(NOW + 90_000).toUTCString() }));

      // Assess
      expect(error.retryAfterSeconds).toBe(90);
    });

    it('leaves out a Retry-After that makes no sense', () => {
      // Act
      const error = refusal(answer(503, '', { 'retry-after': 'whenever' }));

      // Assess
      expect(error.retryAfterSeconds).toBeUndefined();
    });
  });

  describe('properties', () => {
    const responses = fc.record({
      status: fc.oneof(
        fc.constantFrom(200, 201, 204, 302, 400, 401, 403, 404, 408, 429, 500, 503),
        fc.integer({ min: 100, max: 599 }),
      ),
      body: fc.oneof(
        fc.string(),
        fc.json(),
        fc
          .record(
            {
              access_token: fc.oneof(fc.string(), fc.jsonValue()),
              token_type: fc.oneof(fc.string(), fc.jsonValue()),
              expires_in: fc.oneof(fc.string(), fc.double(), fc.jsonValue()),
              refresh_token: fc.oneof(fc.string(), fc.jsonValue()),
              scope: fc.jsonValue(),
              error: fc.oneof(fc.string(), fc.jsonValue()),
            },
            { requiredKeys: [] },
          )
          .map((value) => JSON.stringify(value)),
      ),
      retryAfter: fc.option(fc.string()),
    });

    it('throws nothing but a VendorError', () => {
      // Act & Assess
      fc.assert(
        fc.property(responses, ({ status, body, retryAfter }) => {
          const headers: Record<string, string> =
            retryAfter === null ? {} : { 'retry-after': retryAfter.replace(/[\r\n\0]/g, '') };
          try {
            process(answer(status, body, headers));
          } catch (error) {
            expect(error).toBeInstanceOf(VendorError);
          }
        }),
        { numRuns: 500 },
      );
    });

    it('never puts the access or refresh token into an error', () => {
      // Prepare
      const token = fc.string({ minLength: 8, maxLength: 64 });
      const failing = fc.record({
        status: fc.constantFrom(200, 400, 401, 429, 503),
        accessToken: token,
        refreshToken: token,
        error: fc.oneof(fc.constantFrom(undefined, 'invalid_grant'), token),
      });

      // Act & Assess
      fc.assert(
        fc.property(failing, ({ status, accessToken, refreshToken, error }) => {
          // A server may of course name an error code that happens to contain the token; that is not a leak.
          fc.pre(error === undefined || (!error.includes(accessToken) && !error.includes(refreshToken)));
          // An answer that fails: an error, a failing status, or an access_token in the wrong place.
          const body =
            error === undefined
              ? { token: accessToken, refresh_token: refreshToken }
              : { error, access_token: accessToken, refresh_token: refreshToken };
          try {
            process(json(status, body));
          } catch (caught) {
            const vendorError = caught as VendorError;
            const said = `${vendorError.message} ${vendorError.upstreamError ?? ''}`;
            expect(said).not.toContain(accessToken);
            expect(said).not.toContain(refreshToken);
            return;
          }
          throw new Error('expected a refusal');
        }),
      );
    });
  });
});

describe('Function: retryAfterSeconds', () => {
  it.each([
    [null, undefined],
    ['0', 0],
    ['120', 120],
    [' 7 ', 7],
    ['-5', undefined],
  ])('reads Retry-After %j as %j', (value, expected) => {
    // Prepare
    const headers = new Headers(value === null ? {} : { 'retry-after': value });

    // Act
    const seconds = retryAfterSeconds(headers, NOW);

    // Assess
    expect(seconds).toBe(expected);
  });

  it('reads a past HTTP date as nothing to wait for', () => {
    // Act
    const seconds = retryAfterSeconds(new Headers({ 'retry-after': new Date(NOW - 60_000).toUTCString() }), NOW);

    // Assess
    expect(seconds).toBeUndefined();
  });
});

describe('Function: processTokenResponse, answers of servers that bend RFC 6749', () => {
  const answer = (text: string, type = 'application/json') => ({
    status: 200,
    headers: new Headers({ 'content-type': type }),
    text,
  });

  it('reads a form-encoded answer (older Facebook and GitHub)', () => {
    // Act
    const tokens = processTokenResponse(
      answer('access_token=form-token&expires=5183999&token_type=bearer', 'text/plain'),
      3600,
      NOW,
    );

    // Assess
    expect(tokens).toMatchObject({ accessToken: 'form-token', tokenType: 'Bearer', expiresIn: 5183999 });
  });

  it('reads a form-encoded error', () => {
    // Act & Assess
    expect(() => processTokenResponse(answer('error=bad_verification_code', 'text/plain'), 3600, NOW)).toThrow(
      expect.objectContaining({ code: 'upstream_rejected', upstreamError: 'bad_verification_code' }),
    );
  });

  it('reads camelCase names (plentymarkets) and keeps the RFC name when both are there', () => {
    // Act
    const tokens = processTokenResponse(
      answer(
        JSON.stringify({
          accessToken: 'camel',
          tokenType: 'Bearer',
          expiresIn: 120,
          refreshToken: 'rt',
          access_token: 'snake',
        }),
      ),
      3600,
      NOW,
    );

    // Assess
    expect(tokens).toMatchObject({ accessToken: 'snake', expiresIn: 120, refreshToken: 'rt' });
  });

  it('takes a missing token_type as Bearer (LinkedIn, Weibo)', () => {
    // Act
    const tokens = processTokenResponse(answer(JSON.stringify({ access_token: 'no-type' })), 3600, NOW);

    // Assess
    expect(tokens.tokenType).toBe('Bearer');
  });
});
