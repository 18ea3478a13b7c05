import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDynamoDBClient, createSecretsManagerClient } from '../../shared/adapters/aws-clients.ts';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import { SecretsManagerConnectorSource } from '../../shared/adapters/secrets-manager-connector-store.ts';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.ts';
import { CALLER_ROLE, type Harness, localCredentials, manualClock, startHarness } from '../support/harness.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from '../support/secrets-manager-server.ts';

describe('Time bounds when the token table hangs', () => {
  let oidc: OidcServer;
  let harness: Harness;
  let proxy: FaultProxy;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'hang',
          client_secret: 'hang-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
      accessTokenTtl: 3600,
    });
    harness = await startHarness();
    proxy = await startFaultProxy(harness.dynamo.endpoint);
  });
  afterAll(async () => {
    await proxy?.close();
    await harness?.close();
    await oidc?.close();
  });

  /** A container whose table is behind the proxy, through the production client with its timeouts. */
  const containerBehindProxy = (now: () => number) =>
    harness.vendor({
      now,
      store: new DynamoDBTokenStore({
        tableName: harness.tableName,
        sealer: harness.sealer,
        client: createDynamoDBClient({ endpoint: proxy.endpoint, region: 'us-east-1', credentials: localCredentials }),
      }),
    });

  it('serves the token this process holds within 3 s, and answers 503 without one, while DynamoDB never answers', async () => {
    // Prepare: a warm container, then a table that accepts connections and never answers.
    await harness.writeConnector('refresh-token', 'table-hangs', {
      grantType: 'refresh_token',
      tokenUrl: oidc.tokenUrl,
      clientId: 'hang',
      clientSecret: 'hang-secret',
      refreshToken: await oidc.issueRefreshToken('hang'),
      allowedPrincipals: [CALLER_ROLE],
    });
    const clock = manualClock();
    const warm = containerBehindProxy(clock.now);
    const cold = containerBehindProxy(clock.now);
    const first = await warm.vend('refresh-token', 'table-hangs');
    proxy.mode = 'hang';
    // Past the memory's staleness bound: the container must look at the table again.
    clock.advance(60_000);

    // Act
    const warmStarted = performance.now();
    const served = await warm.vend('refresh-token', 'table-hangs');
    const warmMs = performance.now() - warmStarted;
    const coldStarted = performance.now();
    const refused = await cold.vend('refresh-token', 'table-hangs').catch((error: unknown) => error);
    const coldMs = performance.now() - coldStarted;
    proxy.mode = 'forward';

    // Assess
    expect(served.access_token).toBe(first.access_token);
    expect(warmMs).toBeLessThan(3_000);
    expect(refused).toMatchObject({ code: 'upstream_unavailable', status: 503 });
    expect(coldMs).toBeLessThan(25_000);
  }, 40_000);

  it('aborts a DynamoDB call to a server that accepts and never answers', async () => {
    // Prepare
    const blackHole = await startFaultProxy();
    const store = new DynamoDBTokenStore({
      tableName: harness.tableName,
      sealer: harness.sealer,
      client: createDynamoDBClient({
        endpoint: blackHole.endpoint,
        region: 'us-east-1',
        credentials: localCredentials,
      }),
    });

    // Act
    const started = performance.now();
    const failure = await store.getToken('refresh-token/any#', Date.now()).catch((error: unknown) => error);
    const elapsed = performance.now() - started;
    await blackHole.close();

    // Assess: two attempts of one second each, then the contract's error.
    expect(failure).toMatchObject({ code: 'upstream_unavailable' });
    expect(elapsed).toBeLessThan(5_000);
  }, 20_000);
});

