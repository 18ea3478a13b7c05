import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  type GlobalSecondaryIndex,
  ResourceInUseException,
  UpdateTableCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { DUE_INDEX, TABLE_KEY } from '../shared/core/table.ts';
import { listen } from './api-gateway.ts';

export interface EmbeddedDynamoDB {
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * dynalite on a free loopback port: DynamoDB's single-item API, for local mode and tests. In memory, or on disk in
 * `path` (a LevelDB folder) so that a restart loses nothing.
 */
export async function startEmbeddedDynamoDB(options: { readonly path?: string } = {}): Promise<EmbeddedDynamoDB> {
  const server = dynalite({
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
    ...(options.path === undefined ? {} : { path: options.path }),
  });
  const port = await listen(server, 0);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
      }),
  };
}

/**
 * Creates the token table when it is missing, as CDK would have; several local instances may race here, and
 * the loser's ResourceInUseException is success. TTL is CDK's job (dynalite does not implement it).
 */
const dueIndex: GlobalSecondaryIndex = {
  IndexName: DUE_INDEX.name,
  KeySchema: [
    { AttributeName: DUE_INDEX.partitionKey, KeyType: 'HASH' },
    { AttributeName: DUE_INDEX.sortKey, KeyType: 'RANGE' },
  ],
  Projection: { ProjectionType: 'KEYS_ONLY' },
};
const indexAttributes = [
  { AttributeName: DUE_INDEX.partitionKey, AttributeType: 'S' as const },
  { AttributeName: DUE_INDEX.sortKey, AttributeType: 'N' as const },
];

export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(
      new CreateTableCommand({
        TableName: tableName,
        AttributeDefinitions: [{ AttributeName: TABLE_KEY, AttributeType: 'S' }, ...indexAttributes],
        KeySchema: [{ AttributeName: TABLE_KEY, KeyType: 'HASH' }],
        GlobalSecondaryIndexes: [dueIndex],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  }
  await waitUntilTableExists({ client, minDelay: 1, maxDelay: 2, maxWaitTime: 60 }, { TableName: tableName });
  // A table kept from an earlier version (local mode's state folder) gets the schedule's index.
  const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
  if (Table?.GlobalSecondaryIndexes?.some((index) => index.IndexName === DUE_INDEX.name) === true) return;
  await client
    .send(
      new UpdateTableCommand({
        TableName: tableName,
        AttributeDefinitions: indexAttributes,
        GlobalSecondaryIndexUpdates: [{ Create: dueIndex }],
      }),
    )
    .catch((error: unknown) => {
      // Another instance added it first.
      if (!(error instanceof ResourceInUseException)) throw error;
    });
}
