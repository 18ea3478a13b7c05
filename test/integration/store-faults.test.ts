import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import type { ConnectorSource } from '../../shared/ports/connector-store.ts';
import {
  CALLER_ROLE,
  type FaultRule,
  faultyDynamoClient,
  type Harness,
  SwitchableSource,
  startHarness,
} from '../support/harness.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';

/** Writes after the token server answered: the exchange's result, the cached token. */
const afterAnswerWrites: FaultRule = (command, input) =>
  command === 'PutItemCommand' || (command === 'UpdateItemCommand' && /headToken/.test(String(input.UpdateExpression)));
const never: FaultRule = () => false;

describe('Store faults', () => {
  let oidc: OidcServer;
  let harness: Harness;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'rt',
          client_secret: 'rt-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
        {
          client_id: 'cc',
          client_secret: 'cc-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read',
        },
      ],
    });
    harness = await startHarness();
  });
  afterAll(async () => {
    await harness.close();
    await oidc.close();
  });

  const refreshConnector = async () => ({
    grantType: 'refresh_token',
    tokenUrl: oidc.tokenUrl,
    clientId: 'rt',
    clientSecret: 'rt-secret',
    refreshToken: await oidc.issueRefreshToken('rt'),
    allowedPrincipals: [CALLER_ROLE],
  });

  const faultyVendor = (rule: { current: FaultRule }, source?: ConnectorSource) =>
    harness.vendor({
      store: new DynamoDBTokenStore({
        tableName: harness.tableName,
        sealer: harness.sealer,
        client: faultyDynamoClient(harness.dynamo.endpoint, rule),
      }),
      env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' },
      ...(source === undefined ? {} : { source }),
    });

  it('still answers, and keeps the rotated refresh token, when DynamoDB writes fail after the server answered', async () => {
    // Prepare
    const document = await refreshConnector();
    await harness.writeConnector('refresh-token', 'table-down', document);
    const rule = { current: afterAnswerWrites };
    const vendor = faultyVendor(rule);

    // Act
    const first = await vendor.vend('refresh-token', 'table-down');
    rule.current = never;
    const second = await vendor.vend('refresh-token', 'table-down', { force: true });

    // Assess
    expect(first.access_token).toBeTruthy();
    expect(second.access_token).not.toBe(first.access_token);
    expect(oidc.reuses()).toBe(0);
    expect((await harness.readConnector('refresh-token', 'table-down')).refreshToken).not.toBe(document.refreshToken);
  });

  it('keeps the only copy in memory and uses it next when both the table and the connector store are down', async () => {
    // Prepare
    const document = await refreshConnector();
    await harness.writeConnector('refresh-token', 'all-down', document);
    const rule = { current: afterAnswerWrites };
    const source = new SwitchableSource(harness.connectorsDir);
    source.failing = true;
    const vendor = faultyVendor(rule, source);

    // Act
    const first = await vendor.vend('refresh-token', 'all-down');
    const fileDuringOutage = await harness.readConnector('refresh-token', 'all-down');
    rule.current = never;
    source.failing = false;
    const second = await vendor.vend('refresh-token', 'all-down', { force: true });

    // Assess
    expect(first.access_token).toBeTruthy();
    expect(fileDuringOutage.refreshToken).toBe(document.refreshToken);
    expect(second.access_token).not.toBe(first.access_token);
    expect(oidc.reuses()).toBe(0);
    expect((await harness.readConnector('refresh-token', 'all-down')).refreshToken).not.toBe(document.refreshToken);
  });

  it('answers 503 without calling the token server when the table cannot be read', async () => {
    // Prepare
    await harness.writeConnector('client-credentials', 'unreadable', {
      grantType: 'client_credentials',
      tokenUrl: oidc.tokenUrl,
      clientId: 'cc',
      clientSecret: 'cc-secret',
      allowedPrincipals: [CALLER_ROLE],
    });
    const rule = { current: ((command) => command === 'GetItemCommand') as FaultRule };
    const before = oidc.tokenRequests();

    // Act
    const failure = await faultyVendor(rule)
      .vend('client-credentials', 'unreadable')
      .catch((error: unknown) => error);

    // Assess
    expect(failure).toMatchObject({ code: 'upstream_unavailable', status: 503 });
    expect(oidc.tokenRequests()).toBe(before);
  });
});
