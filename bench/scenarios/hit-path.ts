import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { SecretsManagerConnectorSource } from '../../shared/adapters/secrets-manager-connector-store.ts';
import { TABLE_KEY } from '../../shared/core/table.ts';
import { TokenMemory } from '../../shared/use-cases/token-memory.ts';
import { type VendDeps, vendToken } from '../../shared/use-cases/vend.ts';
import type { VendRequest } from '../../shared/use-cases/vend-request.ts';
import { CALLER, dynamoClient, localCredentials, startHarness } from '../../test/support/harness.ts';
import { startSecretsManagerServer } from '../../test/support/secrets-manager-server.ts';
import {
  type BenchOptions,
  benchConnector,
  mediansOf,
  ms,
  percentile,
  type Row,
  ratio,
  startBenchOidc,
  timeEach,
  us,
  withCleanup,
} from '../support.ts';

const MEMORY_ITERATIONS = 5000;
const TABLE_ITERATIONS = 400;
const WARMUP = 200;

type Repetition = {
  readonly memoryAwsP50: number;
  readonly memoryAwsP99: number;
  readonly memoryFileP50: number;
  readonly memoryFileP99: number;
  readonly tableHitP50: number;
  readonly tableHitP99: number;
  readonly getItemP50: number;
  readonly getItemP99: number;
  readonly documentGetP50: number;
  readonly storeGetP50: number;
  readonly ratioP50: number;
  readonly ratioP99: number;
};

/**
 * Scenario 1: in one process, an in-memory hit, a DynamoDB hit (memory that keeps nothing) and a raw GetItem of
 * the same item on the same dynalite, the last two interleaved call by call so that both see the same machine.
 */
