import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type LocalMode, prepareLocalFixture, startLocalMode } from '../../test/support/local-mode.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../../test/support/scripted-server.ts';
import {
  BENCH_CALLER,
  type BenchOptions,
  benchConnector,
  benchVend,
  mediansOf,
  ms,
  percentile,
  presignGet,
  type Row,
  withCleanup,
} from '../support.ts';

const TOKEN_SECONDS = 10;
const SERVER_DELAY_MS = 250;
/** Three token lifetimes. */
const WINDOW_MS = 30_000;
const LOOPS = 4;
/** Each loop sends one vend, waits for its answer, then pauses this long. */
const INTERVAL_MS = 20;
const MAX_VENDS_PER_LOOP = WINDOW_MS / INTERVAL_MS;
/** A vend this slow waited on the token server (its answer alone takes 250 ms; a cache hit takes a few ms). */
const WAITED_MS = 200;
/** How often the bench looks at local mode's child processes (Lambda containers) during the window. */
const PROCESS_SAMPLE_MS = 100;
/** At most this many rounds of concurrent warm-up vends to bring Lambda mode's pool to one container per loop. */
const WARM_UP_ROUNDS = 20;
/** After the window, demanded refreshes already under way get this long to finish and log. */
const SETTLE_MS = 1_000;

/**
 * Both modes: 10 s tokens are served from the cache for their first 8 s (minTtl 2 s; the default 60 s would count
 * as half the lifetime), and no scheduled rotation runs, so every token request in the window is a refresh ahead
 * (or a vend that had to fetch).
 */
const COMMON_ENV = {
  TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS: '2',
  TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: '0',
};

type Mode = 'long-lived' | 'lambda';
const MODES: Readonly<Record<Mode, { label: string; env: Record<string, string> }>> = {
  'long-lived': { label: 'long-lived process (refresh ahead in the background)', env: { TOKEN_VENDOR_LAMBDA: '0' } },
  lambda: { label: 'Lambda semantics (TOKEN_VENDOR_LAMBDA=1, async refresh)', env: { TOKEN_VENDOR_LAMBDA: '1' } },
};

/**
 * A probe preloaded (`NODE_OPTIONS=--import`) into local mode and each of its Lambda containers, so that a slow vend
 * can be explained from local mode's output without touching its code. It writes `BENCH-PROBE {json}` lines to
 * stderr, with wall-clock milliseconds: in a container, every invocation that took ≥ 50 ms or made an outbound
 * call, with those calls (node:http: DynamoDB, the Lambda Invoke API, the token server) and new connections;
 * when a container is ready; in the main process, inbound requests (API, Invoke API, DynamoDB) that took ≥ 100 ms,
 * its own outbound calls, and event-loop stalls ≥ 50 ms. A memory hit costs it a listener call and a clock read.
 */
