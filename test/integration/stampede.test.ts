import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import {
  type LocalFixture,
  type LocalMode,
  prepareLocalFixture,
  signedFetch,
  startLocalMode,
} from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const CALLER = {
  accessKeyId: 'AKIASTAMPEDE',
  secretAccessKey: 'stampede-secret',
  arn: 'arn:aws:iam::111122223333:user/load',
};

describe('Single flight across containers', () => {
  let oidc: OidcServer;
  let dynamo: EmbeddedDynamoDB;
  let fixture: LocalFixture;
  let processes: LocalMode[] = [];

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
    dynamo = await startEmbeddedDynamoDB();
    fixture = await prepareLocalFixture(
      {
        'client-credentials/hot': {
          grantType: 'client_credentials',
          tokenUrl: oidc.tokenUrl,
          clientId: 'stampede',
          clientSecret: 'stampede-secret',
          scope: 'read',
          allowedPrincipals: ['111122223333'],
        },
      },
      { CALLER },
      dynamo.endpoint,
    );
    const env = fixture.env;
    processes = await Promise.all([1, 2, 3, 4].map(() => startLocalMode(env)));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop()));
    await dynamo?.close();
    await oidc?.close();
    await fixture?.cleanup();
  });

  it('answers 200 concurrent cold vends through 4 processes with exactly one token request', async () => {
    // Act
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, index) =>
        signedFetch(`${processes[index % processes.length]?.url}/tokens/client-credentials/hot`, CALLER).then(
          async (response) => ({
            status: response.status,
            body: (await response.json()) as { access_token?: string },
          }),
        ),
      ),
    );

    // Assess
    expect(responses.filter((response) => response.status === 200)).toHaveLength(200);
    expect(new Set(responses.map((response) => response.body.access_token)).size).toBe(1);
    expect(oidc.tokenRequests()).toBe(1);
  });
});
