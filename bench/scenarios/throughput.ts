import autocannon from 'autocannon';
import {
  BENCH_CALLER,
  type BenchOptions,
  benchVend,
  cpuMsOf,
  mediansOf,
  ms,
  percentile,
  presignGet,
  type Row,
  ratio,
  signedGet,
  startBareServer,
  startBenchOidc,
  startLocalModeFor,
  startSigV4MemoryServer,
  withCleanup,
} from '../support.ts';

const CONNECTIONS = 50;
const SECONDS = 3;
const WARMUP_SECONDS = 1;
/** Sequential requests per server and repetition, each signed on its own as a workload's SDK signs. */
const SEQUENTIAL = 400;

interface Load {
  /** CPU the server used per request, in µs. */
  readonly cpuUs: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly total: number;
}

async function load(url: string, headers: Record<string, string>, seconds: number, pid: number): Promise<Load> {
  const cpuBefore = await cpuMsOf(pid);
  const result = await autocannon({ url, connections: CONNECTIONS, duration: seconds, headers });
  const cpuMs = (await cpuMsOf(pid)) - cpuBefore;
  const bad = result.non2xx + result.errors + result.timeouts;
  if (bad > 0) throw new Error(`${url}: ${bad} of ${result.requests.total} requests failed or were not 2xx`);
  return {
    cpuUs: (cpuMs * 1000) / result.requests.total,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    total: result.requests.total,
  };
}

type Repetition = {
  readonly vendorCpuUs: number;
  readonly memoryCpuUs: number;
  readonly bareCpuUs: number;
  readonly vendorRps: number;
  readonly vendorP50: number;
  readonly vendorP99: number;
  readonly vendorRequests: number;
  readonly memoryRps: number;
  readonly memoryP50: number;
  readonly memoryP99: number;
  readonly bareRps: number;
  readonly bareP50: number;
  readonly bareP99: number;
  readonly bareRequests: number;
  readonly rpsRatio: number;
  readonly memoryRpsRatio: number;
  readonly vendorSequentialP50: number;
  readonly bareSequentialP50: number;
  readonly sequentialP50Ratio: number;
};

/** `SEQUENTIAL` requests one after another, each signed by the same client code, and their p50 in ms. */
async function sequentialP50(url: string): Promise<number> {
  const samples: number[] = [];
  for (let index = 0; index < SEQUENTIAL; index += 1) {
    const started = performance.now();
    const status = await signedGet(url, BENCH_CALLER);
    samples.push(performance.now() - started);
    if (status !== 200) throw new Error(`${url} answered ${status}`);
  }
  return percentile(samples, 50);
}

/**
 * Scenario 6: autocannon (50 connections) against local mode on cache hits, with one SigV4 signature replayed
 * (it is valid for 15 minutes and local mode verifies every request), beside a bare Node HTTP server answering a
 * constant and beside a minimal server that verifies the same signature and answers from memory; each server in
 * its own process, autocannon in this one. Then the same signed GET one at a time, each request signed anew by the
 * same client, against local mode and the bare server (which ignores the signature).
 */
export async function throughput(options: BenchOptions) {
  return withCleanup(async (defer) => {
    const oidc = await startBenchOidc(defer);
    const vendor = await startLocalModeFor(defer, oidc.tokenUrl, 'hot');
    const bare = await startBareServer();
    defer(() => bare.stop());
    const memory = await startSigV4MemoryServer(BENCH_CALLER);
    defer(() => memory.stop());

    const path = '/tokens/client-credentials/hot';
    const vendUrl = `${vendor.url}${path}`;
    const memoryUrl = `${memory.url}${path}`;
    const bareUrl = `${bare.url}${path}`;
    const warm = await benchVend(vendUrl);
    if (warm.status !== 200) throw new Error(`warm-up vend answered ${warm.status}`);
    const signed = await presignGet(vendUrl, BENCH_CALLER);
    const memorySigned = await presignGet(memoryUrl, BENCH_CALLER);
    const vendorPid = vendor.child.pid ?? 0;
    await load(vendUrl, signed, WARMUP_SECONDS, vendorPid);
    await load(memoryUrl, memorySigned, WARMUP_SECONDS, memory.pid);
    await load(bareUrl, {}, WARMUP_SECONDS, bare.pid);

    const repetitions: Repetition[] = [];
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      const vendorLoad = await load(vendUrl, signed, SECONDS, vendorPid);
      const memoryLoad = await load(memoryUrl, memorySigned, SECONDS, memory.pid);
      const bareLoad = await load(bareUrl, {}, SECONDS, bare.pid);
      const vendorSequentialP50 = await sequentialP50(vendUrl);
      const bareSequentialP50 = await sequentialP50(bareUrl);
      repetitions.push({
        vendorCpuUs: vendorLoad.cpuUs,
        memoryCpuUs: memoryLoad.cpuUs,
        bareCpuUs: bareLoad.cpuUs,
        vendorRps: vendorLoad.rps,
        vendorP50: vendorLoad.p50,
        vendorP99: vendorLoad.p99,
        vendorRequests: vendorLoad.total,
        memoryRps: memoryLoad.rps,
        memoryP50: memoryLoad.p50,
        memoryP99: memoryLoad.p99,
        bareRps: bareLoad.rps,
        bareP50: bareLoad.p50,
        bareP99: bareLoad.p99,
        bareRequests: bareLoad.total,
        rpsRatio: vendorLoad.rps / bareLoad.rps,
        memoryRpsRatio: memoryLoad.rps / bareLoad.rps,
        vendorSequentialP50,
        bareSequentialP50,
        sequentialP50Ratio: vendorSequentialP50 / bareSequentialP50,
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
        metric: `minimal SigV4-verifying server answering from memory, ${CONNECTIONS} connections: req/s · p50 / p99`,
        value: `${med.memoryRps.toFixed(0)} · ${ms(med.memoryP50, 1)} / ${ms(med.memoryP99, 1)}`,
      },
      {
        scenario,
        metric: `bare node:http constant, ${CONNECTIONS} connections: req/s · p50 / p99`,
        value: `${med.bareRps.toFixed(0)} · ${ms(med.bareP50, 1)} / ${ms(med.bareP99, 1)}`,
      },
      {
        scenario,
        metric: 'local mode ÷ bare server: req/s (minimal SigV4 server ÷ bare)',
        value: `${ratio(med.rpsRatio)} (${ratio(med.memoryRpsRatio)})`,
        target: '≥ 0.25×',
        met: med.rpsRatio >= 0.25,
      },
      {
        scenario,
        metric: 'server CPU per request under that load: local mode · minimal SigV4 server · bare server',
        value: `${med.vendorCpuUs.toFixed(0)} µs · ${med.memoryCpuUs.toFixed(0)} µs · ${med.bareCpuUs.toFixed(0)} µs = ${ratio(med.bareCpuUs / med.vendorCpuUs)} bare's cost`,
      },
      {
        scenario,
        metric: `sequential hits, each signed anew by the same client: p50 local mode · bare server (${SEQUENTIAL} each)`,
        value: `${ms(med.vendorSequentialP50, 3)} · ${ms(med.bareSequentialP50, 3)} = ${ratio(med.sequentialP50Ratio)}`,
        target: '≤ 1.5×',
        met: med.sequentialP50Ratio <= 1.5,
      },
    ];
    return {
      rows,
      data: {
        connections: CONNECTIONS,
        seconds: SECONDS,
        sequentialRequests: SEQUENTIAL,
        unit: 'ms (autocannon reports latency in whole milliseconds), requests/s',
        median: med,
        repetitions,
      },
    };
  });
}
