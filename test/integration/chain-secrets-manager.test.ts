import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretsManagerClient } from '../../shared/adapters/aws-clients.ts';
import { SecretsManagerConnectorSource } from '../../shared/adapters/secrets-manager-connector-store.ts';
import { CALLER_ROLE, type Harness, localCredentials, runSchedule, startHarness } from '../support/harness.ts';
import { startOidcServer } from '../support/oidc.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from '../support/secrets-manager-server.ts';

/** In AWS the document is a secret: the chain must not write it on every rotation (one PutSecretValue per 10 min). */
describe('Refresh-token chain with connectors in Secrets Manager', () => {
  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness?.close();
  });

  it('writes the document back at most once while 4-second tokens rotate for a minute (Secrets Manager)', async () => {
    // Prepare: connectors in a loopback Secrets Manager, read and written through the real SDK client.
    const secretsManager: SecretsManagerServer = await startSecretsManagerServer();
    const short = await startOidcServer({
      clients: [
        {
          client_id: 'short',
          client_secret: 'short-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
      accessTokenTtl: 4,
    });
    const name = 'tv/refresh-token/short-lived';
    secretsManager.put(
      name,
      JSON.stringify({
        grantType: 'refresh_token',
        tokenUrl: short.tokenUrl,
        clientId: 'short',
        clientSecret: 'short-secret',
        refreshToken: await short.issueRefreshToken('short'),
        allowedPrincipals: [CALLER_ROLE],
      }),
    );
    const source = () =>
      new SecretsManagerConnectorSource({
        client: createSecretsManagerClient({
          endpoint: secretsManager.endpoint,
          region: 'us-east-1',
          credentials: localCredentials,
        }),
        prefix: 'tv',
      });
    // Two containers and the schedule, as in AWS.
    const scheduler = harness.vendor({ source: source() });
    const containers = [scheduler, harness.vendor({ source: source() })];
    const failures: unknown[] = [];
    let vends = 0;

    // Act
    try {
      const deadline = Date.now() + 60_000;
      await Promise.all([
        ...containers.map(async (container) => {
          while (Date.now() < deadline) {
            await container.vend('refresh-token', 'short-lived').then(
              () => (vends += 1),
              (error: unknown) => failures.push(error),
            );
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }),
        (async () => {
          while (Date.now() < deadline) {
            await runSchedule(scheduler.deps);
            await new Promise((resolve) => setTimeout(resolve, 1_000));
          }
        })(),
      ]);
    } finally {
      await short.close();
      await secretsManager.close();
    }

    // Assess
    expect(failures).toEqual([]);
    expect(vends).toBeGreaterThan(300);
    expect(short.issuedRefreshTokens().length).toBeGreaterThan(12);
    expect(short.reuses()).toBe(0);
    expect(secretsManager.putsBySecret.get(name) ?? 0).toBeLessThanOrEqual(1);
  }, 90_000);
});