const PROBE = `
import dc from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
const now = () => Math.round((performance.timeOrigin + performance.now()) * 10) / 10;
const script = process.argv[1] ?? '';
const inContainer = script.endsWith('lambda-container.ts');
const who = inContainer ? process.argv[2] : 'main';
const emit = (record) => process.stderr.write('BENCH-PROBE ' + JSON.stringify({ pid: process.pid, who, ...record }) + '\\n');
let current;
const note = (event) => (current === undefined ? emit(event) : current.events.push(event));
const started = new WeakMap();
const since = (key) => Math.round((now() - (started.get(key) ?? now())) * 10) / 10;
const httpTarget = (request) => {
  const amzTarget = request.getHeader?.('x-amz-target');
  return request.method + ' ' + request.host + ':' + (request.socket?.remotePort ?? '') + (amzTarget ? ' ' + amzTarget : ' ' + request.path);
};
dc.subscribe('net.client.socket', () => note({ kind: 'new-connection', t: now() }));
dc.subscribe('http.client.request.start', ({ request }) => started.set(request, now()));
// The token client posts a form; the AWS SDK's calls (DynamoDB, the Invoke API) post JSON or a payload.
const toTokenServer = (request) => String(request.getHeader?.('content-type') ?? '').startsWith('application/x-www-form-urlencoded');
dc.subscribe('http.client.response.finish', ({ request, response }) =>
  note({ kind: toTokenServer(request) ? 'token-server' : 'http', t: started.get(request), ms: since(request), target: httpTarget(request), status: response.statusCode, reused: request.reusedSocket }));
dc.subscribe('http.client.request.error', ({ request, error }) =>
  note({ kind: toTokenServer(request) ? 'token-server-error' : 'http-error', t: started.get(request), ms: since(request), target: httpTarget(request), error: error?.code ?? String(error?.message), reused: request.reusedSocket }));
if (inContainer && typeof process.send === 'function') {
  process.on('message', (message) => {
    if (message !== null && typeof message === 'object' && 'event' in message)
      current = { id: message.id, vend: message.event?.headers?.['x-bench-vend'], start: now(), events: [] };
  });
  const send = process.send.bind(process);
  process.send = (message, ...rest) => {
    if (message === 'ready') emit({ kind: 'container-ready', t: now(), bootMs: Math.round(performance.now()) });
    else if (current !== undefined && message?.id === current.id) {
      const ms = Math.round((now() - current.start) * 10) / 10;
      if (ms >= 50 || current.events.length > 0)
        emit({ kind: 'invocation', vend: current.vend, t: current.start, ms, failed: 'error' in message ? message.error.name : undefined, events: current.events });
      current = undefined;
    }
    return send(message, ...rest);
  };
} else if (!inContainer) {
  dc.subscribe('http.server.request.start', ({ request }) => started.set(request, now()));
  dc.subscribe('http.server.response.finish', ({ request, server }) => {
    const ms = since(request);
    if (ms >= 100) emit({ kind: 'inbound', vend: request.headers['x-bench-vend'], t: started.get(request), ms, port: server.address()?.port, target: request.method + ' ' + request.url });
  });
  let expected = performance.now() + 20;
  setInterval(() => {
    const lag = performance.now() - expected;
    if (lag >= 50) emit({ kind: 'main-loop-stall', t: Math.round(now() - lag), ms: Math.round(lag) });
    expected = performance.now() + 20;
  }, 20).unref();
}
`;
const PROBE_OPTION = `--import=data:text/javascript;base64,${Buffer.from(PROBE).toString('base64')}`;

/** One line of the probe, times in milliseconds since the window opened. */
interface ProbeRecord {
  readonly pid: number;
  readonly who: string;
  readonly kind: string;
  readonly t: number;
  readonly ms?: number;
  readonly [field: string]: unknown;
}

type Figures = {
  readonly vends: number;
  readonly failures: number;
  readonly waited: number;
  /** The vends that waited, by what the bench found them waiting on (see `Cause`). */
  readonly waitedDuringTokenRequest: number;
  readonly waitedOnColdStart: number;
  readonly waitedOnHandOver: number;
  readonly waitedOnBusyLocalMode: number;
  readonly waitedUnexplained: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly tokenRequests: number;
  readonly requestsPerLifetime: number;
  /** The same from the mean time between consecutive token requests (10 s ÷ mean interval), free of window phase. */
  readonly requestsPerLifetimeByInterval: number;
  /** Lambda mode: token requests made inside a client-credentials (vend) invocation, i.e. on a caller's path. */
  readonly tokenRequestsByVendFunction: number;
  /**
   * Lambda mode: invocations of the refresher (Powertools' "demanded refresh finished" lines) per token request. A
   * vend hands a due token over when the table does not hold a fresher one yet, so vends in other containers that
   * pass their refresh point while the refresher is still fetching send demands of their own (each finds the lease
   * held or the new token stored, and makes no token request).
   */
  readonly refresherInvocationsPerTokenRequest: number;
  /** Lambda mode: refresher containers that started in the window (demands arriving while every one was busy). */
  readonly refresherColdStarts: number;
  readonly distinctTokensServed: number;
  /** The oldest token served in the window, seconds since the server answered with it. */
  readonly oldestServedSeconds: number;
  /** Lambda containers that started during the window (cold starts); 0 for the long-lived process. */
  readonly containersStarted: number;
  /** The 1-minute load average of the machine when the window closed (2 vCPUs). */
  readonly loadAverage: number;
};

