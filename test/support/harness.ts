import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, ProvisionedThroughputExceededException } from '@aws-sdk/client-dynamodb';
import { createRuntime, type Runtime } from '../../functions/lambda/composition.ts';
import { loadConfig } from '../../functions/lambda/config.ts';
import { type EmbeddedDynamoDB, ensureTable, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { LOCAL_NETWORK } from '../../local/network.ts';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import { EncryptionSdkSealer } from '../../shared/adapters/encryption-sdk-sealer.ts';
import { FileConnectorSource } from '../../shared/adapters/file-connector-store.ts';
import type { ConnectorRef, Family } from '../../shared/core/identifiers.ts';
import type { VendResponse } from '../../shared/core/vend-response.ts';
import type { ConnectorSource, ReplaceCheck } from '../../shared/ports/connector-store.ts';
import type { HttpClient } from '../../shared/ports/http.ts';
import type { KmsSigner } from '../../shared/ports/kms-signer.ts';
import type { Log } from '../../shared/ports/log.ts';
import type { MetricName, MetricsSink } from '../../shared/ports/metrics.ts';
import type { TokenSealer } from '../../shared/ports/token-sealer.ts';
import type { TokenStore } from '../../shared/ports/token-table.ts';
import { forceRefresh } from '../../shared/use-cases/force-refresh.ts';
import { type RotationOptions, type RotationReport, rotateConnectors } from '../../shared/use-cases/rotate.ts';
import { reconcileConnectors } from '../../shared/use-cases/sync.ts';
import { vendToken } from '../../shared/use-cases/vend.ts';
import type { VendRequest } from '../../shared/use-cases/vend-request.ts';

/** A caller allowed by the connectors the harness writes. */
export const CALLER = { arn: 'arn:aws:sts::111122223333:assumed-role/workload/session-1', accountId: '111122223333' };
export const CALLER_ROLE = 'arn:aws:iam::111122223333:role/workload';

export const localCredentials = { accessKeyId: 'local', secretAccessKey: 'local' };

/** A clock the test moves; everything the vendor decides by time reads it. */
export function manualClock(start = Date.now()) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** The file connector store, whose refresh-token writes fail while `failing` is set: a Secrets Manager outage. */
export class SwitchableSource implements ConnectorSource {
  failing = false;
  readonly #inner: FileConnectorSource;
  constructor(dir: string) {
    this.#inner = new FileConnectorSource(dir);
  }
  read(ref: ConnectorRef) {
    return this.#inner.read(ref);
  }
  list() {
    return this.#inner.list();
  }
  listChanged(since: number) {
    return this.#inner.listChanged(since);
  }
  get checkpointIntervalMs() {
    return this.#inner.checkpointIntervalMs;
  }
  /** Every write the vendor attempted, failed ones included. */
  writes = 0;
  async writeRefreshToken(ref: ConnectorRef, refreshToken: string, mayReplace: ReplaceCheck) {
    this.writes += 1;
    if (this.failing) throw new Error('connector store unavailable');
    return this.#inner.writeRefreshToken(ref, refreshToken, mayReplace);
  }
}

/** Log lines kept in memory, so tests can look for secrets in them. */
export class CapturedLog implements Log {
  readonly lines: string[] = [];
  debug = (message: string, ...extra: Record<string, unknown>[]) => this.#push('DEBUG', message, extra);
  info = (message: string, ...extra: Record<string, unknown>[]) => this.#push('INFO', message, extra);
  warn = (message: string, ...extra: Record<string, unknown>[]) => this.#push('WARN', message, extra);
  error = (message: string, ...extra: Record<string, unknown>[]) => this.#push('ERROR', message, extra);
  #push(level: string, message: string, extra: Record<string, unknown>[]) {
    this.lines.push(JSON.stringify({ level, message, ...Object.assign({}, ...extra) }));
  }
}

export function dynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: localCredentials });
}

/** Which DynamoDB calls fail: given the SDK command name (`PutItemCommand`, …) and its input. */
export type FaultRule = (commandName: string, input: Record<string, unknown>) => boolean;

/**
 * A DynamoDB client whose matching calls fail with DynamoDB's own throttling exception, injected through the
 * SDK's middleware stack (its extension point), so the adapter's real error handling runs.
 */
export function faultyDynamoClient(endpoint: string, rule: { current: FaultRule }): DynamoDBClient {
  const client = dynamoClient(endpoint);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (rule.current(context.commandName ?? '', args.input as Record<string, unknown>)) {
        throw new ProvisionedThroughputExceededException({ message: 'injected throttling', $metadata: {} });
      }
      return next(args);
    },
    { step: 'initialize', name: 'injectFaults' },
  );
  return client;
}