export async function hitPath(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const harness = await startHarness();
    defer(() => harness.close());
    const oidc = await startBenchOidc(defer);
    const secretsManager = await startSecretsManagerServer();
    defer(() => secretsManager.close());
    const secretsClient = new SecretsManagerClient({
      endpoint: secretsManager.endpoint,
      region: 'us-east-1',
      credentials: localCredentials,
    });
    defer(() => secretsClient.destroy());
    const raw = dynamoClient(harness.dynamo.endpoint);
    defer(() => raw.destroy());

    const document = benchConnector(oidc.tokenUrl);
    secretsManager.put('token-vendor/client-credentials/hit', JSON.stringify(document));
    await harness.writeConnector('client-credentials', 'hit', document);
    // As in AWS: connectors from Secrets Manager (Powertools' 30 s cache), tokens in DynamoDB.
    const aws = harness.vendor({ source: new SecretsManagerConnectorSource({ client: secretsClient }) });
    // As in local mode: the connector file is read on every vend.
    const local = harness.vendor();
    await aws.vend('client-credentials', 'hit');
    await local.vend('client-credentials', 'hit');

    const request: VendRequest = { family: 'client-credentials', connectorId: 'hit', caller: CALLER };
    // A memory that keeps nothing: every vend reads the table, exactly as a container whose copy went stale.
    const tableOnly: VendDeps = { ...aws.deps, memory: new TokenMemory(0) };
    const getItem = new GetItemCommand({
      TableName: harness.tableName,
      Key: { [TABLE_KEY]: { S: 't#client-credentials/hit#' } },
      ConsistentRead: true,
    });
    // What the token store sends: the same read through lib-dynamodb's DocumentClient (marshalling included).
    const documents = DynamoDBDocumentClient.from(raw);
    const documentGet = new GetCommand({
      TableName: harness.tableName,
      Key: { [TABLE_KEY]: 't#client-credentials/hit#' },
      ConsistentRead: true,
    });
    const probe = await raw.send(getItem);
    if (probe.Item === undefined) throw new Error('hit path: the token item is not where the bench expects it');

    const repetitions: Repetition[] = [];
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      await timeEach(WARMUP, () => aws.vend('client-credentials', 'hit'));
      const memoryAws = await timeEach(MEMORY_ITERATIONS, () => aws.vend('client-credentials', 'hit'));
      const memoryFile = await timeEach(MEMORY_ITERATIONS, () => local.vend('client-credentials', 'hit'));
      for (let index = 0; index < WARMUP / 4; index += 1) {
        await vendToken(tableOnly, request);
        await raw.send(getItem);
        await documents.send(documentGet);
      }
      const tableHit: number[] = [];
      const getItemSamples: number[] = [];
      const documentGetSamples: number[] = [];
      const storeGetSamples: number[] = [];
      const timed = (samples: number[], call: () => Promise<unknown>) => async () => {
        const started = performance.now();
        await call();
        samples.push(performance.now() - started);
      };
      const steps = [
        timed(tableHit, () => vendToken(tableOnly, request)),
        timed(getItemSamples, () => raw.send(getItem)),
        timed(documentGetSamples, () => documents.send(documentGet)),
        timed(storeGetSamples, () => aws.deps.store.getToken('client-credentials/hit#', Date.now())),
      ];
      for (let index = 0; index < TABLE_ITERATIONS; index += 1) {
        // Rotate which goes first, so that none always runs right after another's garbage.
        for (let step = 0; step < steps.length; step += 1)
          await (steps[(index + step) % steps.length] as () => Promise<void>)();
      }
      repetitions.push({
        memoryAwsP50: percentile(memoryAws, 50),
        memoryAwsP99: percentile(memoryAws, 99),
        memoryFileP50: percentile(memoryFile, 50),
        memoryFileP99: percentile(memoryFile, 99),
        tableHitP50: percentile(tableHit, 50),
        tableHitP99: percentile(tableHit, 99),
        getItemP50: percentile(getItemSamples, 50),
        getItemP99: percentile(getItemSamples, 99),
        documentGetP50: percentile(documentGetSamples, 50),
        storeGetP50: percentile(storeGetSamples, 50),
        ratioP50: percentile(tableHit, 50) / percentile(getItemSamples, 50),
        ratioP99: percentile(tableHit, 99) / percentile(getItemSamples, 99),
      });
    }

    const med = mediansOf(repetitions);
    const scenario = '1 hit path';
    const rows: Row[] = [
      {
        scenario,
        metric: 'in-memory hit, AWS config (Secrets Manager source) p50 / p99',
        value: `${us(med.memoryAwsP50)} / ${us(med.memoryAwsP99)}`,
        target: 'µs (< 1 ms)',
        met: med.memoryAwsP50 < 1,
      },
      {
        scenario,
        metric: 'in-memory hit, local mode (connector file read per vend) p50 / p99',
        value: `${us(med.memoryFileP50)} / ${us(med.memoryFileP99)}`,
      },
      {
        scenario,
        metric: 'DynamoDB-hit vend p50 / p99',
        value: `${ms(med.tableHitP50)} / ${ms(med.tableHitP99)}`,
      },
      {
        scenario,
        metric: 'raw GetItem (same dynalite, same item) p50 / p99',
        value: `${ms(med.getItemP50)} / ${ms(med.getItemP99)}`,
      },
      {
        scenario,
        metric: 'the same read through lib-dynamodb DocumentClient · through the token store, p50',
        value: `${ms(med.documentGetP50)} · ${ms(med.storeGetP50)}`,
      },
      {
        scenario,
        metric: 'DynamoDB-hit vend ÷ raw GetItem, p50 (p99)',
        value: `${ratio(med.ratioP50)} (${ratio(med.ratioP99)})`,
        target: '≤ 1.3×',
        met: med.ratioP50 <= 1.3,
      },
    ];
    return {
      rows,
      data: {
        iterations: { memory: MEMORY_ITERATIONS, table: TABLE_ITERATIONS, warmup: WARMUP },
        unit: 'ms',
        median: med,
        secretsManagerReads: secretsManager.calls.get('GetSecretValue') ?? 0,
        repetitions,
      },
    };
  });
}
