import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetPublicKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { importSPKI, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKmsClient } from '../../shared/adapters/aws-clients.ts';
import { KmsSignerAdapter } from '../../shared/adapters/kms-signer.ts';
import { VendorError } from '../../shared/core/errors.ts';
import type { ConnectorDocument } from '../../shared/domain/connector.ts';
import { clientAssertionClaims, signJwt } from '../../shared/domain/oauth/assertion.ts';
import { type KmsServer, startKmsServer } from '../support/kms-server.ts';

const ACCOUNT = 'arn:aws:kms:eu-west-1:444455556666';
const RSA_ARN = `${ACCOUNT}:key/11111111-2222-4333-8444-555555555555`;
const EC_ARN = `${ACCOUNT}:key/66666666-7777-4888-9999-aaaaaaaaaaaa`;
const P384_ARN = `${ACCOUNT}:key/bbbbbbbb-cccc-4ddd-8eee-ffffffffffff`;
const SYMMETRIC_ARN = `${ACCOUNT}:key/0b9d4c3e-2f1a-4e5d-8c7b-6a5f4e3d2c1b`;
const DISABLED_ARN = `${ACCOUNT}:key/0c9d4c3e-2f1a-4e5d-8c7b-6a5f4e3d2c1b`;
const DENIED_ARN = `${ACCOUNT}:key/0d9d4c3e-2f1a-4e5d-8c7b-6a5f4e3d2c1b`;

const document: ConnectorDocument = {
  grantType: 'client_credentials',
  tokenUrl: 'https://idp.example.com/oauth2/token',
  clientId: 'kms-client',
  clientAuthentication: 'private_key_jwt',
  signingKey: { kmsKeyId: RSA_ARN },
  allowedPrincipals: ['*'],
};

const clientFor = (endpoint: string) =>
  createKmsClient({
    endpoint,
    region: 'eu-west-1',
    credentials: { accessKeyId: 'AKIAKMSSIGNERTEST01', secretAccessKey: 'test' },
  });

async function failure(attempt: Promise<unknown>): Promise<VendorError> {
  const error = await attempt.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(VendorError);
  return error as VendorError;
}

