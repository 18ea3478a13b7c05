import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoAuthServer, startDemoAuthServer } from '../../local/demo-auth-server.ts';
import { createKmsClient } from '../../shared/adapters/aws-clients.ts';
import { KmsSignerAdapter } from '../../shared/adapters/kms-signer.ts';
import { type Family, JWT_BEARER_GRANT_TYPE } from '../../shared/core/identifiers.ts';
import { grantAssertionClaims, signJwt } from '../../shared/domain/oauth/assertion.ts';
import { CALLER_ROLE, CapturedLog, type Harness, runSchedule, startHarness } from '../support/harness.ts';
import { type KmsServer, startKmsServer } from '../support/kms-server.ts';
import { prepareLocalFixture, signedFetch, startLocalMode } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const KEYS = 'arn:aws:kms:eu-west-1:444455556666:key';
const EC_ARN = `${KEYS}/3f1e2d3c-4b5a-4697-8877-665544332211`;
const RSA_ARN = `${KEYS}/4f1e2d3c-4b5a-4697-8877-665544332211`;
const DENIED_ARN = `${KEYS}/5f1e2d3c-4b5a-4697-8877-665544332211`;
const PASSWORD = 'made-up.password.4711';

const pemOf = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString();
const jwkOf = (key: KeyObject): JWK =>
  (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'jwk' }) as JWK;

async function refusal(attempt: Promise<unknown>) {
  return attempt.then(
    () => {
      throw new Error('expected the vend to fail');
    },
    (error: unknown) => error as { code: string; status: number; message: string; upstreamError?: string },
  );
}

