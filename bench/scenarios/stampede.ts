import { startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import {
  type BenchOptions,
  benchVend,
  mediansOf,
  ms,
  ownTokenGrant,
  percentile,
  type Row,
  startBenchOidc,
  startLocalModes,
  withCleanup,
} from '../support.ts';

const PROCESSES = 4;
const CONCURRENT = 200;
const SERVER_DELAY_MS = 100;

/** The plain alternative: a per-process client with a token cache, no vendor. */
class PlainClient {
  readonly #fetchToken: () => Promise<{ value: string; expiresIn: number }>;
  readonly #singleFlight: boolean;
  #token: { value: string; expiresAt: number } | undefined;
  #inFlight: Promise<string> | undefined;

  constructor(fetchToken: () => Promise<{ value: string; expiresIn: number }>, singleFlight: boolean) {
    this.#fetchToken = fetchToken;
    this.#singleFlight = singleFlight;
  }

  async token(): Promise<string> {
    if (this.#token !== undefined && this.#token.expiresAt - Date.now() > 60_000) return this.#token.value;
    if (this.#singleFlight && this.#inFlight !== undefined) return this.#inFlight;
    const flight = this.#fetchToken().then(({ value, expiresIn }) => {
      this.#token = { value, expiresAt: Date.now() + expiresIn * 1000 };
      return value;
    });
    if (this.#singleFlight) this.#inFlight = flight.finally(() => (this.#inFlight = undefined));
    return flight;
  }
}

type Repetition = {
  readonly vendorTokenRequests: number;
  readonly vendorOk: number;
  readonly vendorDistinctTokens: number;
  readonly vendorP50: number;
  readonly vendorMax: number;
  readonly naiveTokenRequests: number;
  readonly singleFlightTokenRequests: number;
};

/**
 * Scenario 3: 200 concurrent cold vends spread over 4 local-mode processes on one DynamoDB, beside the same 200
 * calls through 4 isolated in-process plain clients (oauth4webapi + a token cache each; they share nothing, as 4
 * processes would not), once with a naive cache and once with per-process single flight.
 */
export async function stampede(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const oidc = await startBenchOidc(defer, { delayMs: SERVER_DELAY_MS });
    const dynamo = await startEmbeddedDynamoDB();
    defer(() => dynamo.close());
    // One cold connector per repetition, so that each repetition starts with nothing cached anywhere.
    const processes = await startLocalModes(defer, {
      tokenUrl: oidc.tokenUrl,
      connectorIds: Array.from({ length: options.repetitions }, (_, index) => `storm-${index}`),
      processes: PROCESSES,
      dynamoEndpoint: dynamo.endpoint,
    });

    const ownToken = ownTokenGrant(oidc.tokenUrl);
    const grant = async () => {
      const tokens = await ownToken();
      return { value: tokens.access_token, expiresIn: tokens.expires_in ?? 3600 };
    };
    const plainRun = async (singleFlight: boolean) => {
      const before = oidc.tokenRequests();
      const clients = Array.from({ length: PROCESSES }, () => new PlainClient(grant, singleFlight));
      await Promise.all(
        Array.from({ length: CONCURRENT }, (_, index) => (clients[index % PROCESSES] as PlainClient).token()),
      );
      return oidc.tokenRequests() - before;
    };

    const repetitions: Repetition[] = [];
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      const before = oidc.tokenRequests();
      const answers = await Promise.all(
        Array.from({ length: CONCURRENT }, async (_, index) => {
          const started = performance.now();
          const url = `${processes[index % PROCESSES]?.url}/tokens/client-credentials/storm-${repetition}`;
          const { status, token } = await benchVend(url);
          return { status, token, latency: performance.now() - started };
        }),
      );
      const vendorTokenRequests = oidc.tokenRequests() - before;
      const latencies = answers.map((answer) => answer.latency);
      repetitions.push({
        vendorTokenRequests,
        vendorOk: answers.filter((answer) => answer.status === 200).length,
        vendorDistinctTokens: new Set(answers.map((answer) => answer.token)).size,
        vendorP50: percentile(latencies, 50),
        vendorMax: Math.max(...latencies),
        naiveTokenRequests: await plainRun(false),
        singleFlightTokenRequests: await plainRun(true),
      });
    }
    const med = mediansOf(repetitions);
    const worst = Math.max(...repetitions.map((r) => r.vendorTokenRequests));
    // Every vend answered 200, and all of one repetition's callers got the one token.
    const allOk = repetitions.every((r) => r.vendorOk === CONCURRENT && r.vendorDistinctTokens === 1);
    const scenario = '3 stampede';
    const rows: Row[] = [
      {
        scenario,
        metric: `vendor: token requests for ${CONCURRENT} concurrent cold vends via ${PROCESSES} processes (${allOk ? 'all 200 OK, one token' : 'NOT all 200 OK with one token'})`,
        value: `${med.vendorTokenRequests} (worst ${worst})`,
        target: '1',
        met: med.vendorTokenRequests === 1 && allOk,
      },
      {
        scenario,
        metric: 'vendor: stampede latency p50 / slowest',
        value: `${ms(med.vendorP50, 0)} / ${ms(med.vendorMax, 0)}`,
      },
      {
        scenario,
        metric: `plain clients ×${PROCESSES} (oauth4webapi + cache): token requests`,
        value: String(med.naiveTokenRequests),
      },
      {
        scenario,
        metric: `plain clients ×${PROCESSES} with per-process single flight: token requests`,
        value: String(med.singleFlightTokenRequests),
      },
    ];
    return {
      rows,
      data: {
        processes: PROCESSES,
        concurrent: CONCURRENT,
        serverDelayMs: SERVER_DELAY_MS,
        plainClients: 'in-process, isolated (own cache each, nothing shared)',
        unit: 'ms',
        median: med,
        repetitions,
      },
    };
  });
}
