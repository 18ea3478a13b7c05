import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBTokenStore } from '../../shared/adapters/dynamodb-token-table.ts';
import { FileConnectorSource } from '../../shared/adapters/file-connector-store.ts';
import { type ConnectorRef, FAMILIES } from '../../shared/core/identifiers.ts';
import type { SealContext, TokenSealer } from '../../shared/ports/token-sealer.ts';
import { reconcileConnectors } from '../../shared/use-cases/sync.ts';
import { dynamoClient, type Harness, startHarness, type Vendor } from '../../test/support/harness.ts';
import { startScriptedServer, tokenAnswer } from '../../test/support/scripted-server.ts';
import type { BenchOptions, Row } from '../support.ts';

/*
 * Scale: 10,000 connectors and 50,000 vends a second over 1,000 warm containers, in two steps.
 *
 * 1. Calibration on the real code: the vend, fetch and schedule code of this repository, over dynalite, with a
 *    simulated clock. Counting adapters record every DynamoDB call (and whether it was a strongly consistent read),
 *    every connector-document read (a GetSecretValue in AWS: counted as if Secrets Manager's cache never held), every
 *    seal and every distinct sealed value a container opens (a KMS GenerateDataKey / Decrypt under per-item data
 *    keys), and every token request. The traffic keeps the ratio that decides the hit path: each container sees
 *    each connector as often as at the target scale (once per 200 s under uniform traffic).
 * 2. The model: the hit path's table reads per connector from its rate per container and the memory's staleness
 *    (checked against step 1's counts, uniform and Zipf), KMS Decrypt from the tokens each container sees, and the
 *    fetch path's per-fetch figures from step 1 times the fetches a second the refresh policy makes; beside each
 *    quota, and a monthly cost at list prices (us-east-1, December 2026).
 */

const TARGET = { connectors: 10_000, vendsPerSecond: 50_000, containers: 1_000 } as const;
/** Calibration: containers, connectors and simulated time such that a container sees a connector once per 200 s. */
const CALIBRATION = { containers: 8, connectors: 200, vendsPerContainerPerSecond: 1, seconds: 1_800 } as const;
const TOKEN_SECONDS = 3_600;
const LIFETIMES = [6, 60, 300, 3_600, 86_400] as const;
const MONTH_SECONDS = 30 * 24 * 3600;

/** What every container's adapters saw. */
interface Counts {
  vends: number;
  eventualReads: number;
  strongReads: number;
  writes: number;
  queries: number;
  documentReads: number;
  seals: number;
  distinctOpens: number;
  tokenRequests: number;
}

const newCounts = (): Counts => ({
  vends: 0,
  eventualReads: 0,
  strongReads: 0,
  writes: 0,
  queries: 0,
  documentReads: 0,
  seals: 0,
  distinctOpens: 0,
  tokenRequests: 0,
});

function countingClient(endpoint: string, counts: Counts): DynamoDBClient {
  const client = dynamoClient(endpoint);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { ConsistentRead?: boolean };
      const command = context.commandName ?? '';
      if (command === 'GetItemCommand') {
        if (input.ConsistentRead === true) counts.strongReads += 1;
        else counts.eventualReads += 1;
      } else if (command === 'QueryCommand') counts.queries += 1;
      else counts.writes += 1;
      return next(args);
    },
    { step: 'initialize', name: 'countCalls' },
  );
  return client;
}

/** One container's sealer: counts seals and the distinct values it had to open (its own LRU keeps the rest). */
class CountingSealer implements TokenSealer {
  readonly #inner: TokenSealer;
  readonly #counts: Counts;
  readonly #opened = new Set<string>();
  constructor(inner: TokenSealer, counts: Counts) {
    this.#inner = inner;
    this.#counts = counts;
  }
  seal(plaintext: string, context: SealContext): Promise<string> {
    this.#counts.seals += 1;
    return this.#inner.seal(plaintext, context);
  }
  open(sealed: string, context: SealContext): Promise<string> {
    if (!this.#opened.has(sealed)) {
      this.#opened.add(sealed);
      this.#counts.distinctOpens += 1;
    }
    return this.#inner.open(sealed, context);
  }
}

