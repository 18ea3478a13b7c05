import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  clientRequestToken,
  SecretsManagerConnectorSource,
} from '../../shared/adapters/secrets-manager-connector-store.ts';
import { CALLER_ROLE, type Harness, localCredentials, startHarness } from '../support/harness.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from '../support/secrets-manager-server.ts';

describe('Class: SecretsManagerConnectorSource', () => {
  let secretsManager: SecretsManagerServer;
  let client: SecretsManagerClient;

  beforeAll(async () => {
    secretsManager = await startSecretsManagerServer();
    client = new SecretsManagerClient({
      endpoint: secretsManager.endpoint,
      region: 'us-east-1',
      credentials: localCredentials,
      maxAttempts: 1,
    });
  });
  afterAll(async () => {
    client.destroy();
    await secretsManager.close();
  });

  it('reads `<prefix>/<family>/<id>` and caches it for the max age', async () => {
    // Prepare
    secretsManager.put('tv/client-credentials/crm', '{"a":1}');
    const source = new SecretsManagerConnectorSource({ client, prefix: 'tv', maxAgeSeconds: 30 });
    const before = secretsManager.calls.get('GetSecretValue') ?? 0;

    // Act
    const first = await source.read({ family: 'client-credentials', connectorId: 'crm' });
    const second = await source.read({ family: 'client-credentials', connectorId: 'crm' });
    const fresh = await source.read({ family: 'client-credentials', connectorId: 'crm' }, { fresh: true });

    // Assess
    expect([first, second, fresh]).toEqual(['{"a":1}', '{"a":1}', '{"a":1}']);
    expect((secretsManager.calls.get('GetSecretValue') ?? 0) - before).toBe(2);
  });

  it('reports a missing secret as no connector, and throttling as the store being unavailable', async () => {
    // Prepare
    const source = new SecretsManagerConnectorSource({ client, prefix: 'tv' });

    // Act
    const missing = await source.read({ family: 'password', connectorId: 'none' });
    secretsManager.throttled.add('GetSecretValue');
    const throttled = await source.read({ family: 'password', connectorId: 'other' }).catch((error: unknown) => error);
    secretsManager.throttled.delete('GetSecretValue');

    // Assess
    expect(missing).toBeUndefined();
    expect(throttled).toMatchObject({ code: 'upstream_unavailable', status: 503 });
  });

  it('writes a rotated refresh token as a new version, idempotently, keeping every other field', async () => {
    // Prepare
    secretsManager.put(
      'tv/refresh-token/mail',
      JSON.stringify({ grantType: 'refresh_token', clientId: 'c', refreshToken: 'old' }),
    );
    const source = new SecretsManagerConnectorSource({ client, prefix: 'tv' });

    // Act
    const first = await source.writeRefreshToken(
      { family: 'refresh-token', connectorId: 'mail' },
      'new-token',
      () => true,
    );
    const again = await source.writeRefreshToken(
      { family: 'refresh-token', connectorId: 'mail' },
      'new-token',
      () => true,
    );
    const stored = secretsManager.secrets.get('tv/refresh-token/mail');

    // Assess
    expect(JSON.parse(stored?.value ?? '{}')).toEqual({
      grantType: 'refresh_token',
      clientId: 'c',
      refreshToken: 'new-token',
    });
    expect(stored?.versionId).toBe(clientRequestToken('new-token'));
    expect(clientRequestToken('new-token')).toMatch(/^[0-9a-f]{64}$/);
    expect(await source.read({ family: 'refresh-token', connectorId: 'mail' })).toContain('new-token');
    expect([first, again]).toEqual(['written', 'written']);
  });

  it("never writes over a refresh token the vendor did not hold (an operator's re-authorization)", async () => {
    // Prepare
    secretsManager.put(
      'tv-reauth/refresh-token/reauthorized',
      JSON.stringify({ grantType: 'refresh_token', clientId: 'c', refreshToken: 'from-operator' }),
    );
    const source = new SecretsManagerConnectorSource({ client, prefix: 'tv-reauth' });
    const seen: (string | undefined)[] = [];

    // Act
    const result = await source.writeRefreshToken(
      { family: 'refresh-token', connectorId: 'reauthorized' },
      'from-vendor',
      (current) => {
        seen.push(current);
        return false;
      },
    );

    // Assess
    expect(result).toBe('refused');
    expect(seen).toEqual(['from-operator']);
    expect(secretsManager.secrets.get('tv-reauth/refresh-token/reauthorized')?.value).toContain('from-operator');
  });

  it('lists every connector under the prefix across pages, skipping names that are not connectors', async () => {
    // Prepare
    secretsManager.put('tv/password/hr', '{}');
    secretsManager.put('tv/unknown-family/x', '{}');
    secretsManager.put('tv/client-credentials/bad id', '{}');
    secretsManager.put('other/client-credentials/elsewhere', '{}');
    const source = new SecretsManagerConnectorSource({ client, prefix: 'tv' });

    // Act
    const refs = await source.list();

    // Assess
    expect(refs.map((ref) => `${ref.family}/${ref.connectorId}`).sort()).toEqual([
      'client-credentials/crm',
      'password/hr',
      'refresh-token/mail',
    ]);
  });
});

describe('Integration: vending with connectors in Secrets Manager', () => {
  let secretsManager: SecretsManagerServer;
  let oidc: OidcServer;
  let harness: Harness;

  beforeAll(async () => {
    secretsManager = await startSecretsManagerServer();
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'sm-rt',
          client_secret: 'sm-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
    });
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await oidc.close();
    await secretsManager.close();
  });

  it('rotates a refresh token into the secret and reads no secret per request once warm', async () => {
    // Prepare
    const original = await oidc.issueRefreshToken('sm-rt');
    secretsManager.put(
      'token-vendor/refresh-token/mail',
      JSON.stringify({
        grantType: 'refresh_token',
        tokenUrl: oidc.tokenUrl,
        clientId: 'sm-rt',
        clientSecret: 'sm-secret',
        refreshToken: original,
        allowedPrincipals: [CALLER_ROLE],
      }),
    );
    const client = new SecretsManagerClient({
      endpoint: secretsManager.endpoint,
      region: 'us-east-1',
      credentials: localCredentials,
    });
    const vendor = harness.vendor({
      source: new SecretsManagerConnectorSource({ client, maxAgeSeconds: 30 }),
      env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' },
    });

    // Act
    const first = await vendor.vend('refresh-token', 'mail');
    const readsAfterFirst = secretsManager.calls.get('GetSecretValue') ?? 0;
    for (let index = 0; index < 5; index += 1) await vendor.vend('refresh-token', 'mail');
    const readsWarm = (secretsManager.calls.get('GetSecretValue') ?? 0) - readsAfterFirst;
    const forced = await vendor.vend('refresh-token', 'mail', { force: true });

    // Assess
    const stored = JSON.parse(secretsManager.secrets.get('token-vendor/refresh-token/mail')?.value ?? '{}') as {
      refreshToken: string;
    };
    expect(first.access_token).toBeTruthy();
    expect(forced.access_token).not.toBe(first.access_token);
    // Served from the cache, a vend is authorized by the profile beside the token: no secret is read.
    expect(readsWarm).toBe(0);
    expect(stored.refreshToken).not.toBe(original);
    expect(oidc.reuses()).toBe(0);
    client.destroy();
  });
});
