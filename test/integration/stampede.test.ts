import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { type LocalMode, signedFetch, startLocalMode } from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

const CALLER = {
  accessKeyId: 'AKIASTAMPEDE',
  secretAccessKey: 'stampede-secret',
  arn: 'arn:aws:iam::111122223333:user/load',
};

describe('Single flight across containers', () => {
  let oidc: OidcServer;
  let dynamo: EmbeddedDynamoDB;
  let dir: string;
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
    dir = await mkdtemp(join(tmpdir(), 'token-vendor-stampede-'));
    await mkdir(join(dir, 'connectors', 'client-credentials'), { recursive: true });
    await writeFile(
      join(dir, 'connectors', 'client-credentials', 'hot.json'),
      JSON.stringify({
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'stampede',
        clientSecret: 'stampede-secret',
        scope: 'read',
        allowedPrincipals: ['111122223333'],
      }),
    );
    await writeFile(join(dir, 'principals.json'), JSON.stringify({ [CALLER.accessKeyId]: CALLER }));
    const env = {
      TOKEN_VENDOR_CONNECTORS_DIR: join(dir, 'connectors'),
      TOKEN_VENDOR_LOCAL_PRINCIPALS: join(dir, 'principals.json'),
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    };
    processes = await Promise.all([1, 2, 3, 4].map(() => startLocalMode(env)));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(processes.map((process) => process.stop()));
    await dynamo?.close();
    await oidc?.close();
    await rm(dir, { recursive: true, force: true });
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
