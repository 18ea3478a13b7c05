import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalCluster, signedFetch, startLocalCluster } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const CALLER = {
  accessKeyId: 'AKIASTAMPEDE',
  secretAccessKey: 'stampede-secret',
  arn: 'arn:aws:iam::111122223333:user/load',
};

describe('Single flight across containers', () => {
  let oidc: OidcServer;
  let cluster: LocalCluster;

  beforeAll(async () => {
    // A slow token server widens the window in which every process would otherwise fetch its own token.
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'stampede',
          client_secret: 'stampede-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read',
        },
      ],
      delayMs: 300,
    });
    const hot = {
      grantType: 'client_credentials',
      tokenUrl: oidc.tokenUrl,
      clientId: 'stampede',
      clientSecret: 'stampede-secret',
      scope: 'read',
      allowedPrincipals: ['111122223333'],
    };
    cluster = await startLocalCluster({ 'client-credentials/hot': hot }, { CALLER }, { processes: 4 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
    await oidc?.close();
  });

  it('answers 200 concurrent cold vends through 4 processes with exactly one token request', async () => {
    // Act
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, index) =>
        signedFetch(
          `${cluster.processes[index % cluster.processes.length]?.url}/tokens/client-credentials/hot`,
          CALLER,
        ).then(async (response) => ({
          status: response.status,
          body: (await response.json()) as { access_token?: string },
        })),
      ),
    );

    // Assess
    expect(responses.filter((response) => response.status === 200)).toHaveLength(200);
    expect(new Set(responses.map((response) => response.body.access_token)).size).toBe(1);
    expect(oidc.tokenRequests()).toBe(1);
  });
});