class CountingSource extends FileConnectorSource {
  readonly #counts: Counts;
  constructor(dir: string, counts: Counts) {
    super(dir);
    this.#counts = counts;
  }
  override read(ref: ConnectorRef): Promise<string | undefined> {
    this.#counts.documentReads += 1;
    return super.read(ref);
  }
}

/** Zipf weights over `n` items (exponent 1): a few connectors take most of the traffic, as in real fleets. */
function zipfPicker(n: number, random: () => number): () => number {
  const cumulative: number[] = [];
  let total = 0;
  for (let rank = 1; rank <= n; rank += 1) {
    total += 1 / rank;
    cumulative.push(total);
  }
  return () => {
    const target = random() * total;
    let low = 0;
    let high = n - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((cumulative[middle] ?? 0) < target) low = middle + 1;
      else high = middle;
    }
    return low;
  };
}

/** A small deterministic generator, so the two traffic shapes are compared on the same draws. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

async function calibrate(shape: 'uniform' | 'zipf'): Promise<Counts> {
  const harness: Harness = await startHarness();
  const server = await startScriptedServer(() => tokenAnswer({ expires_in: TOKEN_SECONDS }));
  const counts = newCounts();
  try {
    for (let index = 0; index < CALIBRATION.connectors; index += 1) {
      await harness.writeConnector('client-credentials', `c${index}`, {
        grantType: 'client_credentials',
        tokenUrl: server.url,
        clientId: 'c',
        clientSecret: 's',
        allowedPrincipals: ['111122223333'],
      });
    }
    let now = Date.now();
    const clock = () => now;
    const random = seeded(shape === 'uniform' ? 7 : 11);
    const pick =
      shape === 'uniform'
        ? () => Math.floor(random() * CALIBRATION.connectors)
        : zipfPicker(CALIBRATION.connectors, random);
    const containers: Vendor[] = Array.from({ length: CALIBRATION.containers }, () =>
      harness.vendor({
        now: clock,
        // Lambda: a due token is refreshed by the one caller that wins the lease (deterministic under a clock).
        env: { AWS_LAMBDA_FUNCTION_NAME: 'token-vendor-client-credentials' },
        source: new CountingSource(harness.connectorsDir, counts),
        store: new DynamoDBTokenStore({
          tableName: harness.tableName,
          client: countingClient(harness.dynamo.endpoint, counts),
          sealer: new CountingSealer(harness.sealer, counts),
        }),
      }),
    );
    const first = containers[0];
    if (first !== undefined) await reconcileConnectors(first.deps, 0);
    const before = { ...counts };
    for (let second = 0; second < CALIBRATION.seconds; second += 1) {
      now += 1_000;
      await Promise.all(
        containers.map(async (container) => {
          for (let vend = 0; vend < CALIBRATION.vendsPerContainerPerSecond; vend += 1) {
            await container.vend('client-credentials', `c${pick()}`);
            counts.vends += 1;
          }
        }),
      );
    }
    counts.tokenRequests = server.requests.length;
    // What the setup's reconciliation did is not traffic.
    for (const key of ['eventualReads', 'strongReads', 'writes', 'queries', 'documentReads'] as const) {
      counts[key] -= before[key];
    }
    return counts;
  } finally {
    await server.close();
    await harness.close();
  }
}

/**
 * Token requests per lifetime in the steady state: one connector vended every 1/50 of its token's lifetime for
 * twenty lifetimes; the lifetime over the mean time between fetches.
 */