describe('Class: KmsSignerAdapter (the real KMS client against the loopback KMS)', () => {
  let kms: KmsServer;
  let client: KMSClient;
  let signer: KmsSignerAdapter;

  beforeAll(async () => {
    kms = await startKmsServer();
    kms.addSigningKey(RSA_ARN, 'RSA_2048');
    kms.addSigningKey(EC_ARN, 'ECC_NIST_P256');
    kms.addSigningKey(P384_ARN, 'ECC_NIST_P384');
    kms.addSigningKey(DISABLED_ARN, 'ECC_NIST_P256');
    kms.addSigningKey(DENIED_ARN, 'ECC_NIST_P256');
    kms.addKey(SYMMETRIC_ARN);
    kms.addAlias('alias/token-vendor-signing', EC_ARN);
    kms.disableKey(DISABLED_ARN);
    kms.denyKey(DENIED_ARN);
    client = clientFor(kms.endpoint);
    signer = new KmsSignerAdapter(client);
  });
  afterAll(async () => {
    client?.destroy();
    await kms?.close();
  });

  /** The key's public half as KMS hands it out (GetPublicKey), which is what an operator registers. */
  async function publicKeyOf(keyId: string, algorithm: string) {
    const answer = await client.send(new GetPublicKeyCommand({ KeyId: keyId }));
    const der = Buffer.from(answer.PublicKey ?? new Uint8Array()).toString('base64');
    return importSPKI(`-----BEGIN PUBLIC KEY-----\n${der}\n-----END PUBLIC KEY-----`, algorithm);
  }

  it.each([
    ['RS256', RSA_ARN],
    ['PS256', RSA_ARN],
    ['ES256', EC_ARN],
    ['ES256', 'alias/token-vendor-signing'],
    ['ES256', `${ACCOUNT}:alias/token-vendor-signing`],
  ] as const)('signs %s with %s: the JWT verifies under the key GetPublicKey gives', async (algorithm, keyId) => {
    // Prepare
    const claims = clientAssertionClaims(document, Date.now());

    // Act
    const jwt = await signJwt(
      { kms: signer, now: Date.now() },
      { ...document, signingAlgorithm: algorithm, signingKey: { kmsKeyId: keyId } },
      claims,
    );

    // Assess
    const { payload } = await jwtVerify(jwt, await publicKeyOf(keyId, algorithm), { algorithms: [algorithm] });
    expect(payload).toEqual(claims);
    const signs = kms.requests.filter((request) => request.operation === 'Sign');
    expect(signs.at(-1)).toMatchObject({ keyId, error: undefined });
  });

  it.each([
    ['a denied key', DENIED_ARN, 'ES256', 'signingKey', 'denied'],
    ['an unknown key', `${ACCOUNT}:key/99999999-9999-4999-8999-999999999999`, 'ES256', 'signingKey', 'no KMS key'],
    ['a disabled key', DISABLED_ARN, 'ES256', 'signingKey', 'disabled'],
    ['a symmetric key', SYMMETRIC_ARN, 'RS256', 'signingAlgorithm', 'does not fit'],
    ['ES256 on an RSA key', RSA_ARN, 'ES256', 'signingAlgorithm', 'does not fit'],
    ['RS256 on a P-256 key', EC_ARN, 'RS256', 'signingAlgorithm', 'does not fit'],
    ['ES256 on a P-384 key', P384_ARN, 'ES256', 'signingAlgorithm', 'does not fit'],
  ] as const)(
    'answers %s with connector_misconfigured naming the field',
    async (_name, keyId, algorithm, field, problem) => {
      // Act
      const error = await failure(
        signJwt(
          { kms: signer, now: Date.now() },
          { ...document, signingAlgorithm: algorithm, signingKey: { kmsKeyId: keyId } },
          {},
        ),
      );

      // Assess
      expect(error.code).toBe('connector_misconfigured');
      expect(error.status).toBe(500);
      expect(error.message).toContain(`"${field}"`);
      expect(error.message).toContain(problem);
      // The key is the operator's to look up: no ARN, no key ID in the description.
      expect(error.message).not.toContain(keyId);
      expect(error.message).not.toMatch(/arn:|[0-9a-f]{8}-[0-9a-f]{4}/);
    },
  );

  it('answers a throttled KMS (every attempt the SDK makes) with upstream_unavailable', async () => {
    // Prepare
    kms.failNext('Sign', 'ThrottlingException', 2);

    // Act
    const error = await failure(signer.sign({ keyId: EC_ARN, algorithm: 'ECDSA_SHA_256', message: Uint8Array.of(1) }));

    // Assess
    expect(error.code).toBe('upstream_unavailable');
    expect(error.status).toBe(503);
  });

  it('lets the SDK retry one throttle and signs', async () => {
    // Prepare
    kms.failNext('Sign', 'ThrottlingException', 1);

    // Act
    const signature = await signer.sign({ keyId: EC_ARN, algorithm: 'ECDSA_SHA_256', message: Uint8Array.of(1) });

    // Assess
    expect(signature.length).toBeGreaterThan(60);
  });

  it('answers an unreachable KMS with upstream_unavailable', async () => {
    // Prepare
    const dead: Server = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const { port } = dead.address() as AddressInfo;
    await new Promise((resolve) => dead.close(resolve));
    const unreachable = clientFor(`http://127.0.0.1:${port}`);

    // Act
    const error = await failure(
      new KmsSignerAdapter(unreachable).sign({ keyId: EC_ARN, algorithm: 'ECDSA_SHA_256', message: Uint8Array.of(1) }),
    );

    // Assess
    expect(error.code).toBe('upstream_unavailable');
    unreachable.destroy();
  });

  it('answers a KMS that accepts and never answers with upstream_unavailable, within its bounds', async () => {
    // Prepare
    const silent: Server = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const hung = createKmsClient(
      {
        endpoint: `http://127.0.0.1:${port}`,
        region: 'eu-west-1',
        credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
      },
      { connectionTimeoutMs: 200, requestTimeoutMs: 200, maxAttempts: 1 },
    );

    // Act
    const error = await failure(
      new KmsSignerAdapter(hung).sign({ keyId: EC_ARN, algorithm: 'ECDSA_SHA_256', message: Uint8Array.of(1) }),
    );

    // Assess
    expect(error.code).toBe('upstream_unavailable');
    hung.destroy();
    silent.closeAllConnections();
    await new Promise((resolve) => silent.close(resolve));
  });
});
