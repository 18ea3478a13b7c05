import autocannon from 'autocannon';
import {
  BENCH_CALLER,
  type BenchOptions,
  benchVend,
  mediansOf,
  ms,
  presignGet,
  type Row,
  ratio,
  startBareServer,
  startBenchOidc,
  startLocalModeFor,
  withCleanup,
} from '../support.ts';

const CONNECTIONS = 50;
const SECONDS = 3;
const WARMUP_SECONDS = 1;

interface Load {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly total: number;
}

async function load(url: string, headers: Record<string, string>, seconds: number): Promise<Load> {
  const result = await autocannon({ url, connections: CONNECTIONS, duration: seconds, headers });
  const bad = result.non2xx + result.errors + result.timeouts;
  if (bad > 0) throw new Error(`${url}: ${bad} of ${result.requests.total} requests failed or were not 2xx`);
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
  };
}

type Repetition = {
  readonly vendorRps: number;
  readonly vendorP50: number;
  readonly vendorP99: number;
  readonly vendorRequests: number;
  readonly bareRps: number;
  readonly bareP50: number;
  readonly bareP99: number;
  readonly bareRequests: number;
  readonly rpsRatio: number;
};

/**
 * Scenario 6: autocannon (50 connections) against local mode on cache hits, with one SigV4 signature replayed
 * (it is valid for 15 minutes and local mode verifies every request), beside a bare Node HTTP server answering a
 * constant; each server in its own process, autocannon in this one.
 */
export async function throughput(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const oidc = await startBenchOidc(defer);
    const vendor = await startLocalModeFor(defer, oidc.tokenUrl, 'hot');
    const bare = await startBareServer();
    defer(() => bare.stop());

    const vendUrl = `${vendor.url}/tokens/client-credentials/hot`;
    const warm = await benchVend(vendUrl);
    if (warm.status !== 200) throw new Error(`warm-up vend answered ${warm.status}`);
    const signed = await presignGet(vendUrl, BENCH_CALLER);
    await load(vendUrl, signed, WARMUP_SECONDS);
    await load(bare.url, {}, WARMUP_SECONDS);

    const repetitions: Repetition[] = [];
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      const vendorLoad = await load(vendUrl, signed, SECONDS);
      const bareLoad = await load(bare.url, {}, SECONDS);
      repetitions.push({
        vendorRps: vendorLoad.rps,
        vendorP50: vendorLoad.p50,
        vendorP99: vendorLoad.p99,
        vendorRequests: vendorLoad.total,
        bareRps: bareLoad.rps,
        bareP50: bareLoad.p50,
        bareP99: bareLoad.p99,
        bareRequests: bareLoad.total,
        rpsRatio: vendorLoad.rps / bareLoad.rps,
      });
    }
    const med = mediansOf(repetitions);
    const scenario = '6 throughput';
    const rows: Row[] = [
      {
        scenario,
        metric: `local mode, cache hits, ${CONNECTIONS} connections: req/s · p50 / p99`,
        value: `${med.vendorRps.toFixed(0)} · ${ms(med.vendorP50, 1)} / ${ms(med.vendorP99, 1)}`,
      },
      {
        scenario,
        metric: `bare node:http constant, ${CONNECTIONS} connections: req/s · p50 / p99`,
        value: `${med.bareRps.toFixed(0)} · ${ms(med.bareP50, 1)} / ${ms(med.bareP99, 1)}`,
      },
      {
        scenario,
        metric: 'local mode ÷ bare server: req/s',
        value: ratio(med.rpsRatio),
      },
    ];
    return {
      rows,
      data: {
        connections: CONNECTIONS,
        seconds: SECONDS,
        unit: 'ms (autocannon reports latency in whole milliseconds), requests/s',
        median: med,
        repetitions,
      },
    };
  });
}
