import {
  createDynamoDBClient,
  createKmsClient,
  createLambdaClient,
  createSecretsManagerClient,
} from '../../shared/adapters/aws-clients.ts';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import { EncryptionSdkSealer } from '../../shared/adapters/encryption-sdk-sealer.ts';
import { FileConnectorSource } from '../../shared/adapters/file-connector-store.ts';
import { createHttpClient } from '../../shared/adapters/http-client.ts';
import { KmsSignerAdapter } from '../../shared/adapters/kms-signer.ts';
import { LambdaRefreshRequests } from '../../shared/adapters/lambda-refresh-requests.ts';
import { noMetrics } from '../../shared/adapters/powertools-metrics.ts';
import { SecretsManagerConnectorSource } from '../../shared/adapters/secrets-manager-connector-store.ts';
import { systemClock } from '../../shared/adapters/system-clock.ts';
import type { NetworkPolicy } from '../../shared/domain/network-policy.ts';
import type { Clock } from '../../shared/ports/clock.ts';
import type { ConnectorSource } from '../../shared/ports/connector-store.ts';
import type { HttpClient } from '../../shared/ports/http.ts';
import type { KmsSigner } from '../../shared/ports/kms-signer.ts';
import type { Log } from '../../shared/ports/log.ts';
import type { MetricsSink } from '../../shared/ports/metrics.ts';
import type { RefreshRequests } from '../../shared/ports/refresh-requests.ts';
import type { TokenSealer } from '../../shared/ports/token-sealer.ts';
import type { TokenStore } from '../../shared/ports/token-table.ts';
import { ConnectorDocuments } from '../../shared/use-cases/connector-documents.ts';
import type { ForceRefreshDeps } from '../../shared/use-cases/force-refresh.ts';
import { TokenFetcher } from '../../shared/use-cases/refresh/token-fetcher.ts';
import { ThrottledRefreshRequests } from '../../shared/use-cases/refresh-ahead.ts';
import type { RotateDeps } from '../../shared/use-cases/rotate.ts';
import type { SyncDeps } from '../../shared/use-cases/sync.ts';
import { TokenMemory } from '../../shared/use-cases/token-memory.ts';
import type { VendDeps } from '../../shared/use-cases/vend.ts';
import type { Config } from './config.ts';
import { type FunctionTracing, noTracing } from './tracing.ts';

export interface RuntimeOverrides {
  /** The current invocation's correlation ID (the logger's), passed on to the refresher with a demand. */
  readonly correlationId?: () => string | undefined;
  readonly source?: ConnectorSource;
  readonly store?: TokenStore;
  readonly http?: HttpClient;
  /** Replaces the clock's `now` (tests move time by hand); sleeping and jitter stay real. */
  readonly now?: () => number;
  readonly metrics?: MetricsSink;
  /**
   * Where token URLs may point. Only local mode's composition passes one (loopback allowed); a function in AWS
   * gets https to public addresses, private ones only with `TOKEN_VENDOR_ALLOW_PRIVATE_NETWORKS=true`, whatever
   * else its environment holds.
   */
  readonly network?: NetworkPolicy;
  readonly refreshRequests?: RefreshRequests;
  /** Seals token values in the table; local mode passes one under its own key, AWS uses the KMS key. */
  readonly sealer?: TokenSealer;
  /** X-Ray through Powertools where the function has tracing on; nothing otherwise. */
  readonly tracing?: FunctionTracing;
  /** Signs assertions with KMS keys; by default KMS itself (endpoint from AWS_ENDPOINT_URL_KMS when set). */
  readonly kms?: KmsSigner;
}

function sealerFor(config: Config, overrides: RuntimeOverrides): TokenSealer {
  if (overrides.sealer !== undefined) return overrides.sealer;
  if (config.tokenKeyId === undefined) {
    throw new Error('Invalid setting TOKEN_VENDOR_TOKEN_KEY_ID: required, the table holds no token in clear');
  }
  return EncryptionSdkSealer.kms(config.tokenKeyId, undefined, (client) =>
    (overrides.tracing ?? noTracing).instrument(client),
  );
}

/** Everything one container's use cases take: each reads only its own part. */
export type Runtime = VendDeps & ForceRefreshDeps & RotateDeps & SyncDeps;

/**
 * The composition root: builds the collaborators the use cases take, from validated configuration. Handler
 * modules call it once per container; tests call it with real loopback servers behind the overrides.
 */
export function createRuntime(config: Config, log: Log, overrides: RuntimeOverrides = {}): Runtime {
  const tracing = overrides.tracing ?? noTracing;
  const source =
    overrides.source ??
    (config.connectorsDir !== undefined
      ? new FileConnectorSource(config.connectorsDir)
      : new SecretsManagerConnectorSource({
          client: tracing.instrument(createSecretsManagerClient()),
          prefix: config.secretPrefix,
          maxAgeSeconds: config.secretMaxAgeSeconds,
        }));
  // The endpoint comes from the SDK's own AWS_ENDPOINT_URL_DYNAMODB when set (local mode, tests).
  const store =
    overrides.store ??
    new DynamoDBTokenStore({
      tableName: config.tableName,
      client: tracing.instrument(createDynamoDBClient()),
      sealer: sealerFor(config, overrides),
    });
  const { now } = overrides;
  const clock: Clock = now === undefined ? systemClock : { ...systemClock, now };
  const network = overrides.network ?? { allowLoopback: false, allowPrivate: config.allowPrivateNetworks };
  const refreshRequests =
    overrides.refreshRequests ??
    (config.refreshFunction === undefined
      ? undefined
      : new LambdaRefreshRequests({
          client: tracing.instrument(createLambdaClient()),
          functionName: config.refreshFunction,
          correlationId: overrides.correlationId,
        }));
  const fetcher = new TokenFetcher({
    source,
    store,
    http: overrides.http ?? createHttpClient(network),
    // A client costs nothing until a connector with a KMS signing key uses it.
    kms: overrides.kms ?? new KmsSignerAdapter(createKmsClient()),
    clock,
    log,
    tracing,
    settings: {
      leaseMs: config.leaseMs,
      waitMs: config.waitMs,
      attemptTimeoutMs: config.attemptTimeoutMs,
      fetchDeadlineMs: config.fetchDeadlineMs,
      maxAttempts: config.maxAttempts,
      defaultMinTtlMs: config.defaultMinTtlSeconds * 1000,
      refreshMarginShare: config.refreshMarginShare,
      idleRefreshMs: config.idleRefreshMs,
    },
  });
  return {
    source,
    documents: new ConnectorDocuments(source, log),
    store,
    fetcher,
    clock,
    log,
    memory: new TokenMemory(),
    refreshRequests: refreshRequests === undefined ? undefined : new ThrottledRefreshRequests(refreshRequests),
    metrics: overrides.metrics ?? noMetrics,
    settings: {
      network,
      forcedRefreshSpacingMs: config.forcedRefreshSpacingMs,
      memoryStalenessMs: config.memoryStalenessMs,
      defaultMinTtlSeconds: config.defaultMinTtlSeconds,
      refreshAhead: config.refreshAhead,
      refreshSpread: clock.random(),
    },
  };
}
