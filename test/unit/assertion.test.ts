import { constants, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { decodeProtectedHeader, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { VendorError } from '../../shared/core/errors.ts';
import type { ConnectorDocument } from '../../shared/domain/connector.ts';
import {
  ASSERTION_LIFETIME_SECONDS,
  CLIENT_ASSERTION_LIFETIME_SECONDS,
  clientAssertionClaims,
  grantAssertionClaims,
  signJwt,
} from '../../shared/domain/oauth/assertion.ts';
import type { KmsSigner, KmsSignRequest } from '../../shared/ports/kms-signer.ts';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString();

const NOW = Date.UTC(2026, 11, 3, 12, 0, 0);
const document: ConnectorDocument = {
  grantType: 'jwt_bearer',
  tokenUrl: 'https://login.example.com/services/oauth2/token',
  clientId: 'connected-app',
  assertionIssuer: 'connected-app-consumer-key',
  signingKey: { privateKeyPem: pem(rsa.privateKey) },
  allowedPrincipals: ['*'],
};

/** KMS's Sign done by node:crypto: what the port promises (ECDSA in DER, PSS with a 32-byte salt). */
class InProcessKms implements KmsSigner {
  readonly requests: KmsSignRequest[] = [];
  readonly keys: Readonly<Record<string, KeyObject>>;
  constructor(keys: Readonly<Record<string, KeyObject>>) {
    this.keys = keys;
  }
  async sign(request: KmsSignRequest): Promise<Uint8Array> {
    this.requests.push(request);
    const key = this.keys[request.keyId];
    if (key === undefined) throw new Error('unknown key');
    const options =
      request.algorithm === 'RSASSA_PSS_SHA_256'
        ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
        : request.algorithm === 'ECDSA_SHA_256'
          ? { dsaEncoding: 'der' as const }
          : {};
    return sign('sha256', request.message, { key, ...options });
  }
}

async function misconfiguration(attempt: Promise<unknown>): Promise<VendorError> {
  const error = await attempt.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(VendorError);
  expect((error as VendorError).code).toBe('connector_misconfigured');
  return error as VendorError;
}

describe('Function: grantAssertionClaims', () => {
  it('fills iss, sub (the issuer), aud (the token URL), iat, exp a few minutes on and a jti', () => {
    // Act
    const claims = grantAssertionClaims(document, NOW);

    // Assess
    expect(claims).toEqual({
      iss: 'connected-app-consumer-key',
      sub: 'connected-app-consumer-key',
      aud: document.tokenUrl,
      iat: NOW / 1000,
      exp: NOW / 1000 + ASSERTION_LIFETIME_SECONDS,
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    // Salesforce refuses an assertion that expires more than 3 minutes ahead.
    expect(ASSERTION_LIFETIME_SECONDS).toBeLessThan(180);
  });

  it('takes assertionSubject, assertionAudience and merges assertionClaims', () => {
    // Act
    const claims = grantAssertionClaims(
      {
        ...document,
        assertionSubject: 'integration@example.com',
        assertionAudience: 'https://login.salesforce.com',
        assertionClaims: { scope: 'https://www.googleapis.com/auth/cloud-platform', nested: { a: [1, 2] } },
      },
      NOW,
    );

    // Assess
    expect(claims).toMatchObject({
      sub: 'integration@example.com',
      aud: 'https://login.salesforce.com',
      scope: 'https://www.googleapis.com/auth/cloud-platform',
      nested: { a: [1, 2] },
    });
  });

  it('gives every assertion its own jti', () => {
    // Act
    const jtis = new Set(Array.from({ length: 100 }, () => grantAssertionClaims(document, NOW).jti));

    // Assess
    expect(jtis.size).toBe(100);
  });
});

describe('Function: clientAssertionClaims', () => {
  it('has iss and sub the client ID, aud the token URL, a short exp and a jti', () => {
    // Act
    const claims = clientAssertionClaims(document, NOW);

    // Assess
    expect(claims).toEqual({
      iss: 'connected-app',
      sub: 'connected-app',
      aud: document.tokenUrl,
      iat: NOW / 1000,
      exp: NOW / 1000 + CLIENT_ASSERTION_LIFETIME_SECONDS,
      jti: expect.any(String),
    });
  });
});

describe('Function: signJwt', () => {
  describe('with privateKeyPem (in process)', () => {
    it.each([
      ['RS256', rsa],
      ['PS256', rsa],
      ['ES256', ec],
    ] as const)('signs %s so that jose verifies it under the public key', async (algorithm, pair) => {
      // Prepare
      const claims = grantAssertionClaims(document, Date.now());

      // Act
      const jwt = await signJwt(
        { now: Date.now() },
        { ...document, signingAlgorithm: algorithm, signingKey: { privateKeyPem: pem(pair.privateKey), kid: 'k-1' } },
        claims,
      );

      // Assess
      const { payload, protectedHeader } = await jwtVerify(jwt, pair.publicKey, { algorithms: [algorithm] });
      expect(payload).toEqual(claims);
      expect(protectedHeader).toEqual({ alg: algorithm, typ: 'JWT', kid: 'k-1' });
    });

    it('signs RS256 when no algorithm is given', async () => {
      // Act
      const jwt = await signJwt({ now: NOW }, document, { iss: 'x' });

      // Assess
      expect(decodeProtectedHeader(jwt)).toEqual({ alg: 'RS256', typ: 'JWT' });
    });

    it('names signingKey.privateKeyPem for a PEM that is not a PKCS#8 private key, never quoting it', async () => {
      // Prepare
      const pkcs1 = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();

      // Act
      const error = await misconfiguration(
        signJwt({ now: NOW }, { ...document, signingKey: { privateKeyPem: pkcs1 } }, {}),
      );

      // Assess
      expect(error.message).toContain('"signingKey.privateKeyPem"');
      expect(error.message).not.toContain('PRIVATE KEY');
      expect(error.message).not.toContain(pkcs1.split('\n')[1]);
    });

    it.each([
      ['ES256 with an RSA key', 'ES256', pem(rsa.privateKey)],
      ['RS256 with a P-256 key', 'RS256', pem(ec.privateKey)],
      ['RS256 with a 1024-bit RSA key', 'RS256', pem(generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey)],
      ['ES256 with a P-384 key', 'ES256', pem(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey)],
    ] as const)('names signingAlgorithm for %s', async (_name, algorithm, privateKeyPem) => {
      // Act
      const error = await misconfiguration(
        signJwt({ now: NOW }, { ...document, signingAlgorithm: algorithm, signingKey: { privateKeyPem } }, {}),
      );

      // Assess
      expect(error.message).toContain('"signingAlgorithm"');
    });
  });

  describe('with kmsKeyId (KMS Sign)', () => {
    const kms = new InProcessKms({ 'alias/rsa': rsa.privateKey, 'alias/ec': ec.privateKey });

    it.each([
      ['RS256', 'alias/rsa', rsa.publicKey, 'RSASSA_PKCS1_V1_5_SHA_256'],
      ['PS256', 'alias/rsa', rsa.publicKey, 'RSASSA_PSS_SHA_256'],
      ['ES256', 'alias/ec', ec.publicKey, 'ECDSA_SHA_256'],
    ] as const)(
      'signs %s with KMS algorithm %s, the signature in JOSE form',
      async (algorithm, keyId, publicKey, kmsAlgorithm) => {
        // Prepare
        const claims = clientAssertionClaims(document, Date.now());

        // Act
        const jwt = await signJwt(
          { now: Date.now(), kms },
          { ...document, signingAlgorithm: algorithm, signingKey: { kmsKeyId: keyId } },
          claims,
        );

        // Assess
        const { payload, protectedHeader } = await jwtVerify(jwt, publicKey, { algorithms: [algorithm] });
        expect(payload).toEqual(claims);
        expect(protectedHeader).toEqual({ alg: algorithm, typ: 'JWT' });
        const request = kms.requests.at(-1);
        expect(request?.algorithm).toBe(kmsAlgorithm);
        expect(request?.keyId).toBe(keyId);
        // KMS signed the JWS Signing Input itself (RFC 7515 §5.1), not a digest of it.
        expect(new TextDecoder().decode(request?.message)).toBe(jwt.slice(0, jwt.lastIndexOf('.')));
      },
    );

    it('names signingAlgorithm when an ECDSA signature does not fit P-256 (a key on another curve)', async () => {
      // Prepare
      const p384 = new InProcessKms({ 'alias/p384': generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey });

      // Act
      const error = await misconfiguration(
        signJwt(
          { now: NOW, kms: p384 },
          { ...document, signingAlgorithm: 'ES256', signingKey: { kmsKeyId: 'alias/p384' } },
          {},
        ),
      );

      // Assess
      expect(error.message).toContain('"signingAlgorithm"');
    });

    it('names assertionClaims when the assertion is longer than KMS signs', async () => {
      // Act
      const error = await misconfiguration(
        signJwt({ now: NOW, kms }, { ...document, signingKey: { kmsKeyId: 'alias/rsa' } }, { big: 'x'.repeat(4000) }),
      );

      // Assess
      expect(error.message).toContain('"assertionClaims"');
    });
  });
});
