import { DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VendorError } from '../../shared/core/errors.ts';
import { CALLER_ROLE, dynamoClient, type Harness, startHarness } from '../support/harness.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

// RFC 6749 Appendix A allows only VSCHAR (printable ASCII) in client IDs and secrets; non-ASCII is unit-tested.
const ODD_ID = 'cc:odd +/% id';
const ODD_SECRET = 'secret: +/% &=?';

describe('Integration: client_credentials against oidc-provider', () => {
  let oidc: OidcServer;
  let harness: Harness;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'cc-basic',
          client_secret: 'basic-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read write',
        },
        {
          client_id: 'cc-post',
          client_secret: 'post-secret',
          token_endpoint_auth_method: 'client_secret_post',
          grant_types: ['client_credentials'],
          scope: 'read write',
        },
        {
          client_id: ODD_ID,
          client_secret: ODD_SECRET,
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          scope: 'read',
        },
        {
          client_id: 'cc-short',
          client_secret: 'short-secret',
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

  const connector = (clientId: string, clientSecret: string, extra: object = {}) => ({
    grantType: 'client_credentials',
    tokenUrl: oidc.tokenUrl,
    clientId,
    clientSecret,
    scope: 'read write',
    allowedPrincipals: [CALLER_ROLE],
    ...extra,
  });

  describe('Client authentication', () => {
    it('gets a token with HTTP Basic and caches it in the table', async () => {
      // Prepare
      await harness.writeConnector(
        'client-credentials',
        'basic',
        connector('cc-basic', 'basic-secret', { clientAuthentication: 'basic' }),
      );
      const vendor = harness.vendor();
      const before = oidc.tokenRequests();

      // Act
      const first = await vendor.vend('client-credentials', 'basic');
      const second = await harness.vendor().vend('client-credentials', 'basic');

      // Assess
      expect(first.token_type).toBe('Bearer');
      expect(first.access_token.length).toBeGreaterThan(10);
      expect(first.scope).toBe('read write');
      expect(first.header).toEqual({ name: 'Authorization', value: `Bearer ${first.access_token}` });
      expect(first.expires_in).toBeGreaterThan(3500);
      expect(Date.parse(first.expires_at)).toBeGreaterThan(Date.now() + 3500_000);
      expect(second.access_token).toBe(first.access_token);
      expect(oidc.tokenRequests() - before).toBe(1);
    });

    it('stores one item per connector and scope set with a TTL in epoch seconds', async () => {
      // Prepare
      const documents = DynamoDBDocumentClient.from(dynamoClient(harness.dynamo.endpoint));

      // Act
      const { Item } = await documents.send(
        new GetCommand({ TableName: harness.tableName, Key: { pk: 't#client-credentials/basic#' } }),
      );

      // Assess
      expect(Item).toBeDefined();
      const ttl = Item?.ttl as number;
      expect(Number.isInteger(ttl)).toBe(true);
      expect(ttl).toBeGreaterThanOrEqual(Math.floor((Item?.expiresAt as number) / 1000));
      expect(ttl).toBeLessThan(Date.now() / 1000 + 2 * 3600);
    });

    it('sends the credentials in the body when asked to', async () => {
      // Prepare
      await harness.writeConnector(
        'client-credentials',
        'post',
        connector('cc-post', 'post-secret', { clientAuthentication: 'body' }),
      );

      // Act
      const token = await harness.vendor().vend('client-credentials', 'post');

      // Assess
      expect(token.access_token).toBeTruthy();
    });

    it('form-urlencodes client ID and secret before base64 (RFC 6749 §2.3.1)', async () => {
      // Prepare
      await harness.writeConnector(
        'client-credentials',
        'odd',
        connector(ODD_ID, ODD_SECRET, { clientAuthentication: 'basic', scope: 'read' }),
      );

      // Act
      const token = await harness.vendor().vend('client-credentials', 'odd');

      // Assess
      expect(token.access_token).toBeTruthy();
    });

    it('falls back from Basic to body once, and every process remembers what worked', async () => {
      // Prepare: a server that refuses Basic as many do (401 invalid_client) and takes credentials in the body.
      const strict = await startScriptedServer((request) =>
        request.headers.authorization !== undefined
          ? { status: 401, body: { error: 'invalid_client' } }
          : request.form.get('client_secret') === 'strict-secret'
            ? tokenAnswer()
            : { status: 401, body: { error: 'invalid_client' } },
      );
      await harness.writeConnector('client-credentials', 'try-both', {
        ...connector('strict', 'strict-secret'),
        tokenUrl: strict.url,
      });

      // Act
      const first = await harness.vendor().vend('client-credentials', 'try-both');
      const afterFirst = strict.requests.length;
      await harness.store.deleteToken('client-credentials/try-both#');
      const second = await harness.vendor().vend('client-credentials', 'try-both');
      await strict.close();

      // Assess: Basic then body the first time; body straight away in a new process the second time.
      expect(first.access_token).toBeTruthy();
      expect(afterFirst).toBe(2);
      expect(strict.requests[0]?.headers.authorization).toMatch(/^Basic /);
      expect(strict.requests[1]?.form.get('client_id')).toBe('strict');
      expect(second.access_token).not.toBe(first.access_token);
      expect(strict.requests.length - afterFirst).toBe(1);
      expect(strict.requests[2]?.headers.authorization).toBeUndefined();
      const state = await harness.store.getState('client-credentials/try-both');
      expect(state.authMethod).toBe('body');
    });

    it('tries Basic first against oidc-provider, which accepts it for a client_secret_post client', async () => {
      // Prepare
      await harness.writeConnector('client-credentials', 'default-auth', connector('cc-post', 'post-secret'));
      const before = oidc.tokenRequests();

      // Act
      const token = await harness.vendor().vend('client-credentials', 'default-auth');

      // Assess
      expect(token.access_token).toBeTruthy();
      expect(oidc.tokenRequests() - before).toBe(1);
    });

    it('reports a wrong secret as upstream_rejected with the server error code', async () => {
      // Prepare
      await harness.writeConnector('client-credentials', 'wrong', connector('cc-basic', 'not-the-secret'));

      // Act
      const failure = await harness
        .vendor()
        .vend('client-credentials', 'wrong')
        .catch((error: unknown) => error);

      // Assess
      expect(failure).toBeInstanceOf(VendorError);
      expect(failure).toMatchObject({ code: 'upstream_rejected', status: 502, upstreamError: 'invalid_client' });
      expect(String((failure as Error).message)).not.toContain('not-the-secret');
    });
  });

  describe('Scopes', () => {
    it('asks for a subset of the scope and caches it apart', async () => {
      // Prepare
      const vendor = harness.vendor();

      // Act
      const narrow = await vendor.vend('client-credentials', 'basic', { scope: 'read' });
      const full = await vendor.vend('client-credentials', 'basic');
      const sameAsFull = await vendor.vend('client-credentials', 'basic', { scope: 'write read' });

      // Assess
      expect(narrow.scope).toBe('read');
      expect(narrow.access_token).not.toBe(full.access_token);
      expect(sameAsFull.access_token).toBe(full.access_token);
    });

    it('refuses a scope outside the connector scope', async () => {
      // Act
      const failure = await harness
        .vendor()
        .vend('client-credentials', 'basic', { scope: 'admin' })
        .catch((error: unknown) => error);

      // Assess
      expect(failure).toMatchObject({ code: 'invalid_request', status: 400 });
    });
  });

  describe('Cache validity', () => {
    it('ignores an expired item that DynamoDB has not deleted yet', async () => {
      // Prepare: an item past its expiry, still in the table.
      const documents = DynamoDBDocumentClient.from(dynamoClient(harness.dynamo.endpoint));
      await harness.writeConnector('client-credentials', 'stale', connector('cc-basic', 'basic-secret'));
      const fresh = await harness.vendor().vend('client-credentials', 'stale');
      const { Item } = await documents.send(
        new GetCommand({ TableName: harness.tableName, Key: { pk: 't#client-credentials/stale#' } }),
      );
      await documents.send(
        new PutCommand({
          TableName: harness.tableName,
          Item: {
            ...Item,
            accessToken: 'expired-token',
            issuedAt: Date.now() - 7200_000,
            expiresAt: Date.now() - 1000,
          },
        }),
      );

      // Act
      const token = await harness.vendor().vend('client-credentials', 'stale');

      // Assess
      expect(token.access_token).not.toBe('expired-token');
      expect(token.access_token).not.toBe(fresh.access_token);
    });

    it('serves a cached token while it has minTtl left, counting minTtl as at most half the lifetime', async () => {
      // Prepare
      await harness.writeConnector('client-credentials', 'min-ttl', connector('cc-basic', 'basic-secret'));
      const vendor = harness.vendor();
      const first = await vendor.vend('client-credentials', 'min-ttl');

      // Act
      const within = await harness.vendor().vend('client-credentials', 'min-ttl', { minTtl: '3000' });
      const halfCapped = await harness.vendor().vend('client-credentials', 'min-ttl', { minTtl: '999999' });

      // Assess: 3000 s and "half of 3600 s" are both still left.
      expect(within.access_token).toBe(first.access_token);
      expect(halfCapped.access_token).toBe(first.access_token);
    });

    it('fetches anew when the cached token has less than minTtl left', async () => {
      // Prepare: a token issued an hour ago with ten minutes left.
      const documents = DynamoDBDocumentClient.from(dynamoClient(harness.dynamo.endpoint));
      const { Item } = await documents.send(
        new GetCommand({ TableName: harness.tableName, Key: { pk: 't#client-credentials/min-ttl#' } }),
      );
      await documents.send(
        new PutCommand({
          TableName: harness.tableName,
          Item: {
            ...Item,
            // Sealed as the vendor seals what it stores: a value in clear would not be a token at all.
            accessToken: await harness.sealer.seal('ten-minutes-left', {
              item: 't#client-credentials/min-ttl#',
              field: 'accessToken',
            }),
            issuedAt: Date.now() - 3000_000,
            expiresAt: Date.now() + 600_000,
          },
        }),
      );

      // Act
      const relaxed = await harness.vendor().vend('client-credentials', 'min-ttl', { minTtl: '300' });
      const demanding = await harness.vendor().vend('client-credentials', 'min-ttl', { minTtl: '900' });

      // Assess
      expect(relaxed.access_token).toBe('ten-minutes-left');
      expect(demanding.access_token).not.toBe('ten-minutes-left');
    });
  });

  describe('Forced refresh', () => {
    it('discards the cached token, returns a new one, and rate-limits per connector', async () => {
      // Prepare
      const vendor = harness.vendor();
      const cached = await vendor.vend('client-credentials', 'basic');

      // Act
      const forced = await vendor.vend('client-credentials', 'basic', { force: true });
      const again = await vendor.vend('client-credentials', 'basic', { force: true }).catch((error: unknown) => error);
      const next = await harness.vendor().vend('client-credentials', 'basic');

      // Assess
      expect(forced.access_token).not.toBe(cached.access_token);
      expect(again).toMatchObject({ code: 'rate_limited', status: 429 });
      expect((again as VendorError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(next.access_token).toBe(forced.access_token);
    });
  });
});