describe('Integration: signed assertions (private_key_jwt, the JWT bearer grant) with KMS keys and PEM keys', () => {
  let kms: KmsServer;
  let oidc: OidcServer;
  let salesforce: DemoAuthServer;
  let harness: Harness;
  let ecPublic: KeyObject;
  let rsaPublic: KeyObject;
  const pem = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const unregistered = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kmsClient = () =>
    createKmsClient({
      endpoint: kms.endpoint,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIAJWTASSERTIONS01', secretAccessKey: 'test' },
    });
  const vendor = () => harness.vendor({ kms: new KmsSignerAdapter(kmsClient()) });

  beforeAll(async () => {
    kms = await startKmsServer();
    ecPublic = kms.addSigningKey(EC_ARN, 'ECC_NIST_P256');
    rsaPublic = kms.addSigningKey(RSA_ARN, 'RSA_2048');
    kms.addSigningKey(DENIED_ARN, 'ECC_NIST_P256');
    kms.denyKey(DENIED_ARN);
    kms.addAlias('alias/vendor-ec', EC_ARN);
    const privateKeyJwt = (
      client_id: string,
      grant: (typeof JWT_BEARER_GRANT_TYPE | 'client_credentials')[] | string[],
      keys: KeyObject[],
    ) => ({
      client_id,
      token_endpoint_auth_method: 'private_key_jwt' as const,
      jwks: { keys: keys.map(jwkOf) },
      grant_types: grant as ('client_credentials' | 'refresh_token' | 'password' | typeof JWT_BEARER_GRANT_TYPE)[],
      scope: 'openid offline_access read write',
    });
    oidc = await startOidcServer({
      clients: [
        privateKeyJwt('pkj-client-credentials', ['client_credentials'], [ecPublic]),
        privateKeyJwt('pkj-password', ['password'], [ecPublic]),
        privateKeyJwt('pkj-refresh-token', ['refresh_token'], [ecPublic]),
        privateKeyJwt('pkj-jwt-bearer', [JWT_BEARER_GRANT_TYPE], [ecPublic]),
        privateKeyJwt('pkj-pem', ['client_credentials'], [pem.publicKey]),
        privateKeyJwt('pkj-pss', ['client_credentials'], [rsaPublic]),
      ],
      users: { alice: PASSWORD },
      assertionIssuers: { 'pkj-jwt-bearer-issuer': ecPublic },
    });
    salesforce = await startDemoAuthServer({
      clients: [{ id: 'connected-app', grants: [JWT_BEARER_GRANT_TYPE] }],
      assertionIssuers: { 'consumer-key': { clientId: 'connected-app', publicKey: rsaPublic } },
      accessTokenLifetime: 900,
    });
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness?.close();
    await salesforce?.close();
    await oidc?.close();
    await kms?.close();
  });

  describe('private_key_jwt client authentication against oidc-provider', () => {
    const connectorOf = async (family: Family) => {
      const clientId = `pkj-${family}`;
      const common = {
        tokenUrl: oidc.tokenUrl,
        clientId,
        clientAuthentication: 'private_key_jwt',
        signingKey: { kmsKeyId: 'alias/vendor-ec' },
        signingAlgorithm: 'ES256',
        allowedPrincipals: [CALLER_ROLE],
      };
      switch (family) {
        case 'client-credentials':
          return { ...common, grantType: 'client_credentials', scope: 'read' };
        case 'password':
          return { ...common, grantType: 'password', username: 'alice', password: PASSWORD, scope: 'read' };
        case 'refresh-token':
          return { ...common, grantType: 'refresh_token', refreshToken: await oidc.issueRefreshToken(clientId) };
        case 'jwt-bearer':
          return { ...common, grantType: 'jwt_bearer', assertionIssuer: 'pkj-jwt-bearer-issuer', scope: 'read' };
      }
    };

    it.each(['client-credentials', 'password', 'refresh-token', 'jwt-bearer'] as const)(
      'vends a %s token with a client assertion signed by a KMS key (ES256), twice without a replay',
      async (family) => {
        // Prepare
        await harness.writeConnector(family, 'kms-signed', await connectorOf(family));
        const signsBefore = kms.calls.get('Sign') ?? 0;
        const requestsBefore = oidc.tokenRequests();

        // Act
        const first = await vendor().vend(family, 'kms-signed');
        const forced = await vendor().vend(family, 'kms-signed', { force: true });

        // Assess
        expect(first.access_token).toBeTruthy();
        expect(forced.access_token).not.toBe(first.access_token);
        expect(oidc.tokenRequests() - requestsBefore).toBe(2);
        // The JWT bearer grant signs its own assertion besides the client's.
        expect((kms.calls.get('Sign') ?? 0) - signsBefore).toBe(family === 'jwt-bearer' ? 4 : 2);
        expect(oidc.errors()).toEqual([]);
      },
    );

    it('authenticates with a PKCS#8 key held in the document (RS256, signed in process)', async () => {
      // Prepare
      await harness.writeConnector('client-credentials', 'pem-signed', {
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'pkj-pem',
        clientAuthentication: 'private_key_jwt',
        signingKey: { privateKeyPem: pemOf(pem.privateKey) },
        allowedPrincipals: [CALLER_ROLE],
      });
      const signsBefore = kms.calls.get('Sign') ?? 0;

      // Act
      const token = await vendor().vend('client-credentials', 'pem-signed');

      // Assess
      expect(token.access_token).toBeTruthy();
      expect(kms.calls.get('Sign') ?? 0).toBe(signsBefore);
    });

    it('authenticates with PS256 from an RSA KMS key', async () => {
      // Prepare
      await harness.writeConnector('client-credentials', 'pss-signed', {
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'pkj-pss',
        clientAuthentication: 'private_key_jwt',
        signingKey: { kmsKeyId: RSA_ARN },
        signingAlgorithm: 'PS256',
        allowedPrincipals: [CALLER_ROLE],
      });

      // Act
      const token = await vendor().vend('client-credentials', 'pss-signed');

      // Assess
      expect(token.access_token).toBeTruthy();
    });

    it('reports a key the server does not hold as upstream_rejected invalid_client naming the key fields', async () => {
      // Prepare
      const log = new CapturedLog();
      const privateKeyPem = pemOf(unregistered.privateKey);
      await harness.writeConnector('client-credentials', 'unregistered-key', {
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'pkj-client-credentials',
        clientAuthentication: 'private_key_jwt',
        signingKey: { privateKeyPem },
        signingAlgorithm: 'ES256',
        allowedPrincipals: [CALLER_ROLE],
      });

      // Act
      const error = await refusal(
        harness.vendor({ log, kms: new KmsSignerAdapter(kmsClient()) }).vend('client-credentials', 'unregistered-key'),
      );

      // Assess
      expect(error).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamError: 'invalid_client' });
      expect(error.message).toContain('signingKey');
      const keyLine = privateKeyPem.split('\n')[1] ?? '';
      expect(JSON.stringify(error)).not.toContain(keyLine);
      expect(log.lines.join('\n')).not.toContain(keyLine);
    });
  });

  describe('the JWT bearer grant, Salesforce style (no client authentication), against @node-oauth/oauth2-server', () => {
    const connector = (extra: object = {}) => ({
      grantType: 'jwt_bearer',
      tokenUrl: salesforce.tokenUrl,
      clientId: 'connected-app',
      assertionIssuer: 'consumer-key',
      assertionSubject: 'integration@example.com',
      signingKey: { kmsKeyId: RSA_ARN },
      allowedPrincipals: [CALLER_ROLE],
      ...extra,
    });

    it('sends an assertion the server verifies: iss, sub, aud the token URL, exp 2 minutes on, a jti', async () => {
      // Prepare
      await harness.writeConnector('jwt-bearer', 'salesforce', connector());

      // Act
      const token = await vendor().vend('jwt-bearer', 'salesforce');

      // Assess
      expect(token.access_token).toBeTruthy();
      expect(token.expires_in).toBeLessThanOrEqual(900);
      const claims = salesforce.acceptedAssertions().at(-1);
      expect(claims).toMatchObject({ iss: 'consumer-key', sub: 'integration@example.com', aud: salesforce.tokenUrl });
      expect((claims?.exp ?? 0) - (claims?.iat ?? 0)).toBe(120);
      expect(claims?.jti).toEqual(expect.any(String));
    });

    it('caches the token: a second vend signs nothing and asks the server nothing', async () => {
      // Prepare
      await harness.writeConnector('jwt-bearer', 'cached', connector());
      const shared = vendor();
      await shared.vend('jwt-bearer', 'cached');
      const signs = kms.calls.get('Sign');
      const accepted = salesforce.acceptedAssertions().length;

      // Act
      await shared.vend('jwt-bearer', 'cached');

      // Assess
      expect(kms.calls.get('Sign')).toBe(signs);
      expect(salesforce.acceptedAssertions().length).toBe(accepted);
    });

    it("keeps a prewarm connector's token fresh from the schedule, signing with KMS, so the first vend signs nothing", async () => {
      // Prepare: a folder of its own, so the schedule sees this connector alone.
      const own = await startHarness();
      try {
        await own.writeConnector('jwt-bearer', 'prewarmed', connector({ prewarm: true }));
        const container = own.vendor({ kms: new KmsSignerAdapter(kmsClient()) });
        const accepted = salesforce.acceptedAssertions().length;

        // Act
        const report = await runSchedule(container.deps);
        const signs = kms.calls.get('Sign');
        const token = await container.vend('jwt-bearer', 'prewarmed');

        // Assess
        expect(report.health.find((entry) => entry.connector === 'jwt-bearer/prewarmed')).toMatchObject({
          state: 'ok',
        });
        expect(salesforce.acceptedAssertions().length).toBe(accepted + 1);
        expect(token.access_token).toBeTruthy();
        expect(kms.calls.get('Sign')).toBe(signs);
      } finally {
        await own.close();
      }
    });

    it.each([
      ['signed by a key the server does not trust', { signingKey: { privateKeyPem: pemOf(pem.privateKey) } }],
      ['for another audience', { assertionAudience: 'https://login.salesforce.com' }],
    ])(
      'reports an assertion %s as upstream_rejected invalid_grant naming the assertion fields',
      async (_name, change) => {
        // Prepare
        const connectorId = `refused-${Object.keys(change)[0]}`;
        await harness.writeConnector('jwt-bearer', connectorId, connector(change));

        // Act
        const error = await refusal(vendor().vend('jwt-bearer', connectorId));

        // Assess
        expect(error).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamError: 'invalid_grant' });
        expect(error.message).toContain('signingKey');
        expect(error.message).toContain('assertionAudience');
      },
    );

    it('is a server that refuses a replayed assertion and an expired one (what the vendor is tested against)', async () => {
      // Prepare
      const signing = { kms: new KmsSignerAdapter(kmsClient()), now: Date.now() };
      const document = { ...connector(), grantType: 'jwt_bearer' as const, signingKey: { kmsKeyId: RSA_ARN } };
      const assertion = await signJwt(signing, document, grantAssertionClaims(document, Date.now()));
      const expired = await signJwt(signing, document, grantAssertionClaims(document, Date.now() - 3_600_000));
      const post = (jwt: string) =>
        fetch(salesforce.tokenUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: JWT_BEARER_GRANT_TYPE, assertion: jwt }),
        }).then(async (response) => ({ status: response.status, body: (await response.json()) as { error?: string } }));

      // Act
      const first = await post(assertion);
      const replayed = await post(assertion);
      const late = await post(expired);

      // Assess
      expect(first.status).toBe(200);
      expect(replayed).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
      expect(late).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    });
  });

  describe('local mode', () => {
    it("signs through the KMS the SDK's own AWS_ENDPOINT_URL_KMS names", async () => {
      // Prepare
      const caller = {
        accessKeyId: 'AKIAJWTLOCALMODE01',
        secretAccessKey: 'made-up.local-mode.4711',
        arn: 'arn:aws:iam::111122223333:user/jwt-local',
      };
      const fixture = await prepareLocalFixture(
        {
          'jwt-bearer/salesforce': {
            grantType: 'jwt_bearer',
            tokenUrl: salesforce.tokenUrl,
            clientId: 'connected-app',
            assertionIssuer: 'consumer-key',
            signingKey: { kmsKeyId: RSA_ARN },
            allowedPrincipals: [caller.arn],
          },
        },
        { caller },
      );
      const local = await startLocalMode({ ...fixture.env, AWS_ENDPOINT_URL_KMS: kms.endpoint });
      const signsBefore = kms.calls.get('Sign') ?? 0;
      try {
        // Act
        const response = await signedFetch(`${local.url}/tokens/jwt-bearer/salesforce`, caller);

        // Assess
        expect(response.status).toBe(200);
        expect(((await response.json()) as { access_token?: string }).access_token).toBeTruthy();
        expect((kms.calls.get('Sign') ?? 0) - signsBefore).toBe(1);
      } finally {
        await local.stop();
        await fixture.cleanup();
      }
    });
  });

  describe('KMS keys that cannot sign', () => {
    it('answers a key KMS denies with 500 connector_misconfigured naming signingKey, and sends nothing', async () => {
      // Prepare
      await harness.writeConnector('client-credentials', 'denied-key', {
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'pkj-client-credentials',
        clientAuthentication: 'private_key_jwt',
        signingKey: { kmsKeyId: DENIED_ARN },
        signingAlgorithm: 'ES256',
        allowedPrincipals: [CALLER_ROLE],
      });
      const before = oidc.tokenRequests();

      // Act
      const error = await refusal(vendor().vend('client-credentials', 'denied-key'));

      // Assess
      expect(error).toMatchObject({ code: 'connector_misconfigured', status: 500 });
      expect(error.message).toContain('"signingKey"');
      expect(error.message).not.toContain(DENIED_ARN);
      expect(oidc.tokenRequests()).toBe(before);
    });

    it('answers a throttled KMS with 503 upstream_unavailable, and sends nothing', async () => {
      // Prepare
      await harness.writeConnector('jwt-bearer', 'throttled', {
        grantType: 'jwt_bearer',
        tokenUrl: salesforce.tokenUrl,
        clientId: 'connected-app',
        assertionIssuer: 'consumer-key',
        signingKey: { kmsKeyId: RSA_ARN },
        allowedPrincipals: [CALLER_ROLE],
      });
      // Every attempt: the SDK's two for each of the vendor's three.
      kms.failNext('Sign', 'ThrottlingException', 6);
      const before = salesforce.acceptedAssertions().length;

      // Act
      const error = await refusal(vendor().vend('jwt-bearer', 'throttled'));

      // Assess
      expect(error).toMatchObject({ code: 'upstream_unavailable', status: 503 });
      expect(salesforce.acceptedAssertions().length).toBe(before);
      kms.failNext('Sign', 'ThrottlingException', 0);
    });
  });
});