async function requestsPerLifetime(lifetimeSeconds: number): Promise<number> {
  const harness = await startHarness();
  const server = await startScriptedServer(() => tokenAnswer({ expires_in: lifetimeSeconds }));
  try {
    await harness.writeConnector('client-credentials', 'lifetime', {
      grantType: 'client_credentials',
      tokenUrl: server.url,
      clientId: 'c',
      clientSecret: 's',
      allowedPrincipals: ['111122223333'],
    });
    let now = Date.now();
    const vendor = harness.vendor({
      now: () => now,
      env: { AWS_LAMBDA_FUNCTION_NAME: 'token-vendor-client-credentials' },
    });
    const step = (lifetimeSeconds * 1000) / 50;
    const fetchedAt: number[] = [];
    for (let vend = 0; vend < 1_000; vend += 1) {
      const before = server.requests.length;
      await vendor.vend('client-credentials', 'lifetime');
      if (server.requests.length > before) fetchedAt.push(now);
      now += step;
    }
    // Lifetime over the mean time between two fetches.
    const first = fetchedAt[0] ?? 0;
    const last = fetchedAt.at(-1) ?? first;
    return ((fetchedAt.length - 1) * lifetimeSeconds * 1000) / (last - first);
  } finally {
    await server.close();
    await harness.close();
  }
}

/**
 * The scheduled run at 10,000 connectors: every connector on the due index, due times spread over an hour (1-hour
 * tokens); the query for one minute's due connectors, timed on dynalite.
 */
async function dueQuery(): Promise<{ dueInOneMinute: number; queryMs: number }> {
  const harness = await startHarness();
  try {
    const now = Date.now();
    for (let start = 0; start < TARGET.connectors; start += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, offset) =>
          harness.store.setDue(
            `client-credentials/c${start + offset}`,
            now + ((start + offset) * 3_600_000) / TARGET.connectors,
          ),
        ),
      );
    }
    const started = performance.now();
    const due = await harness.store.listDue(now + 60_000, 2_000);
    return { dueInOneMinute: due.length, queryMs: performance.now() - started };
  } finally {
    await harness.close();
  }
}

/** Traffic shares of `n` connectors: uniform, or Zipf with exponent 1. */
function shares(shape: 'uniform' | 'zipf', n: number): number[] {
  if (shape === 'uniform') return Array.from({ length: n }, () => 1 / n);
  const weights = Array.from({ length: n }, (_, index) => 1 / (index + 1));
  const total = weights.reduce((sum, weight) => sum + weight, 0);
  return weights.map((weight) => weight / total);
}

/**
 * The hit path's model: a container that sees connector i at rate r (Poisson) reads the table on a vend unless it
 * read it within the memory's staleness S; one cycle is S plus the wait for the next vend, so a share 1/(r·S + 1)
 * of its vends read the table. Checked against the real code's counts in the calibration.
 */
function tableReadShare(shape: 'uniform' | 'zipf', connectors: number, perContainerPerSecond: number): number {
  const stalenessSeconds = 10;
  return shares(shape, connectors).reduce(
    (sum, share) => sum + share / (perContainerPerSecond * share * stalenessSeconds + 1),
    0,
  );
}

/**
 * KMS Decrypt under per-item data keys (before): a container opens each token of a connector it vends at least once
 * during that token's life (its opened-value cache keeps it after), one Decrypt each.
 */
function decryptsPerContainerPerSecond(
  shape: 'uniform' | 'zipf',
  connectors: number,
  perContainerPerSecond: number,
  cycleSeconds: number,
): number {
  return shares(shape, connectors).reduce(
    (sum, share) => sum + (1 - Math.exp(-perContainerPerSecond * share * cycleSeconds)) / cycleSeconds,
    0,
  );
}

/**
 * KMS under family-scoped data keys (now): a writer seals with one data key per family for 5 minutes (the SDK's
 * cache), and a reader asks KMS once per data key it meets (the test in test/artifacts/kms-server.test.ts shows ten
 * tokens under one data key opened with one Decrypt). In AWS the writers are the refresher's containers (vends hand
 * refreshes over); this bound assumes 10 of them active at once, every vend container meeting every data key.
 */
const DATA_KEY_SECONDS = 300;
const WRITERS = 10;
const FAMILY_COUNT = Object.keys(FAMILIES).length;
const dataKeyDecryptsPerSecond = (containers: number) => (containers * WRITERS * FAMILY_COUNT) / DATA_KEY_SECONDS;
const dataKeysPerSecond = () => (WRITERS * FAMILY_COUNT) / DATA_KEY_SECONDS;

const perSecond = (value: number) => (value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(2));
const dollars = (value: number) => `$${Math.round(value).toLocaleString('en-US')}`;