/** What the bench saw of one slow vend, to find out what it waited on. */
interface SlowVend {
  /** `<loop>-<index>`, the `x-bench-vend` header it carried. */
  readonly id: string;
  readonly loop: number;
  /** Milliseconds since the window opened. */
  readonly at: number;
  readonly latencyMs: number;
  readonly status: number;
  /** Token requests that reached the server while this vend was under way, or up to 250 ms before it. */
  readonly tokenRequestsInFlight: number[];
  /** Lambda containers that appeared while this vend was under way. */
  readonly containersStarted: { pid: number; entry: string; at: number }[];
  /** Probe records that overlap the vend. */
  readonly probe: ProbeRecord[];
  readonly cause: Cause;
  /** The bench's reading of the probe records. */
  readonly explanation: string;
}

/**
 * What a slow vend waited on, first match: a token request was under way during it (the only case in which it can
 * have waited on the token server); a client-credentials container started during it (a cold start); its invocation
 * handed the due token to the refresher (a table read and an Invoke call on the caller's path); the probe saw local
 * mode busy (its main event loop stalled, its invocation or the API request took ≥ 50 / 100 ms); nothing.
 */
type Cause =
  | 'token request under way'
  | 'container cold start'
  | 'hand-over to the refresher'
  | 'local mode busy'
  | 'nothing recorded';

interface ModeRun {
  readonly figures: Figures;
  readonly slowVends: SlowVend[];
  readonly failureSamples: string[];
  /** Token requests in the window, ms since it opened. */
  readonly tokenRequestTimes: number[];
  readonly containers: { pid: number; entry: string; at: number }[];
  /** Every probe record from the window. */
  readonly probe: ProbeRecord[];
  /** Local mode's other output from the window (Powertools JSON lines and text), times in ms since it opened. */
  readonly log: { at: number | undefined; line: Record<string, unknown> | string }[];
}

/** Direct child processes of `pid` with their command lines (Linux /proc), or none where /proc is not there. */
async function childProcesses(pid: number): Promise<{ pid: number; command: string }[]> {
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return [];
  }
  const children: { pid: number; command: string }[] = [];
  await Promise.all(
    entries
      .filter((entry) => /^\d+$/.test(entry))
      .map(async (entry) => {
        try {
          const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
          // The fields after the command name (which may hold spaces and ends at the last ')'): state, ppid, …
          const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
          if (parent !== pid) return;
          const command = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').join(' ');
          children.push({ pid: Number(entry), command });
        } catch {
          // Gone meanwhile.
        }
      }),
  );
  return children;
}

/** A Lambda container's function entry (`client-credentials`, `rotate`, …), from its command line. */
function containerEntry(command: string): string | undefined {
  return /lambda-container\.ts (\S+)/.exec(command)?.[1];
}

/**
 * One SigV4-signed vend by the bench caller, as `benchVend` (signing included), that also carries an unsigned
 * `x-bench-vend` header: API Gateway passes headers into the event, so the probe can name the vend an invocation
 * served.
 */
async function taggedVend(url: string, id: string): Promise<{ status: number; token: string | undefined }> {
  const headers = await presignGet(url, BENCH_CALLER);
  const response = await fetch(url, { headers: { ...headers, 'x-bench-vend': id } });
  const body = (await response.json()) as { access_token?: string };
  return { status: response.status, token: body.access_token };
}

/** Local mode's output from `from` on: probe records apart, the rest parsed where it is JSON. */
function parseOutput(output: string, from: number, openedWall: number) {
  const probe: ProbeRecord[] = [];
  const log: ModeRun['log'] = [];
  for (const line of output.slice(from).split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('BENCH-PROBE ')) {
      try {
        const record = JSON.parse(line.slice('BENCH-PROBE '.length)) as ProbeRecord;
        const shift = (value: unknown) => (typeof value === 'number' ? Math.round(value - openedWall) : value);
        const events = Array.isArray(record.events)
          ? (record.events as Record<string, unknown>[]).map((event) => ({ ...event, t: shift(event.t) }))
          : undefined;
        probe.push({ ...record, t: shift(record.t) as number, ...(events === undefined ? {} : { events }) });
      } catch {
        log.push({ at: undefined, line });
      }
      continue;
    }
    try {
      const record = JSON.parse(line) as Record<string, unknown>;
      const time = typeof record.timestamp === 'string' ? Date.parse(record.timestamp) : Number.NaN;
      log.push({ at: Number.isNaN(time) ? undefined : Math.round(time - openedWall), line: record });
    } catch {
      log.push({ at: undefined, line });
    }
  }
  return { probe, log };
}

