import { createHash, createHmac } from 'node:crypto';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { type IncomingSignedRequest, type Principals, parseQuery, verifySigV4 } from '../../local/sigv4.ts';

const REGION = 'us-east-1';
const NOW = Date.parse('2026-11-24T12:00:00.000Z');
const KEY = 'AKIDLOCALEXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const PRINCIPALS: Principals = {
  [KEY]: { secretAccessKey: SECRET, arn: 'arn:aws:sts::123456789012:assumed-role/caller/dev' },
};
const HOST = '127.0.0.1:3000';

interface SignOptions {
  method?: string;
  path?: string;
  query?: Record<string, string>;
  secret?: string;
  accessKeyId?: string;
  region?: string;
  service?: string;
  date?: number;
  body?: string;
  /** The SDK default adds and signs x-amz-content-sha256. */
  applyChecksum?: boolean;
}

/** Signs a request as an AWS SDK client would, and returns it as the local gateway receives it. */
async function signed(options: SignOptions = {}): Promise<IncomingSignedRequest> {
  const query = options.query ?? {};
  const signer = new SignatureV4({
    credentials: { accessKeyId: options.accessKeyId ?? KEY, secretAccessKey: options.secret ?? SECRET },
    region: options.region ?? REGION,
    service: options.service ?? 'execute-api',
    sha256: Sha256,
    applyChecksum: options.applyChecksum ?? true,
  });
  const request = await signer.sign(
    new HttpRequest({
      method: options.method ?? 'GET',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 3000,
      path: options.path ?? '/tokens/client-credentials/demo',
      query,
      headers: { host: HOST },
      ...(options.body === undefined ? {} : { body: options.body }),
    }),
    { signingDate: new Date(options.date ?? NOW) },
  );
  const headers = Object.fromEntries(
    Object.entries(request.headers).map(([name, value]) => [name.toLowerCase(), String(value)]),
  );
  return {
    method: request.method,
    rawPath: request.path,
    rawQuery: new URLSearchParams(query).toString().replaceAll('+', '%20'),
    headers,
    body: options.body ?? '',
  };
}

const verify = (request: IncomingSignedRequest, now = NOW) => verifySigV4(request, PRINCIPALS, REGION, now);

