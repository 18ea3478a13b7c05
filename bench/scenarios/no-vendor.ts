import * as oauth from 'oauth4webapi';
import { prepareLocalFixture, signedFetch, startLocalMode } from '../../test/support/local-mode.ts';
import { startOidcServer } from '../../test/support/oidc.ts';
import {
  BENCH_CALLER,
  BENCH_CLIENT,
  type BenchOptions,
  benchConnector,
  mediansOf,
  ms,
  percentile,
  type Row,
  ratio,
  withCleanup,
} from '../support.ts';

const SERVER_DELAY_MS = 100;
const DIRECT_CALLS = 15;
const VEND_CALLS = 200;

type Repetition = {
  readonly directP50: number;
  readonly directP99: number;
  readonly vendP50: number;
  readonly vendP99: number;
  readonly speedupP50: number;
};

/**
 * Scenario 2: a workload that fetches its own token on every request (oauth4webapi's client-credentials grant
 * against oidc-provider 100 ms away) beside the same workload asking the vendor (a SigV4-signed GET to local
 * mode, signing included, served from the vendor's cache).
 */
export async function noVendor(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const oidc = await startOidcServer({ clients: [BENCH_CLIENT], delayMs: SERVER_DELAY_MS });
    defer(() => oidc.close());
    const fixture = await prepareLocalFixture(
      { 'client-credentials/remote': benchConnector(oidc.tokenUrl) },
      { BENCH_CALLER },
    );
    defer(() => fixture.cleanup());
    const vendor = await startLocalMode(fixture.env);
    defer(() => vendor.stop());
    const vendUrl = `${vendor.url}/tokens/client-credentials/remote`;

    const issuer = new URL(oidc.tokenUrl).origin;
    const as: oauth.AuthorizationServer = { issuer, token_endpoint: oidc.tokenUrl };
    const client: oauth.Client = { client_id: BENCH_CLIENT.client_id };
    const auth = oauth.ClientSecretBasic(BENCH_CLIENT.client_secret);
    const ownToken = async () => {
      const response = await oauth.clientCredentialsGrantRequest(
        as,
        client,
        auth,
        new URLSearchParams({ scope: 'read' }),
        {
          [oauth.allowInsecureRequests]: true,
        },
      );
      const tokens = await oauth.processClientCredentialsResponse(as, client, response);
      if (tokens.access_token === '') throw new Error('no access token');
    };
    const vend = async () => {
      const response = await signedFetch(vendUrl, BENCH_CALLER);
      const body = (await response.json()) as { access_token?: string };
      if (response.status !== 200 || body.access_token === undefined)
        throw new Error(`vend answered ${response.status}`);
    };
    const timeEach = async (count: number, call: () => Promise<void>) => {
      const samples: number[] = [];
      for (let index = 0; index < count; index += 1) {
        const started = performance.now();
        await call();
        samples.push(performance.now() - started);
      }
      return samples;
    };
    // Warm both paths: the vendor's first call fetches the token it then serves from cache.
    await timeEach(3, ownToken);
    await timeEach(20, vend);

    const repetitions: Repetition[] = [];
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      const direct = await timeEach(DIRECT_CALLS, ownToken);
      const vended = await timeEach(VEND_CALLS, vend);
      repetitions.push({
        directP50: percentile(direct, 50),
        directP99: percentile(direct, 99),
        vendP50: percentile(vended, 50),
        vendP99: percentile(vended, 99),
        speedupP50: percentile(direct, 50) / percentile(vended, 50),
      });
    }
    const med = mediansOf(repetitions);
    const scenario = '2 vs no vendor';
    const rows: Row[] = [
      {
        scenario,
        metric: `own token per request (oauth4webapi, server +${SERVER_DELAY_MS} ms) p50 / p99`,
        value: `${ms(med.directP50, 1)} / ${ms(med.directP99, 1)}`,
      },
      {
        scenario,
        metric: 'vend through local mode (SigV4 signed, cache hit) p50 / p99',
        value: `${ms(med.vendP50)} / ${ms(med.vendP99)}`,
      },
      {
        scenario,
        metric: 'own-token latency ÷ vend latency, p50',
        value: ratio(med.speedupP50, 0),
      },
    ];
    return {
      rows,
      data: {
        serverDelayMs: SERVER_DELAY_MS,
        calls: { direct: DIRECT_CALLS, vend: VEND_CALLS },
        unit: 'ms',
        median: med,
        repetitions,
      },
    };
  });
}
