import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rotateFunction } from '../../functions/lambda/entry.ts';
import { SecretsManagerConnectorSource } from '../../shared/adapters/secrets-manager-connector-store.ts';
import { CALLER_ROLE, type Harness, localCredentials, manualClock, startHarness } from '../support/harness.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from '../support/secrets-manager-server.ts';

/** EventBridge's copy of a Secrets Manager call, as CloudTrail delivers it (the fields the rule and handler read). */
const cloudTrailEvent = (eventName: string, secretId: string) => ({
  version: '0',
  source: 'aws.secretsmanager',
  'detail-type': 'AWS API Call via CloudTrail',
  detail: { eventSource: 'secretsmanager.amazonaws.com', eventName, requestParameters: { secretId } },
});

const LAMBDA_CONTEXT = {
  awsRequestId: 'sync-1',
  functionName: 'token-vendor-rotate',
  getRemainingTimeInMillis: () => 60_000,
} as never;

describe('Sync: a changed connector secret reaches the tokens cached for it', () => {
  let harness: Harness;
  let server: ScriptedServer;
  let secretsManager: SecretsManagerServer;
  let client: SecretsManagerClient;

  beforeAll(async () => {
    harness = await startHarness();
    server = await startScriptedServer(() => tokenAnswer({ expires_in: 3600 }));
    secretsManager = await startSecretsManagerServer();
    client = new SecretsManagerClient({
      endpoint: secretsManager.endpoint,
      region: 'us-east-1',
      credentials: localCredentials,
    });
  });
  afterAll(async () => {
    client.destroy();
    await secretsManager.close();
    await server.close();
    await harness.close();
  });

  const document = (allowedPrincipals: string[], extra: object = {}) =>
    JSON.stringify({
      grantType: 'client_credentials',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      allowedPrincipals,
      ...extra,
    });

  it('refuses a removed principal once EventBridge reports the change (the secret named by its ARN)', async () => {
    // Prepare: a token cached for the connector, served from the table with no secret read.
    secretsManager.put('token-vendor/client-credentials/events', document([CALLER_ROLE]));
    const source = () => new SecretsManagerConnectorSource({ client, maxAgeSeconds: 0 });
    const clock = manualClock();
    const container = harness.vendor({ now: clock.now, source: source() });
    const before = await container.vend('client-credentials', 'events');
    secretsManager.put('token-vendor/client-credentials/events', document(['arn:aws:iam::444455556666:role/other']));
    const handler = rotateFunction(
      { TOKEN_VENDOR_TABLE: harness.tableName, POWERTOOLS_METRICS_DISABLED: 'true' },
      { store: harness.store, source: source(), now: clock.now },
    );
    const arn = `arn:aws:secretsmanager:us-east-1:000000000000:secret:token-vendor/client-credentials/events-AbC123`;

    // Act
    const stillCached = await container.vend('client-credentials', 'events');
    const synced = await handler(cloudTrailEvent('PutSecretValue', arn), LAMBDA_CONTEXT);
    clock.advance(10_001);
    const afterSync = await container.vend('client-credentials', 'events').catch((error: unknown) => error);

    // Assess: until the sync, the profile beside the token answered (the secret was not read); after it, and the
    // container's memory staleness, the caller is refused.
    expect(stillCached.access_token).toBe(before.access_token);
    expect(synced).toEqual({ synced: true, outcome: 'updated' });
    expect(afterSync).toMatchObject({ code: 'access_denied' });
    expect(server.requests.length).toBe(1);
  });

  it('discards the cached tokens of a deleted secret, and ignores secrets outside the prefix', async () => {
    // Prepare
    secretsManager.put('token-vendor/client-credentials/deleted', document([CALLER_ROLE]));
    const source = new SecretsManagerConnectorSource({ client, maxAgeSeconds: 0 });
    const container = harness.vendor({ source });
    await container.vend('client-credentials', 'deleted');
    secretsManager.secrets.delete('token-vendor/client-credentials/deleted');
    const handler = rotateFunction(
      { TOKEN_VENDOR_TABLE: harness.tableName, POWERTOOLS_METRICS_DISABLED: 'true' },
      { store: harness.store, source },
    );

    // Act
    const foreign = await handler(cloudTrailEvent('PutSecretValue', 'someone-else/secret'), LAMBDA_CONTEXT);
    const deleted = await handler(
      cloudTrailEvent('DeleteSecret', 'token-vendor/client-credentials/deleted'),
      LAMBDA_CONTEXT,
    );

    // Assess
    expect(foreign).toEqual({ synced: false });
    expect(deleted).toEqual({ synced: true, outcome: 'discarded' });
    expect(await harness.store.getToken('client-credentials/deleted#', Date.now())).toBeUndefined();
  });
});