describe('Function: verifySigV4', () => {
  it('accepts a request signed by the SDK signer and reports its principal', async () => {
    // Prepare
    const request = await signed({ query: { scope: 'read write', minTtl: '120' } });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification).toEqual({ ok: true, accessKeyId: KEY, principal: PRINCIPALS[KEY] });
  });

  it('accepts a signed POST with a body', async () => {
    // Prepare
    const request = await signed({ method: 'POST', path: '/tokens/client-credentials/demo/refresh', body: '{}' });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification.ok).toBe(true);
  });

  it('accepts a signature 14 minutes old', async () => {
    // Prepare
    const request = await signed({ date: NOW - 14 * 60_000 });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification.ok).toBe(true);
  });

  it('refuses a request signed with the wrong secret', async () => {
    // Prepare
    const request = await signed({ secret: 'not-the-secret' });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses an unknown access key', async () => {
    // Prepare
    const request = await signed({ accessKeyId: 'AKIDUNKNOWN' });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request whose query was changed after signing', async () => {
    // Prepare
    const request = await signed({ query: { scope: 'read' } });

    // Act
    const verification = await verify({ ...request, rawQuery: 'scope=admin' });

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request with a query parameter added after signing', async () => {
    // Prepare
    const request = await signed({ query: { scope: 'read' } });

    // Act
    const verification = await verify({ ...request, rawQuery: `${request.rawQuery}&minTtl=0` });

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request whose path was changed after signing', async () => {
    // Prepare
    const request = await signed();

    // Act
    const verification = await verify({ ...request, rawPath: '/tokens/client-credentials/other' });

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request whose method was changed after signing', async () => {
    // Prepare
    const request = await signed();

    // Act
    const verification = await verify({ ...request, method: 'POST' });

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request whose body was changed after signing (signer without x-amz-content-sha256)', async () => {
    // Prepare
    const request = await signed({
      method: 'POST',
      path: '/tokens/client-credentials/demo/refresh',
      body: '{}',
      applyChecksum: false,
    });

    // Act
    const verification = await verify({ ...request, body: '{"x":1}' });

    // Assess
    expect(request.headers['x-amz-content-sha256']).toBeUndefined();
    expect(verification.ok).toBe(false);
  });

  it('refuses a request whose body no longer matches its signed x-amz-content-sha256', async () => {
    // Prepare
    const request = await signed({ method: 'POST', path: '/tokens/client-credentials/demo/refresh', body: '{}' });

    // Act
    const verification = await verify({ ...request, body: '{"x":1}' });

    // Assess
    expect(request.headers['x-amz-content-sha256']).toBeDefined();
    expect(verification.ok).toBe(false);
  });

  it.each([
    ['more than 15 minutes old', NOW - 16 * 60_000],
    ['more than 15 minutes ahead', NOW + 16 * 60_000],
  ])('refuses a signature %s', async (_name, date) => {
    // Prepare
    const request = await signed({ date });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification).toEqual({ ok: false, reason: 'Signature expired' });
  });

  it('refuses a signature for another service', async () => {
    // Prepare
    const request = await signed({ service: 'execute-apx' });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a signature for another region', async () => {
    // Prepare
    const request = await signed({ region: 'eu-west-1' });

    // Act
    const verification = await verify(request);

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request without Authorization', async () => {
    // Prepare
    const request = await signed();
    const { authorization: _omitted, ...headers } = request.headers;

    // Act
    const verification = await verify({ ...request, headers });

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request whose signed host header was changed', async () => {
    // Prepare
    const request = await signed();

    // Act
    const verification = await verify({ ...request, headers: { ...request.headers, host: 'evil.example:3000' } });

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a request whose X-Amz-Date was moved after signing', async () => {
    // Prepare
    const request = await signed();

    // Act
    const verification = await verify({
      ...request,
      headers: { ...request.headers, 'x-amz-date': '20261124T120100Z' },
    });

    // Assess
    expect(verification.ok).toBe(false);
  });

  it('refuses a malformed Authorization header', async () => {
    // Prepare
    const request = await signed();

    // Act
    const verification = await verify({
      ...request,
      headers: { ...request.headers, authorization: 'Bearer something' },
    });

    // Assess
    expect(verification.ok).toBe(false);
  });

  describe('against an independent signature (as curl --aws-sigv4 computes it)', () => {
    const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
    const sha256Hex = (data: string) => createHash('sha256').update(data, 'utf8').digest('hex');

    /** SigV4 by hand: canonical request, string to sign, derived key (AWS SigV4 documentation). */
    function curlRequest(secret: string, path: string, amzDate: string): IncomingSignedRequest {
      const date = amzDate.slice(0, 8);
      const canonicalRequest = [
        'GET',
        path,
        '',
        `host:${HOST}`,
        `x-amz-date:${amzDate}`,
        '',
        'host;x-amz-date',
        sha256Hex(''),
      ].join('\n');
      const scope = `${date}/${REGION}/execute-api/aws4_request`;
      const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
      const signingKey = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), REGION), 'execute-api'), 'aws4_request');
      const signature = createHmac('sha256', signingKey).update(stringToSign, 'utf8').digest('hex');
      return {
        method: 'GET',
        rawPath: path,
        rawQuery: '',
        headers: {
          host: HOST,
          'x-amz-date': amzDate,
          authorization: `AWS4-HMAC-SHA256 Credential=${KEY}/${scope}, SignedHeaders=host;x-amz-date, Signature=${signature}`,
          'user-agent': 'curl/8.5.0',
          accept: '*/*',
        },
        body: '',
      };
    }

    it('accepts the hand-computed signature of a known request', async () => {
      // Prepare
      const request = curlRequest(SECRET, '/tokens/client-credentials/demo', '20261124T120000Z');

      // Act
      const verification = await verify(request);

      // Assess
      expect(verification.ok).toBe(true);
    });

    it('refuses the hand-computed signature made with another secret', async () => {
      // Prepare
      const request = curlRequest('another-secret', '/tokens/client-credentials/demo', '20261124T120000Z');

      // Act
      const verification = await verify(request);

      // Assess
      expect(verification.ok).toBe(false);
    });

    it('refuses the hand-computed signature for a request whose scope date differs from X-Amz-Date', async () => {
      // Prepare
      const request = curlRequest(SECRET, '/tokens/client-credentials/demo', '20261124T120000Z');
      const authorization = (request.headers.authorization ?? '').replace('/20261124/', '/20261123/');

      // Act
      const verification = await verify({ ...request, headers: { ...request.headers, authorization } });

      // Assess
      expect(verification.ok).toBe(false);
    });
  });
});

describe('Function: parseQuery', () => {
  it('percent-decodes names and values and keeps every repeated value', () => {
    // Act
    const query = parseQuery('scope=read%20write&scope=admin&minTtl=60&flag');

    // Assess
    expect(query).toEqual({ scope: ['read write', 'admin'], minTtl: ['60'], flag: [''] });
  });

  it('answers undefined for a broken percent encoding', () => {
    // Act
    const query = parseQuery('scope=%E0%A4%A');

    // Assess
    expect(query).toBeUndefined();
  });
});
