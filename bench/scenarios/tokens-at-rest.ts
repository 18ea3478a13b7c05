import { setTimeout as sleep } from 'node:timers/promises';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import { EncryptionSdkSealer } from '../../shared/adapters/encryption-sdk-sealer.ts';
import { dynamoClient, type Harness, startHarness } from '../../test/support/harness.ts';
import { startKmsServer } from '../../test/support/kms-server.ts';
import { startScriptedServer, tokenAnswer } from '../../test/support/scripted-server.ts';
import { type BenchOptions, mediansOf, percentile, type Row, timeEach, us, withCleanup } from '../support.ts';

const KEY_ARN = 'arn:aws:kms:us-east-1:111122223333:key/0b7e4c1a-9f2d-4e8b-a6c3-5d1f2e3a4b5c';
const CONTAINERS = 5;
const WINDOW_MS = 30_000;
const TOKEN_SECONDS = 6;

/**
 * Runs `body` with the AWS SDK pointed at a loopback KMS (the SDK's own variable), as a function in AWS reaches KMS,
 * and puts the environment back afterwards.
 */
async function withKmsEndpoint<T>(endpoint: string, body: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_KMS: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
  });
  try {
    return await body();
  } finally {
    for (const name of ['AWS_ENDPOINT_URL_KMS', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  }
}

/** What sealing costs one value: seal, open a value not opened before, open one opened before (ms, p50). */
async function sealingCost(): Promise<{ sealMs: number; openColdMs: number; openCachedMs: number }> {
  const sealer = EncryptionSdkSealer.kms(KEY_ARN);
  const context = { item: 't#client-credentials/bench#', field: 'accessToken' };
  // The first seal fetches the data key from KMS; the ones measured reuse it, as a warm container does.
  await sealer.seal('warm-up', context);
  const sealed: string[] = [];
  const seal = await timeEach(300, async () => sealed.push(await sealer.seal(`token-${sealed.length}`, context)));
  // Another container's sealer: it has opened none of these values, only the data key's decryption is cached.
  const reader = EncryptionSdkSealer.kms(KEY_ARN);
  let next = 0;
  const openCold = await timeEach(300, () => reader.open(sealed[next++] as string, context));
  const openCached = await timeEach(300, () => reader.open(sealed[0] as string, context));
  return {
    sealMs: percentile(seal, 50),
    openColdMs: percentile(openCold, 50),
    openCachedMs: percentile(openCached, 50),
  };
}

/**
 * KMS calls while `CONTAINERS` containers (each its own sealer and caches, as Lambda containers have) vend one hot
 * connector with 6-second tokens for 30 s, reading the table every second.
 */
async function hotConnector(harness: Harness, tokenUrl: string, calls: () => number) {
  await harness.writeConnector('client-credentials', 'hot', {
    grantType: 'client_credentials',
    tokenUrl,
    clientId: 'c',
    clientSecret: 's',
    allowedPrincipals: ['arn:aws:iam::111122223333:role/workload'],
  });
  const containers = Array.from({ length: CONTAINERS }, () =>
    harness.vendor({
      env: {
        TOKEN_VENDOR_MEMORY_STALENESS_SECONDS: '1',
        TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS: '1',
      },
      store: new DynamoDBTokenStore({
        tableName: harness.tableName,
        client: dynamoClient(harness.dynamo.endpoint),
        sealer: EncryptionSdkSealer.kms(KEY_ARN),
      }),
    }),
  );
  const before = calls();
  let vends = 0;
  const until = Date.now() + WINDOW_MS;
  await Promise.all(
    containers.map(async (container) => {
      while (Date.now() < until) {
        await container.vend('client-credentials', 'hot');
        vends += 1;
        await sleep(20);
      }
    }),
  );
  return { vends, kmsCalls: calls() - before };
}

export async function tokensAtRest(options: BenchOptions): Promise<{ rows: Row[]; data: Record<string, unknown> }> {
  return withCleanup(async (defer) => {
    const kms = await startKmsServer();
    defer(() => kms.close());
    kms.addKey(KEY_ARN);
    const server = await startScriptedServer(() => tokenAnswer({ expires_in: TOKEN_SECONDS }));
    defer(() => server.close());
    const kmsCalls = () => [...kms.calls.values()].reduce((sum, count) => sum + count, 0);

    return withKmsEndpoint(kms.endpoint, async () => {
      const costs = [];
      for (let repetition = 0; repetition < options.repetitions; repetition += 1) costs.push(await sealingCost());
      const cost = mediansOf(costs);
      const harness = await startHarness();
      defer(() => harness.close());
      const hot = await hotConnector(harness, server.url, kmsCalls);
      const refreshes = server.requests.length;
      const perContainerPerMinute = hot.kmsCalls / CONTAINERS / (WINDOW_MS / 60_000);
      const rows: Row[] = [
        { scenario: '9 tokens at rest', metric: 'seal one token value (data key cached), p50', value: us(cost.sealMs) },
        {
          scenario: '9 tokens at rest',
          metric: 'open a value first read by this container (its data key cached), p50',
          value: us(cost.openColdMs),
        },
        {
          scenario: '9 tokens at rest',
          metric: 'open a value read before (every later table hit), p50',
          value: us(cost.openCachedMs),
        },
        {
          scenario: '9 tokens at rest',
          metric: `KMS calls per vend (hot connector, ${CONTAINERS} containers, ${hot.vends} vends, ${refreshes} refreshes in 30 s)`,
          value: (hot.kmsCalls / hot.vends).toFixed(4),
          target: 'none per vend (≪ 0.01)',
          met: hot.kmsCalls / hot.vends < 0.01,
        },
        {
          scenario: '9 tokens at rest',
          metric: 'KMS calls per container per minute (data keys and their decryption, all items)',
          value: perContainerPerMinute.toFixed(1),
        },
      ];
      return { rows, data: { cost, hot, refreshes, kms: Object.fromEntries(kms.calls) } };
    });
  });
}