describe('Time bounds when a holder crashed and the token server hangs', () => {
  let harness: Harness;
  let hungServer: FaultProxy;

  beforeAll(async () => {
    harness = await startHarness();
    hungServer = await startFaultProxy();
  });
  afterAll(async () => {
    await hungServer?.close();
    await harness?.close();
  });

  it('answers within 25 s with the default settings', async () => {
    // Prepare: a lease left by a crashed container (the default 15 s), and a token server that never answers.
    await harness.writeConnector('refresh-token', 'crashed-holder', {
      grantType: 'refresh_token',
      tokenUrl: `${hungServer.endpoint}/token`,
      clientId: 'c',
      clientSecret: 's',
      refreshToken: 'made-up.refresh-token.for-a-hung-server',
      allowedPrincipals: [CALLER_ROLE],
    });
    await harness.store.acquireLease('refresh-token/crashed-holder', 'crashed', Date.now(), 15_000);

    // Act
    const started = performance.now();
    const failure = await harness
      .vendor()
      .vend('refresh-token', 'crashed-holder')
      .catch((error: unknown) => error);
    const elapsed = performance.now() - started;

    // Assess
    expect(failure).toMatchObject({ code: 'upstream_unavailable', status: 503 });
    expect(elapsed).toBeLessThan(25_000);
    // It did not give up early: it took the lease over once it ran out, and asked the server.
    expect(elapsed).toBeGreaterThan(15_000);
    const { failure: recorded } = await harness.store.getState('refresh-token/crashed-holder');
    expect(recorded).toMatchObject({ consecutive: 1, unconfirmed: true });
  }, 40_000);
});

describe('Time bounds when Secrets Manager hangs', () => {
  let oidc: OidcServer;
  let harness: Harness;
  let secretsManager: SecretsManagerServer;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'sm-hang',
          client_secret: 'sm-hang-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read',
        },
      ],
    });
    harness = await startHarness();
    secretsManager = await startSecretsManagerServer();
  });
  afterAll(async () => {
    await secretsManager?.close();
    await harness?.close();
    await oidc?.close();
  });

  const client = () =>
    createSecretsManagerClient({
      endpoint: secretsManager.endpoint,
      region: 'us-east-1',
      credentials: localCredentials,
    });

  it('aborts a Secrets Manager call that is accepted and never answered', async () => {
    // Prepare
    secretsManager.put('tv/client-credentials/unanswered', '{}');
    secretsManager.hung.add('GetSecretValue');
    const source = new SecretsManagerConnectorSource({ client: client(), prefix: 'tv' });

    // Act
    const started = performance.now();
    const failure = await source
      .read({ family: 'client-credentials', connectorId: 'unanswered' })
      .catch((error: unknown) => error)
      .finally(() => secretsManager.hung.delete('GetSecretValue'));
    const elapsed = performance.now() - started;

    // Assess: two attempts of two seconds each, then the contract's error.
    expect(failure).toMatchObject({ code: 'upstream_unavailable' });
    expect(elapsed).toBeLessThan(8_000);
  }, 20_000);

  it('serves the token this process holds within 3 s while the connector store never answers', async () => {
    // Prepare: a warm container whose connector document must be read again (no caching of the document).
    secretsManager.put(
      'tv/client-credentials/store-hangs',
      JSON.stringify({
        grantType: 'client_credentials',
        tokenUrl: oidc.tokenUrl,
        clientId: 'sm-hang',
        clientSecret: 'sm-hang-secret',
        scope: 'read',
        allowedPrincipals: [CALLER_ROLE],
      }),
    );
    const clock = manualClock();
    const container = harness.vendor({
      now: clock.now,
      source: new SecretsManagerConnectorSource({ client: client(), prefix: 'tv', maxAgeSeconds: 0 }),
    });
    const first = await container.vend('client-credentials', 'store-hangs');
    secretsManager.hung.add('GetSecretValue');
    clock.advance(60_000);

    // Act
    const started = performance.now();
    const served = await container
      .vend('client-credentials', 'store-hangs')
      .finally(() => secretsManager.hung.delete('GetSecretValue'));
    const elapsed = performance.now() - started;

    // Assess
    expect(served.access_token).toBe(first.access_token);
    expect(elapsed).toBeLessThan(3_000);
  }, 20_000);
});