/** What the bench knows about one slow vend, to say what it waited on. */
interface Evidence {
  readonly mode: Mode;
  /** Token requests that reached the server during the vend or up to 250 ms before it (so were under way). */
  readonly inFlight: readonly number[];
  readonly containersStarted: readonly { entry: string }[];
  /** The vend's own invocation (Lambda mode), found by its `x-bench-vend` header; absent if it took < 50 ms. */
  readonly invocation: ProbeRecord | undefined;
  /** Every probe record that overlaps the vend. */
  readonly overlapping: readonly ProbeRecord[];
}

const eventsOf = (record: ProbeRecord | undefined) => (record?.events ?? []) as ProbeRecord[];
const isHandOver = (event: ProbeRecord) => event.kind === 'http' && String(event.target).includes('/invocations');
const callName = (event: ProbeRecord) =>
  event.kind.startsWith('token-server')
    ? 'token request'
    : isHandOver(event)
      ? 'Invoke (refresher)'
      : (/DynamoDB_\d+\.(\w+)/.exec(String(event.target))?.[1] ?? String(event.target));

function causeOf(evidence: Evidence): Cause {
  const own = eventsOf(evidence.invocation);
  const mainTokenCall =
    evidence.mode === 'long-lived' &&
    evidence.overlapping.some((record) => record.who === 'main' && record.kind.startsWith('token-server'));
  if (evidence.inFlight.length > 0 || own.some((event) => event.kind.startsWith('token-server')) || mainTokenCall)
    return 'token request under way';
  if (evidence.containersStarted.some((container) => container.entry === 'client-credentials'))
    return 'container cold start';
  if (own.some(isHandOver)) return 'hand-over to the refresher';
  if (
    evidence.invocation !== undefined ||
    evidence.overlapping.some((record) => record.kind === 'main-loop-stall' || record.kind === 'inbound')
  )
    return 'local mode busy';
  return 'nothing recorded';
}

function explain(evidence: Evidence): string {
  const reasons: string[] = [];
  if (evidence.inFlight.length > 0)
    reasons.push(`token request(s) under way (reached the server at ${evidence.inFlight.join(', ')} ms)`);
  if (evidence.containersStarted.some((container) => container.entry === 'client-credentials'))
    reasons.push('a client-credentials container started (cold start)');
  const { invocation } = evidence;
  if (invocation !== undefined) {
    const calls = eventsOf(invocation)
      .filter((event) => event.kind !== 'new-connection')
      .map(
        (event) =>
          `${callName(event)} ${event.ms} ms${event.kind.endsWith('error') ? ` (${String(event.error)})` : ''} at +${event.t - invocation.t}`,
      );
    reasons.push(
      `its invocation in container ${invocation.pid} took ${invocation.ms} ms${calls.length > 0 ? `: ${calls.join(', ')}` : ', no outbound call'}`,
    );
  } else if (evidence.mode === 'lambda') {
    reasons.push('its invocation took < 50 ms and made no outbound call');
  }
  for (const record of evidence.overlapping) {
    if (record.kind === 'main-loop-stall') reasons.push(`local mode's main event loop stalled ${record.ms} ms`);
    if (evidence.mode === 'long-lived' && record.who === 'main' && record.kind.startsWith('token-server'))
      reasons.push(`the process's own token request (${record.ms} ms)`);
    if (record.kind === 'invocation' && record.who === 'rotate')
      reasons.push(
        `the refresher ran (container ${record.pid}, ${record.ms} ms${eventsOf(record).some((event) => event.kind === 'token-server') ? ', with a token request' : ''})`,
      );
  }
  return reasons.join('; ');
}

/** Token requests a function made inside its invocations (from the probe's invocation records). */
function tokenRequestsIn(probe: readonly ProbeRecord[], who: string): number {
  return probe
    .filter((record) => record.kind === 'invocation' && record.who === who)
    .flatMap((record) => (record.events ?? []) as ProbeRecord[])
    .filter((event) => event.kind === 'token-server').length;
}

/**
 * One mode's window: a fresh local-mode process (own fixture, own state folder), warmed up, then `LOOPS` loops of
 * signed vends for `WINDOW_MS`.
 */
