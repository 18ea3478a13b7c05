import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { KMSClient, type KMSClientConfig } from '@aws-sdk/client-kms';
import { LambdaClient, type LambdaClientConfig } from '@aws-sdk/client-lambda';
import { SecretsManagerClient, type SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';
import { NodeHttpHandler } from '@smithy/node-http-handler';

/** Time bounds of one SDK call; the SDK's own defaults wait for ever on a server that accepts and never answers. */
export interface CallTimeouts {
  /** Milliseconds to establish a connection. */
  readonly connectionTimeoutMs: number;
  /** Milliseconds for one attempt's answer once connected. */
  readonly requestTimeoutMs: number;
  /** Attempts in all, the SDK's retries included. */
  readonly maxAttempts: number;
}

/** A single-item read or write answers in milliseconds; two bounded attempts keep a hung table within ~2 s. */
export const DYNAMODB_TIMEOUTS: CallTimeouts = { connectionTimeoutMs: 1000, requestTimeoutMs: 1000, maxAttempts: 2 };
export const SECRETS_MANAGER_TIMEOUTS: CallTimeouts = {
  connectionTimeoutMs: 1000,
  requestTimeoutMs: 2000,
  maxAttempts: 2,
};

/** An asynchronous invocation is queued by Lambda and answered at once; a vend waits for it only this long. */
export const LAMBDA_TIMEOUTS: CallTimeouts = { connectionTimeoutMs: 500, requestTimeoutMs: 1000, maxAttempts: 2 };

/** A KMS call answers in milliseconds: a seal on a table miss, a signature per signed token request. */
export const KMS_TIMEOUTS: CallTimeouts = { connectionTimeoutMs: 1000, requestTimeoutMs: 2000, maxAttempts: 2 };

/** A request handler whose every call ends within `timeouts` (the SDK's defaults wait for ever). */
export function boundedHandler(timeouts: CallTimeouts): NodeHttpHandler {
  return new NodeHttpHandler({
    connectionTimeout: timeouts.connectionTimeoutMs,
    requestTimeout: timeouts.requestTimeoutMs,
    // Without this the handler only logs a warning when requestTimeout passes and the call keeps waiting.
    throwOnRequestTimeout: true,
  });
}

/** A DynamoDB client whose every call ends within its timeouts (endpoint from AWS_ENDPOINT_URL_DYNAMODB when set). */
export function createDynamoDBClient(
  config: DynamoDBClientConfig = {},
  timeouts: CallTimeouts = DYNAMODB_TIMEOUTS,
): DynamoDBClient {
  return new DynamoDBClient({ maxAttempts: timeouts.maxAttempts, requestHandler: boundedHandler(timeouts), ...config });
}

/** A Secrets Manager client whose every call ends within its timeouts. */
export function createSecretsManagerClient(
  config: SecretsManagerClientConfig = {},
  timeouts: CallTimeouts = SECRETS_MANAGER_TIMEOUTS,
): SecretsManagerClient {
  return new SecretsManagerClient({
    maxAttempts: timeouts.maxAttempts,
    requestHandler: boundedHandler(timeouts),
    ...config,
  });
}

/** A Lambda client for asynchronous invocations, bounded like the others. */
export function createLambdaClient(
  config: LambdaClientConfig = {},
  timeouts: CallTimeouts = LAMBDA_TIMEOUTS,
): LambdaClient {
  return new LambdaClient({ maxAttempts: timeouts.maxAttempts, requestHandler: boundedHandler(timeouts), ...config });
}

/** A KMS client bounded like the others (endpoint from AWS_ENDPOINT_URL_KMS when set). */
export function createKmsClient(config: KMSClientConfig = {}, timeouts: CallTimeouts = KMS_TIMEOUTS): KMSClient {
  return new KMSClient({ maxAttempts: timeouts.maxAttempts, requestHandler: boundedHandler(timeouts), ...config });
}
