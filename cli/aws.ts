import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { Credentials } from '../client/index.ts';
import { createDynamoDBClient, createKmsClient, createSecretsManagerClient } from '../shared/adapters/aws-clients.ts';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * The standard credential chain, read from `env` rather than the process's environment so the CLI can be run
 * in-process with its own: access keys in `env` first, as the SDK's own chain puts them first, else the rest of the
 * chain (SSO, profiles, web identity, container and instance roles).
 */
export function credentialsFrom(env: Env): Credentials {
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_SESSION_TOKEN } = env;
  if (accessKeyId !== undefined && accessKeyId !== '' && secretAccessKey !== undefined && secretAccessKey !== '') {
    return {
      accessKeyId,
      secretAccessKey,
      ...(AWS_SESSION_TOKEN === undefined ? {} : { sessionToken: AWS_SESSION_TOKEN }),
    };
  }
  return fromNodeProviderChain(env.AWS_PROFILE === undefined ? {} : { profile: env.AWS_PROFILE });
}

export function regionFrom(env: Env, flag: string | undefined): string | undefined {
  return flag ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
}

/** The SDK's service-specific endpoint variable, then the global one (AWS SDK "service-specific endpoints"). */
function endpointFrom(env: Env, service: 'DYNAMODB' | 'SECRETS_MANAGER' | 'KMS'): { endpoint?: string } {
  const endpoint = env[`AWS_ENDPOINT_URL_${service}`] ?? env.AWS_ENDPOINT_URL;
  return endpoint === undefined || endpoint === '' ? {} : { endpoint };
}

const clientConfig = (env: Env, region: string | undefined, service: 'DYNAMODB' | 'SECRETS_MANAGER' | 'KMS') => ({
  region: region ?? 'us-east-1',
  credentials: credentialsFrom(env),
  ...endpointFrom(env, service),
});

/** Bounded like the functions' clients: a table or store that never answers ends the command, not the operator's day. */
export const dynamoDBClient = (env: Env, region: string | undefined) =>
  createDynamoDBClient(clientConfig(env, region, 'DYNAMODB'));

export const secretsManagerClient = (env: Env, region: string | undefined) =>
  createSecretsManagerClient(clientConfig(env, region, 'SECRETS_MANAGER'));

/** For `connect` with a `private_key_jwt` connector whose key is in KMS: the code exchange signs as the functions do. */
export const kmsClient = (env: Env, region: string | undefined) => createKmsClient(clientConfig(env, region, 'KMS'));