export interface Harness {
  readonly dynamo: EmbeddedDynamoDB;
  readonly connectorsDir: string;
  readonly tableName: string;
  readonly store: TokenStore;
  /** The key the harness's token table is sealed with. */
  readonly sealer: TokenSealer;
  /** Writes `<dir>/<family>/<id>.json`. */
  writeConnector(family: Family, connectorId: string, document: object | string): Promise<void>;
  readConnector(family: Family, connectorId: string): Promise<Record<string, unknown>>;
  /** A vendor "process": its own memory and lease owner, sharing the table and folder. */
  vendor(overrides?: VendorOverrides): Vendor;
  close(): Promise<void>;
}

export interface VendorOverrides {
  readonly env?: Record<string, string>;
  readonly http?: HttpClient;
  readonly now?: () => number;
  readonly log?: Log;
  readonly source?: ConnectorSource;
  readonly store?: TokenStore;
  readonly metrics?: MetricsSink;
  readonly kms?: KmsSigner;
}

export interface Vendor {
  readonly deps: Runtime;
  readonly log: CapturedLog | Log;
  vend(family: Family | string, connectorId: string, extra?: Partial<VendRequest>): Promise<VendResponse>;
}

/** dynalite, a fresh table and a connectors folder; each `vendor()` is one container's worth of state. */
export async function startHarness(): Promise<Harness> {
  const dynamo = await startEmbeddedDynamoDB();
  const tableName = `tokens-${randomUUID()}`;
  const client = dynamoClient(dynamo.endpoint);
  await ensureTable(client, tableName);
  const connectorsDir = await mkdtemp(join(tmpdir(), 'token-vendor-test-'));
  // One key for every "container" of the harness, as one KMS key serves every function.
  const sealer = EncryptionSdkSealer.ephemeral();
  const store = new DynamoDBTokenStore({ tableName, client, sealer });

  return {
    dynamo,
    connectorsDir,
    tableName,
    store,
    sealer,
    async writeConnector(family, connectorId, document) {
      await mkdir(join(connectorsDir, family), { recursive: true });
      const text = typeof document === 'string' ? document : JSON.stringify(document, null, 2);
      await writeFile(join(connectorsDir, family, `${connectorId}.json`), text);
    },
    async readConnector(family, connectorId) {
      return JSON.parse(await readFile(join(connectorsDir, family, `${connectorId}.json`), 'utf8')) as Record<
        string,
        unknown
      >;
    },
    vendor(overrides = {}) {
      const log = overrides.log ?? new CapturedLog();
      const config = loadConfig({
        TOKEN_VENDOR_TABLE: tableName,
        TOKEN_VENDOR_CONNECTORS_DIR: connectorsDir,
        ...overrides.env,
      });
      const deps = createRuntime(config, log, {
        network: LOCAL_NETWORK,
        store: overrides.store ?? new DynamoDBTokenStore({ tableName, client, sealer }),
        ...(overrides.http === undefined ? {} : { http: overrides.http }),
        ...(overrides.now === undefined ? {} : { now: overrides.now }),
        ...(overrides.source === undefined ? {} : { source: overrides.source }),
        ...(overrides.metrics === undefined ? {} : { metrics: overrides.metrics }),
        ...(overrides.kms === undefined ? {} : { kms: overrides.kms }),
      });
      return {
        deps,
        log,
        vend: (family, connectorId, extra = {}) => {
          const request = { family, connectorId, caller: CALLER, ...extra };
          return request.force === true ? forceRefresh(deps, request) : vendToken(deps, request);
        },
      };
    },
    async close() {
      client.destroy();
      await dynamo.close();
      await rm(connectorsDir, { recursive: true, force: true });
    },
  };
}

/**
 * A scheduled run as local mode makes it: the reconciliation first (here every connector counts as changed, so the
 * ones just written are on the schedule), then the run over what is due.
 */
export async function runSchedule(deps: Runtime, options?: RotationOptions): Promise<RotationReport> {
  await reconcileConnectors(deps, 0);
  return rotateConnectors(deps, options);
}

/** Metrics kept in memory: the sums a container would publish. */
export class CountedMetrics implements MetricsSink {
  readonly counts = new Map<MetricName, number>();
  count(name: MetricName, value = 1): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + value);
  }
  milliseconds(): void {}
}