async function runMode(
  mode: Mode,
  connectorId: string,
  server: ScriptedServer,
  tokenRequestTimes: readonly number[],
  issuedAt: ReadonlyMap<string, number>,
): Promise<ModeRun> {
  return withCleanup(async (defer) => {
    const fixture = await prepareLocalFixture(
      { [`client-credentials/${connectorId}`]: benchConnector(server.url) },
      { BENCH_CALLER },
    );
    defer(() => fixture.cleanup());
    // Local mode keeps its embedded DynamoDB on disk in its state folder: a fresh one per process, removed after.
    const stateDir = await mkdtemp(join(tmpdir(), 'token-vendor-bench-state-'));
    defer(() => rm(stateDir, { recursive: true, force: true }));
    let vendor: LocalMode | undefined;
    defer(() => vendor?.stop());
    vendor = await startLocalMode({
      ...fixture.env,
      ...COMMON_ENV,
      ...MODES[mode].env,
      TOKEN_VENDOR_STATE_DIR: stateDir,
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${PROBE_OPTION}`.trim(),
    });
    const pid = vendor.child.pid ?? -1;
    const url = `${vendor.url}/tokens/client-credentials/${connectorId}`;

    // Warm-up, not counted: the first vend is a cold miss (it waits on the server by design). Then, in Lambda mode,
    // rounds of one vend per loop at once until the pool has a container for each loop: each new one is a cold start
    // (scenario 5's subject), which 4 callers cause once, whatever the token server does.
    const vendContainers = async () =>
      (await childProcesses(pid)).filter((child) => containerEntry(child.command) === 'client-credentials').length;
    for (let round = 0; round <= WARM_UP_ROUNDS; round += 1) {
      if (round > 0 && (mode !== 'lambda' || (await vendContainers()) >= LOOPS)) break;
      const answers = await Promise.all(Array.from({ length: round === 0 ? 1 : LOOPS }, () => benchVend(url)));
      const refused = answers.find((answer) => answer.status !== 200 || answer.token === undefined);
      if (refused !== undefined) throw new Error(`${mode}: a warm-up vend answered ${refused.status}`);
    }

    const outputFrom = vendor.output().length;
    const containers = new Map<number, { pid: number; entry: string; at: number }>();
    for (const child of await childProcesses(pid)) {
      const entry = containerEntry(child.command);
      if (entry !== undefined) containers.set(child.pid, { pid: child.pid, entry, at: Number.NEGATIVE_INFINITY });
    }
    const requestsBefore = tokenRequestTimes.length;
    const opened = performance.now();
    const openedWall = performance.timeOrigin + opened;
    const closesAt = opened + WINDOW_MS;
    const vends: {
      id: string;
      loop: number;
      at: number;
      latencyMs: number;
      status: number;
      token: string | undefined;
    }[] = [];
    const failureSamples: string[] = [];
    let failures = 0;
    /** Vends that got no answer at all (also counted in `failures`). */
    let unanswered = 0;

    let sampling = true;
    const sampler = (async () => {
      while (sampling && performance.now() < closesAt + SETTLE_MS) {
        for (const child of await childProcesses(pid)) {
          const entry = containerEntry(child.command);
          if (entry !== undefined && !containers.has(child.pid)) {
            containers.set(child.pid, { pid: child.pid, entry, at: Math.round(performance.now() - opened) });
          }
        }
        await sleep(PROCESS_SAMPLE_MS);
      }
    })();
    defer(async () => {
      sampling = false;
      await sampler;
    });

    await Promise.all(
      Array.from({ length: LOOPS }, async (_, loop) => {
        // Out of step, as independent callers would be.
        await sleep((loop * INTERVAL_MS) / LOOPS);
        for (let index = 0; index < MAX_VENDS_PER_LOOP && performance.now() < closesAt; index += 1) {
          const id = `${loop}-${index}`;
          const started = performance.now();
          try {
            const answer = await taggedVend(url, id);
            const latencyMs = performance.now() - started;
            vends.push({ id, loop, at: started - opened, latencyMs, status: answer.status, token: answer.token });
            if (answer.status !== 200 || answer.token === undefined) {
              failures += 1;
              if (failureSamples.length < 10)
                failureSamples.push(`status ${answer.status} at ${Math.round(started - opened)} ms`);
            }
          } catch (error) {
            failures += 1;
            unanswered += 1;
            if (failureSamples.length < 10) failureSamples.push(error instanceof Error ? error.message : String(error));
          }
          await sleep(INTERVAL_MS);
        }
      }),
    );
    const elapsedMs = performance.now() - opened;
    const loadAverage = loadavg()[0] ?? Number.NaN;
    const windowRequests = tokenRequestTimes.slice(requestsBefore).map((time) => time - opened);
    const inWindow = windowRequests.filter((at) => at <= elapsedMs);
    // Demanded refreshes started in the window finish and log a little later.
    await sleep(SETTLE_MS);
    sampling = false;
    await sampler;
    const { probe, log } = parseOutput(vendor.output(), outputFrom, openedWall);

    const served = vends.filter((vend) => vend.status === 200 && vend.token !== undefined);
    const latencies = served.map((vend) => vend.latencyMs);
    const ages = served
      .map((vend) => {
        const issued = issuedAt.get(vend.token as string);
        return issued === undefined ? Number.NaN : (opened + vend.at - issued) / 1000;
      })
      .filter((age) => !Number.isNaN(age));
    const started = [...containers.values()].filter((container) => Number.isFinite(container.at));
    const slowVends: SlowVend[] = vends
      .filter((vend) => vend.latencyMs >= WAITED_MS)
      .map((vend) => {
        const end = vend.at + vend.latencyMs;
        const tokenRequestsInFlight = windowRequests
          .filter((at) => at >= vend.at - SERVER_DELAY_MS && at <= end)
          .map(Math.round);
        // The sampler sees a container up to one sample after it started.
        const containersStarted = started.filter(
          (container) => container.at >= vend.at && container.at <= end + PROCESS_SAMPLE_MS,
        );
        const overlapping = probe.filter((record) => record.t <= end && record.t + (record.ms ?? 0) >= vend.at);
        const evidence: Evidence = {
          mode,
          inFlight: tokenRequestsInFlight,
          containersStarted,
          invocation: probe.find((record) => record.kind === 'invocation' && record.vend === vend.id),
          overlapping,
        };
        return {
          id: vend.id,
          loop: vend.loop,
          at: Math.round(vend.at),
          latencyMs: Math.round(vend.latencyMs),
          status: vend.status,
          tokenRequestsInFlight,
          containersStarted,
          probe: overlapping,
          cause: causeOf(evidence),
          explanation: explain(evidence),
        };
      });
    return {
      figures: {
        vends: vends.length + unanswered,
        failures,
        waited: slowVends.length,
        waitedDuringTokenRequest: slowVends.filter((vend) => vend.cause === 'token request under way').length,
        waitedOnColdStart: slowVends.filter((vend) => vend.cause === 'container cold start').length,
        waitedOnHandOver: slowVends.filter((vend) => vend.cause === 'hand-over to the refresher').length,
        waitedOnBusyLocalMode: slowVends.filter((vend) => vend.cause === 'local mode busy').length,
        waitedUnexplained: slowVends.filter((vend) => vend.cause === 'nothing recorded').length,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        max: Math.max(...latencies),
        tokenRequests: inWindow.length,
        requestsPerLifetime: inWindow.length / (elapsedMs / (TOKEN_SECONDS * 1000)),
        requestsPerLifetimeByInterval:
          inWindow.length < 2
            ? Number.NaN
            : (TOKEN_SECONDS * 1000) /
              (((inWindow.at(-1) as number) - (inWindow[0] as number)) / (inWindow.length - 1)),
        tokenRequestsByVendFunction: tokenRequestsIn(probe, 'client-credentials'),
        refresherInvocationsPerTokenRequest:
          log.filter((line) => typeof line.line !== 'string' && line.line.message === 'demanded refresh finished')
            .length / Math.max(1, windowRequests.length),
        refresherColdStarts: started.filter((container) => container.entry === 'rotate').length,
        distinctTokensServed: new Set(served.map((vend) => vend.token)).size,
        oldestServedSeconds: Math.max(...ages),
        containersStarted: started.length,
        loadAverage,
      },
      slowVends,
      failureSamples,
      tokenRequestTimes: windowRequests.map(Math.round),
      containers: [...containers.values()].map((container) => ({
        ...container,
        at: Number.isFinite(container.at) ? container.at : -1,
      })),
      probe,
      log,
    };
  });
}

/**
 * Scenario 8: local mode as a long-lived process and with Lambda semantics (`TOKEN_VENDOR_LAMBDA=1`: containers
 * frozen between invocations, due tokens handed to the refresher by an asynchronous invocation), one after the other
 * in each repetition (the order alternates), on a client-credentials connector whose server answers after 250 ms with
 * 10-second tokens: 4 loops of signed vends, each every ~20 ms, for 30 s. With async refresh, no vend should wait
 * on the token server.
 */
export async function lambdaSemantics(options: BenchOptions) {
  return withCleanup(async (defer) => {
    /** When each token request reached the server (performance.now()). */
    const tokenRequestTimes: number[] = [];
    /** Each access token, by when the server answered with it. */
    const issuedAt = new Map<string, number>();
    const server = await startScriptedServer(async () => {
      tokenRequestTimes.push(performance.now());
      await sleep(SERVER_DELAY_MS);
      const answer = tokenAnswer({ expires_in: TOKEN_SECONDS });
      issuedAt.set((answer.body as { access_token: string }).access_token, performance.now());
      return answer;
    });
    defer(() => server.close());

    const runs: Record<Mode, ModeRun[]> = { 'long-lived': [], lambda: [] };
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      const order: Mode[] = repetition % 2 === 0 ? ['long-lived', 'lambda'] : ['lambda', 'long-lived'];
      for (const mode of order) {
        runs[mode].push(await runMode(mode, `${mode}-${repetition}`, server, tokenRequestTimes, issuedAt));
      }
    }

    const rows: Row[] = [];
    const data: Record<string, unknown> = {
      tokenSeconds: TOKEN_SECONDS,
      serverDelayMs: SERVER_DELAY_MS,
      windowMs: WINDOW_MS,
      loops: LOOPS,
      intervalMs: INTERVAL_MS,
      waitedThresholdMs: WAITED_MS,
      env: COMMON_ENV,
      unit: 'ms',
    };
    for (const mode of ['long-lived', 'lambda'] as const) {
      const repetitions = runs[mode].map((run) => run.figures);
      const med = mediansOf(repetitions);
      const worstWaited = Math.max(...repetitions.map((r) => r.waited));
      const failures = repetitions.reduce((total, r) => total + r.failures, 0);
      const scenario = `8 Lambda semantics, ${mode === 'lambda' ? 'Lambda' : 'long-lived'}`;
      rows.push(
        {
          scenario,
          metric: `vends that waited on the token server (≥ ${WAITED_MS} ms), of ~${Math.round(med.vends)} in ${WINDOW_MS / 1000} s (${LOOPS} loops)`,
          value: `${med.waited} (worst ${worstWaited})`,
          ...(mode === 'lambda' ? { target: '0', met: worstWaited === 0 } : {}),
        },
        {
          scenario,
          metric:
            'of those: while a token request was under way · container cold start · handing over to the refresher · local mode busy (event-loop stall, slow invocation) · nothing recorded',
          value: [
            med.waitedDuringTokenRequest,
            med.waitedOnColdStart,
            med.waitedOnHandOver,
            med.waitedOnBusyLocalMode,
            med.waitedUnexplained,
          ].join(' · '),
        },
        {
          scenario,
          metric: 'vend latency p50 / p99 / slowest',
          value: `${ms(med.p50)} / ${ms(med.p99)} / ${ms(med.max, 1)}`,
        },
        {
          scenario,
          metric: `token requests per token lifetime (${TOKEN_SECONDS} s tokens, minTtl ${COMMON_ENV.TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS} s)`,
          value: `${med.requestsPerLifetime.toFixed(2)} (from the mean interval: ${med.requestsPerLifetimeByInterval.toFixed(2)})`,
        },
        ...(mode === 'lambda'
          ? [
              {
                scenario,
                metric: 'token requests made inside a vend invocation (all others by the refresher), per window',
                value: `${med.tokenRequestsByVendFunction} of ${med.tokenRequests}`,
              },
              {
                scenario,
                metric: 'refresher invocations per token request · refresher cold starts per window',
                value: `${med.refresherInvocationsPerTokenRequest.toFixed(2)} · ${med.refresherColdStarts}`,
              },
            ]
          : []),
        {
          scenario,
          metric: 'failed vends',
          value: String(failures),
          target: '0',
          met: failures === 0,
        },
      );
      data[mode] = { label: MODES[mode].label, median: med, worstWaited, failures, runs: runs[mode] };
    }
    return { rows, data };
  });
}
