import { Agent } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { DescribeTableCommand, DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import {
  GetSecretValueCommand,
  InternalServiceError,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type EmbeddedDynamoDB, ensureTable, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { type FaultProxy, startFaultProxy } from '../support/fault-proxy.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from '../support/secrets-manager-server.ts';

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

/** Whether `promise` is still unsettled after `ms`: an answer that has not come can only be seen by waiting a while. */
async function stillPending(promise: Promise<unknown>, ms = 100): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await sleep(ms);
  return !settled;
}

describe('Test support: fault proxy', () => {
  let dynamo: EmbeddedDynamoDB;
  let proxy: FaultProxy;
  let client: DynamoDBClient;
  const tableName = 'fault-proxy';

  beforeAll(async () => {
    dynamo = await startEmbeddedDynamoDB();
    proxy = await startFaultProxy(dynamo.endpoint);
    // One socket, so every call after the first goes over the same kept-alive connection.
    client = new DynamoDBClient({
      endpoint: proxy.endpoint,
      region: 'us-east-1',
      credentials,
      requestHandler: { httpAgent: new Agent({ keepAlive: true, maxSockets: 1 }) },
    });
  });
  afterAll(async () => {
    client.destroy();
    await proxy.close();
    await dynamo.close();
  });

  it('forwards DynamoDB calls to the target', async () => {
    // Prepare
    await ensureTable(client, tableName);
    const table = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const key = table.Table?.KeySchema?.[0]?.AttributeName ?? '';

    // Act
    await client.send(new PutItemCommand({ TableName: tableName, Item: { [key]: { S: 'item-1' }, v: { N: '7' } } }));
    const read = await client.send(new GetItemCommand({ TableName: tableName, Key: { [key]: { S: 'item-1' } } }));

    // Assess
    expect(read.Item?.v).toEqual({ N: '7' });
    expect(proxy.connections()).toBeGreaterThanOrEqual(1);
  });

  it('in hang mode never answers, on new and kept-alive connections, and forwards again when switched back', async () => {
    // Prepare
    await client.send(new DescribeTableCommand({ TableName: tableName }));
    const accepted = proxy.connections();
    proxy.mode = 'hang';

    // Act
    const sdk = await client
      .send(new DescribeTableCommand({ TableName: tableName }), { abortSignal: AbortSignal.timeout(200) })
      .catch((error: unknown) => error);
    const acceptedForSdk = proxy.connections() - accepted;
    const raw = await fetch(proxy.endpoint, { method: 'POST', body: '{}', signal: AbortSignal.timeout(300) }).catch(
      (error: unknown) => error,
    );
    proxy.mode = 'forward';
    const after = await client.send(new DescribeTableCommand({ TableName: tableName }));

    // Assess
    expect(sdk).toMatchObject({ name: 'AbortError' });
    expect(acceptedForSdk).toBe(0); // the SDK's call went over its kept-alive connection
    expect(raw).toMatchObject({ name: 'TimeoutError' });
    expect(after.Table?.TableStatus).toBe('ACTIVE');
  });

  it('without a target accepts connections and never answers', async () => {
    // Prepare
    const blackHole = await startFaultProxy();

    // Act
    const answer = fetch(blackHole.endpoint, { signal: AbortSignal.timeout(300) });

    // Assess
    await expect(answer).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(blackHole.connections()).toBe(1);
    await blackHole.close();
  });
});

describe('Test support: oidc-provider with held and delayed answers', () => {
  let oidc: OidcServer;

  beforeAll(async () => {
    oidc = await startOidcServer({
      clients: [
        {
          client_id: 'rt',
          client_secret: 'rt-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
    });
  });
  afterAll(async () => {
    await oidc.close();
  });

  const refresh = (refreshToken: string, signal?: AbortSignal) =>
    fetch(oidc.tokenUrl, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('rt:rt-secret').toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
      ...(signal === undefined ? {} : { signal }),
    });

  it('processAndHoldAnswer rotates at once and keeps the answer until releaseAnswer()', async () => {
    // Prepare
    const refreshToken = await oidc.issueRefreshToken('rt');
    const holding = oidc.holdNext();
    const answer = refresh(refreshToken);
    const held = await holding;

    // Act
    await held.processAndHoldAnswer();
    const issuedBeforeRelease = oidc.issuedRefreshTokens();
    const pendingBeforeRelease = await stillPending(answer);
    held.releaseAnswer();
    const body = (await (await answer).json()) as { refresh_token?: string; access_token?: string };

    // Assess
    expect(pendingBeforeRelease).toBe(true);
    expect(issuedBeforeRelease).toHaveLength(1);
    expect(issuedBeforeRelease[0]).not.toBe(refreshToken);
    expect(body.refresh_token).toBe(issuedBeforeRelease[0]);
    expect(body.access_token).toBeTruthy();
    expect(held.dropped).toBe(false);
  });

  it('release() drops a request whose client went away: it is never processed', async () => {
    // Prepare
    const refreshToken = await oidc.issueRefreshToken('rt');
    const holding = oidc.holdNext();
    const controller = new AbortController();
    const answer = refresh(refreshToken, controller.signal);
    const held = await holding;

    // Act
    controller.abort();
    await expect(answer).rejects.toMatchObject({ name: 'AbortError' });
    await held.clientGone;
    held.release();
    const retried = await refresh(refreshToken);

    // Assess
    expect(held.dropped).toBe(true);
    expect(oidc.droppedRequests()).toBe(1);
    expect(retried.status).toBe(200);
    expect(oidc.reuses()).toBe(0);
  });

  it('answerDelayMs rotates at once and lets the answer arrive only after the delay', async () => {
    // Prepare
    const refreshToken = await oidc.issueRefreshToken('rt');
    const issued = oidc.issuedRefreshTokens().length;
    oidc.setAnswerDelay(400);
    let arrived = false;

    // Act
    const started = performance.now();
    const answer = refresh(refreshToken);
    void answer.then(() => (arrived = true));
    await vi.waitFor(() => expect(oidc.issuedRefreshTokens()).toHaveLength(issued + 1), { interval: 5 });
    const arrivedAtRotation = arrived;
    const body = (await (await answer).json()) as { refresh_token?: string };
    const elapsed = performance.now() - started;
    oidc.setAnswerDelay(0);

    // Assess
    expect(arrivedAtRotation).toBe(false);
    expect(elapsed).toBeGreaterThanOrEqual(390);
    expect(body.refresh_token).toBe(oidc.issuedRefreshTokens().at(-1));
  });

  it('strict: false still rotates but accepts a used refresh token again', async () => {
    // Prepare
    const lenient = await startOidcServer({
      clients: [
        {
          client_id: 'rt',
          client_secret: 'rt-secret',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['refresh_token'],
        },
      ],
      strict: false,
    });
    const refreshToken = await lenient.issueRefreshToken('rt');
    const post = () =>
      fetch(lenient.tokenUrl, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from('rt:rt-secret').toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
      });

    // Act
    const statuses = [(await post()).status, (await post()).status];
    await lenient.close();

    // Assess
    expect(statuses).toEqual([200, 200]);
    expect(lenient.reuses()).toBe(0);
    expect(new Set(lenient.issuedRefreshTokens()).size).toBe(2);
    expect(lenient.issuedRefreshTokens()).not.toContain(refreshToken);
  });
});

describe('Test support: Secrets Manager with hung and failing operations', () => {
  let secretsManager: SecretsManagerServer;
  let client: SecretsManagerClient;

  beforeAll(async () => {
    secretsManager = await startSecretsManagerServer();
    client = new SecretsManagerClient({
      endpoint: secretsManager.endpoint,
      region: 'us-east-1',
      credentials,
      maxAttempts: 2,
    });
  });
  afterAll(async () => {
    client.destroy();
    await secretsManager.close();
  });

  it('never answers a hung operation while it is listed', async () => {
    // Prepare
    secretsManager.put('tv/hung', 'value');
    secretsManager.hung.add('GetSecretValue');

    // Act
    const hung = client.send(new GetSecretValueCommand({ SecretId: 'tv/hung' }), {
      abortSignal: AbortSignal.timeout(300),
    });
    await expect(hung).rejects.toThrow();
    secretsManager.hung.delete('GetSecretValue');
    const answered = await client.send(new GetSecretValueCommand({ SecretId: 'tv/hung' }));

    // Assess
    expect(answered.SecretString).toBe('value');
    expect(secretsManager.calls.get('GetSecretValue')).toBe(2);
  });

  it('counts every PutSecretValue by secret: idempotent repeats and failed attempts', async () => {
    // Prepare
    secretsManager.put('tv/counted', 'v0');
    const put = () =>
      client.send(
        new PutSecretValueCommand({ SecretId: 'tv/counted', SecretString: 'v1', ClientRequestToken: 'a'.repeat(32) }),
      );

    // Act
    const first = await put();
    const repeat = await put();
    secretsManager.failing.add('PutSecretValue');
    const failed = await put().catch((error: unknown) => error);
    secretsManager.failing.delete('PutSecretValue');

    // Assess
    expect(repeat.VersionId).toBe(first.VersionId);
    expect(failed).toBeInstanceOf(InternalServiceError);
    expect(secretsManager.putsBySecret.get('tv/counted')).toBe(4); // two, then two attempts of the failing one
    expect(secretsManager.secrets.get('tv/counted')?.value).toBe('v1');
  });

  it('close() finishes while a hung request is still open', async () => {
    // Prepare
    const server = await startSecretsManagerServer();
    server.hung.add('GetSecretValue');
    const hung = fetch(server.endpoint, {
      method: 'POST',
      headers: { 'x-amz-target': 'secretsmanager.GetSecretValue' },
      body: '{"SecretId":"x"}',
    });
    await vi.waitFor(() => expect(server.calls.get('GetSecretValue')).toBe(1), { interval: 5 });

    // Act
    await server.close();

    // Assess
    await expect(hung).rejects.toThrow();
  });
});
