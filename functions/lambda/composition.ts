import { setTimeout as sleep } from 'node:timers/promises';
import { createDynamoDBClient, createSecretsManagerClient } from '../../shared/adapters/aws-clients.ts';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import { FileConnectorSource } from '../../shared/adapters/file-connector-store.ts';
import { createHttpClient, type HttpClient } from '../../shared/adapters/http-client.ts';
import { type MetricsSink, noMetrics } from '../../shared/adapters/powertools-metrics.ts';
import { SecretsManagerConnectorSource } from '../../shared/adapters/secrets-manager-connector-store.ts';
import type { ConnectorSource } from '../../shared/ports/connector-store.ts';
import type { Log } from '../../shared/ports/log.ts';
import type { TokenStore } from '../../shared/ports/token-table.ts';
import { TokenFetcher } from '../../shared/use-cases/token-fetcher.ts';
import { TokenMemory, type VendDeps } from '../../shared/use-cases/vend.ts';
import type { Config } from './config.ts';

export interface RuntimeOverrides {
  readonly source?: ConnectorSource;
  readonly store?: TokenStore;
  readonly http?: HttpClient;
  readonly now?: () => number;
  readonly metrics?: MetricsSink;
}

/**
 * The composition root: builds the collaborators the use cases take, from validated configuration. Handler
 * modules call it once per container; tests call it with real loopback servers behind the overrides.
 */
export function createVendDeps(config: Config, log: Log, overrides: RuntimeOverrides = {}): VendDeps {
  const source =
    overrides.source ??
    (config.connectorsDir !== undefined
      ? new FileConnectorSource(config.connectorsDir)
      : new SecretsManagerConnectorSource({
          client: createSecretsManagerClient(),
          prefix: config.secretPrefix,
          maxAgeSeconds: config.secretMaxAgeSeconds,
        }));
  // The endpoint comes from the SDK's own AWS_ENDPOINT_URL_DYNAMODB when set (local mode, tests).
  const store =
    overrides.store ?? new DynamoDBTokenStore({ tableName: config.tableName, client: createDynamoDBClient() });
  const now = overrides.now ?? Date.now;
  const localMode = config.connectorsDir !== undefined;
  const fetcher = new TokenFetcher({
    source,
    store,
    http:
      overrides.http ??
      createHttpClient({ allowLoopback: localMode, allowPrivate: localMode || config.allowPrivateNetworks }),
    now,
    random: Math.random,
    sleep: (ms) => sleep(ms),
    log,
    settings: {
      leaseMs: config.leaseMs,
      waitMs: config.waitMs,
      attemptTimeoutMs: config.attemptTimeoutMs,
      fetchDeadlineMs: config.fetchDeadlineMs,
      maxAttempts: config.maxAttempts,
      defaultMinTtlMs: config.defaultMinTtlSeconds * 1000,
    },
  });
  return {
    source,
    store,
    fetcher,
    now,
    log,
    memory: new TokenMemory(),
    metrics: overrides.metrics ?? noMetrics,
    settings: {
      network: { allowLoopback: localMode, allowPrivate: localMode || config.allowPrivateNetworks },
      forcedRefreshSpacingMs: config.forcedRefreshSpacingMs,
      memoryStalenessMs: config.memoryStalenessMs,
      defaultMinTtlSeconds: config.defaultMinTtlSeconds,
      refreshAhead: config.refreshAhead,
      refreshSpread: Math.random(),
    },
  };
}
