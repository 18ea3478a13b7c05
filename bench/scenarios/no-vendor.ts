import {
  type BenchOptions,
  benchVend,
  mediansOf,
  ms,
  ownTokenGrant,
  percentile,
  type Row,
  ratio,
  startBenchOidc,
  startLocalModeFor,
  timeEach,
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
    const oidc = await startBenchOidc(defer, { delayMs: SERVER_DELAY_MS });
    const vendor = await startLocalModeFor(defer, oidc.tokenUrl, 'remote');
    const vendUrl = `${vendor.url}/tokens/client-credentials/remote`;

    const grant = ownTokenGrant(oidc.tokenUrl);
    const ownToken = async () => {
      const tokens = await grant();
      if (tokens.access_token === '') throw new Error('no access token');
    };
    const vend = async () => {
      const { status, token } = await benchVend(vendUrl);
      if (status !== 200 || token === undefined) throw new Error(`vend answered ${status}`);
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
