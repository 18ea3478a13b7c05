import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/**
 * The floor under a vend function's cold start (bench scenario 5): the two AWS SDK clients a vend needs, built at
 * init, and a first call that reads one table item and one secret, as a vend served from the table does at least.
 */
const dynamodb = new DynamoDBClient({});
const secrets = new SecretsManagerClient({});

export const handler = async () => {
  await Promise.all([
    dynamodb.send(new GetItemCommand({ TableName: process.env.TOKEN_VENDOR_TABLE, Key: { pk: { S: 'floor' } } })),
    secrets.send(new GetSecretValueCommand({ SecretId: process.env.BENCH_FLOOR_SECRET })),
  ]);
  return { statusCode: 200, body: '' };
};