/** List prices, us-east-1 (December 2026). */
const PRICE = {
  dynamoReadUnit: 0.125 / 1e6,
  dynamoWriteUnit: 0.625 / 1e6,
  secretsManagerCall: 0.05 / 10_000,
  kmsCall: 0.03 / 10_000,
  apiGatewayRequest: 3.5 / 1e6,
  lambdaRequest: 0.2 / 1e6,
  lambdaArmGbSecond: 0.000_013_333_4,
  logsIngestGb: 0.5,
} as const;

export async function scale(_options: BenchOptions): Promise<{ rows: Row[]; data: Record<string, unknown> }> {
  const rows: Row[] = [];
  const lifetimes: Record<string, number> = {};
  for (const lifetime of LIFETIMES) {
    const perLifetime = await requestsPerLifetime(lifetime);
    lifetimes[`${lifetime}s`] = perLifetime;
    const goal = lifetime <= 120 ? 2.2 : lifetime >= 3_600 ? 1.1 : undefined;
    rows.push({
      scenario: '10 scale',
      metric: `token requests per lifetime, ${lifetime.toLocaleString('en-US')} s tokens`,
      value: perLifetime.toFixed(2),
      ...(goal === undefined ? {} : { target: `≤ ${goal}`, met: perLifetime <= goal }),
    });
  }

  const schedule = await dueQuery();
  // Each due connector: its document, its state, one token request (100 ms is a slow server), 16 at a time.
  const runSeconds = schedule.queryMs / 1000 + (schedule.dueInOneMinute * 0.1) / 16;
  rows.push({
    scenario: '10 scale',
    metric: `scheduled run, 10,000 connectors: due in a minute, query ms, run share of its 60 s budget`,
    value: `${schedule.dueInOneMinute}, ${schedule.queryMs.toFixed(0)} ms, ${((runSeconds / 60) * 100).toFixed(1)} %`,
    target: '< 10 %',
    met: runSeconds / 60 < 0.1,
  });

  const shapes: Record<string, unknown> = {};
  for (const shape of ['uniform', 'zipf'] as const) {
    const counts = await calibrate(shape);
    const perVend = (value: number) => value / counts.vends;
    const requestsPerLifetime = lifetimes['3600s'] ?? 1;
    const fetchesPerSecondAtTarget = (TARGET.connectors * requestsPerLifetime) / TOKEN_SECONDS;
    const cycleSeconds = TOKEN_SECONDS / requestsPerLifetime;
    const perContainer = TARGET.vendsPerSecond / TARGET.containers;
    // The model, checked against the real code at the calibration's scale.
    const modelAtCalibration = tableReadShare(shape, CALIBRATION.connectors, CALIBRATION.vendsPerContainerPerSecond);
    const measuredAtCalibration = perVend(counts.eventualReads);
    const readShare = tableReadShare(shape, TARGET.connectors, perContainer);
    // The fetch path scales with the fetches the refresh policy makes.
    const perFetch = (value: number) => value / Math.max(1, counts.tokenRequests);
    const hitReads = readShare * TARGET.vendsPerSecond;
    const strongReads = perFetch(counts.strongReads) * fetchesPerSecondAtTarget;
    const readUnits = hitReads * 0.5 + strongReads;
    const writes = perFetch(counts.writes) * fetchesPerSecondAtTarget;
    const getSecretValue = perFetch(counts.documentReads) * fetchesPerSecondAtTarget;
    const kmsDecryptPerToken =
      decryptsPerContainerPerSecond(shape, TARGET.connectors, perContainer, cycleSeconds) * TARGET.containers;
    const kmsDecrypt = Math.min(kmsDecryptPerToken, dataKeyDecryptsPerSecond(TARGET.containers));
    const kmsGenerate = Math.min(perFetch(counts.seals) * fetchesPerSecondAtTarget, dataKeysPerSecond());
    const model = {
      vendsPerSecond: TARGET.vendsPerSecond,
      tableReadShareModelAtCalibration: modelAtCalibration,
      tableReadShareMeasuredAtCalibration: measuredAtCalibration,
      tableReadShare: readShare,
      readUnitsPerVend: readUnits / TARGET.vendsPerSecond,
      getSecretValuePerVend: getSecretValue / TARGET.vendsPerSecond,
      readUnitsPerSecond: readUnits,
      writeUnitsPerSecond: writes,
      getSecretValuePerSecond: getSecretValue,
      kmsDecryptPerSecond: kmsDecrypt,
      kmsDecryptPerSecondWithPerItemDataKeys: kmsDecryptPerToken,
      kmsGenerateDataKeyPerSecond: kmsGenerate,
      tokenRequestsPerSecond: fetchesPerSecondAtTarget,
    };
    const monthly = {
      dynamodb: (readUnits * PRICE.dynamoReadUnit + writes * PRICE.dynamoWriteUnit) * MONTH_SECONDS,
      secretsManager: getSecretValue * PRICE.secretsManagerCall * MONTH_SECONDS,
      kms: (kmsDecrypt + kmsGenerate) * PRICE.kmsCall * MONTH_SECONDS,
      // One EMF record per container per minute (about 1 KB).
      metricsLogs: ((TARGET.containers * 1024) / 60 / 1e9) * PRICE.logsIngestGb * MONTH_SECONDS,
      apiGateway: TARGET.vendsPerSecond * PRICE.apiGatewayRequest * MONTH_SECONDS,
      lambda: TARGET.vendsPerSecond * (PRICE.lambdaRequest + 0.512 * 0.01 * PRICE.lambdaArmGbSecond) * MONTH_SECONDS,
    };
    shapes[shape] = { calibration: counts, model, monthly };
    const label = `${shape}, 50,000 vends/s`;
    rows.push(
      {
        scenario: '10 scale',
        metric: `${shape}: share of vends reading the table at the calibration's scale, real code vs model`,
        value: `${measuredAtCalibration.toFixed(3)} vs ${modelAtCalibration.toFixed(3)}`,
      },
      {
        scenario: '10 scale',
        metric: `${label}: DynamoDB read units per vend (eventually consistent hit path)`,
        value: model.readUnitsPerVend.toFixed(3),
        target: shape === 'uniform' ? '≤ 0.5' : '≤ 0.5 (far fewer)',
        met: model.readUnitsPerVend <= 0.5,
      },
      {
        scenario: '10 scale',
        metric: `${label}: DynamoDB read units/s (table default quota 40,000)`,
        value: perSecond(readUnits),
        target: '≤ 40,000',
        met: readUnits <= 40_000,
      },
      {
        scenario: '10 scale',
        metric: `${label}: DynamoDB write units/s`,
        value: perSecond(writes),
      },
      {
        scenario: '10 scale',
        metric: `${label}: GetSecretValue per vend (quota 10,000/s)`,
        value: `${(model.getSecretValuePerVend * 100).toFixed(4)} % (${perSecond(getSecretValue)}/s)`,
        target: '≤ 1 %',
        met: model.getSecretValuePerVend <= 0.01,
      },
      {
        scenario: '10 scale',
        metric: `${label}: KMS Decrypt/s (at most; per-item data keys: …), GenerateDataKey/s (quota 5,500/s+)`,
        value: `${perSecond(kmsDecrypt)} (${perSecond(kmsDecryptPerToken)}), ${perSecond(kmsGenerate)}`,
      },
      {
        scenario: '10 scale',
        metric: `${label}: token requests/s to token servers`,
        value: perSecond(fetchesPerSecondAtTarget),
      },
      {
        scenario: '10 scale',
        metric: `${label}: monthly DynamoDB, Secrets Manager, KMS, metrics logs`,
        value: [monthly.dynamodb, monthly.secretsManager, monthly.kms, monthly.metricsLogs].map(dollars).join(', '),
      },
      {
        scenario: '10 scale',
        metric: `${label}: monthly API Gateway, Lambda (context: not the design's)`,
        value: [monthly.apiGateway, monthly.lambda].map(dollars).join(', '),
      },
    );
  }
  return { rows, data: { lifetimes, schedule, shapes, target: TARGET, calibration: CALIBRATION } };
}
