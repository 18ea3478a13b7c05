import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import * as oauth from 'oauth4webapi';
import { type LocalMode, prepareLocalFixture, signedFetch, startLocalMode } from '../test/support/local-mode.ts';
import { type OidcClient, type OidcServer, type OidcServerOptions, startOidcServer } from '../test/support/oidc.ts';

export const ROOT = resolve(import.meta.dirname, '..');
/** The project's pinned Node (24), never the system one. */
export const NODE = resolve(ROOT, 'node_modules', '.bin', 'node');

/** One row of the printed table. */
export interface Row {
  readonly scenario: string;
  readonly metric: string;
  readonly value: string;
  readonly target?: string;
  /** Whether the target is met; absent when the row has no target. */
  readonly met?: boolean;
}

export interface ScenarioResult {
  readonly id: number;
  readonly name: string;
  readonly seconds: number;
  readonly rows: Row[];
  /** Medians and every repetition's raw figures, for results.json. */
  readonly data: Record<string, unknown>;
}

export interface BenchOptions {
  readonly repetitions: number;
}

/** The load-generating principal that every local-mode process knows. */
export const BENCH_CALLER = {
  accessKeyId: 'AKIABENCHMARK',
  secretAccessKey: 'bench-secret-access-key',
  arn: 'arn:aws:sts::111122223333:assumed-role/bench/load',
} as const;

export const BENCH_CLIENT = {
  client_id: 'bench',
  client_secret: 'bench-client-secret',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['client_credentials'],
  scope: 'read',
} as const satisfies OidcClient;

/** A client-credentials connector document against `tokenUrl`, allowed to the harness caller and the bench caller. */
export function benchConnector(tokenUrl: string): object {
  return {
    grantType: 'client_credentials',
    tokenUrl,
    clientId: BENCH_CLIENT.client_id,
    clientSecret: BENCH_CLIENT.client_secret,
    scope: 'read',
    allowedPrincipals: ['111122223333'],
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Nearest-rank percentile (p in 0–100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] as number;
}

/** The median over repetitions of every figure of a flat record of figures. */
export function mediansOf<T extends Record<string, number>>(repetitions: readonly T[]): T {
  const first = repetitions[0];
  if (first === undefined) throw new Error('no repetitions');
  return Object.fromEntries(
    Object.keys(first).map((key) => [key, median(repetitions.map((repetition) => repetition[key] as number))]),
  ) as T;
}

export const ms = (value: number, digits = 2) => `${value.toFixed(digits)} ms`;
export const us = (value: number) => `${(value * 1000).toFixed(1)} µs`;
export const ratio = (value: number, digits = 2) => `${value.toFixed(digits)}×`;

/**
 * CPU time a process has used so far (user + system), in milliseconds, from Linux's /proc (clock ticks of 10 ms): on
 * a shared machine, CPU per request is a steadier measure than requests per second.
 */
export async function cpuMsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), from field 3 on: utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Registers a cleanup with `withCleanup`. */
export type Defer = (cleanup: () => Promise<unknown> | unknown) => void;

/** Runs `body` and always runs `cleanups` afterwards, last registered first, each even if another fails. */
export async function withCleanup<T>(body: (defer: Defer) => Promise<T>) {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  try {
    return await body((cleanup) => cleanups.push(cleanup));
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        process.stderr.write(`cleanup failed: ${error instanceof Error ? error.message : String(error)}\n`);
      }
    }
  }
}

/** Calls `call` `iterations` times in a row and returns how long each call took, in milliseconds. */
export async function timeEach(iterations: number, call: () => Promise<unknown>): Promise<number[]> {
  const samples: number[] = [];
  for (let index = 0; index < iterations; index += 1) {
    const started = performance.now();
    await call();
    samples.push(performance.now() - started);
  }
  return samples;
}

/** A real `oidc-provider` on loopback that knows the bench client, closed when the scenario ends. */
export async function startBenchOidc(
  defer: Defer,
  options: Omit<OidcServerOptions, 'clients'> = {},
): Promise<OidcServer> {
  const oidc = await startOidcServer({ clients: [BENCH_CLIENT], ...options });
  defer(() => oidc.close());
  return oidc;
}

/**
 * `processes` local-mode processes (`local/main.ts`, what `npm start` runs) on one fixture that serves
 * `client-credentials/<id>` (`benchConnector(tokenUrl)`) for each of `connectorIds` to the bench caller, on
 * `dynamoEndpoint` if given; all stopped, and the fixture removed, when the scenario ends.
 */
export async function startLocalModes(
  defer: Defer,
  options: { tokenUrl: string; connectorIds: readonly string[]; processes?: number; dynamoEndpoint?: string },
): Promise<LocalMode[]> {
  const connectors = Object.fromEntries(
    options.connectorIds.map((id) => [`client-credentials/${id}`, benchConnector(options.tokenUrl)]),
  );
  const fixture = await prepareLocalFixture(connectors, { BENCH_CALLER }, options.dynamoEndpoint);
  defer(() => fixture.cleanup());
  const processes: LocalMode[] = [];
  defer(() => Promise.all(processes.map((process) => process.stop())));
  // Sequentially: the first creates the table, and several local-mode start-ups at once would only thrash two cores.
  for (let index = 0; index < (options.processes ?? 1); index += 1) processes.push(await startLocalMode(fixture.env));
  return processes;
}

/** One local-mode process serving `client-credentials/<connectorId>`; see `startLocalModes`. */
export async function startLocalModeFor(defer: Defer, tokenUrl: string, connectorId: string): Promise<LocalMode> {
  const [vendor] = await startLocalModes(defer, { tokenUrl, connectorIds: [connectorId] });
  if (vendor === undefined) throw new Error('local mode did not start');
  return vendor;
}

/** One SigV4-signed vend by the bench caller, signing included (as a workload's AWS SDK pays it). */
export async function benchVend(url: string): Promise<{ status: number; token: string | undefined }> {
  const response = await signedFetch(url, BENCH_CALLER);
  const body = (await response.json()) as { access_token?: string };
  return { status: response.status, token: body.access_token };
}

/** One signed GET by the bench caller, signing included; the status only (the body is read and dropped). */
export async function signedGet(
  url: string,
  identity: { accessKeyId: string; secretAccessKey: string },
): Promise<number> {
  const response = await signedFetch(url, identity);
  await response.arrayBuffer();
  return response.status;
}

/**
 * What a workload without the vendor does for a token: `oauth4webapi`'s client-credentials grant (Basic auth,
 * scope `read`) as the bench client against `tokenUrl`, one token request per call.
 */
export function ownTokenGrant(tokenUrl: string): () => Promise<oauth.TokenEndpointResponse> {
  const as: oauth.AuthorizationServer = { issuer: new URL(tokenUrl).origin, token_endpoint: tokenUrl };
  const client: oauth.Client = { client_id: BENCH_CLIENT.client_id };
  const auth = oauth.ClientSecretBasic(BENCH_CLIENT.client_secret);
  return async () => {
    const response = await oauth.clientCredentialsGrantRequest(
      as,
      client,
      auth,
      new URLSearchParams({ scope: 'read' }),
      { [oauth.allowInsecureRequests]: true },
    );
    return oauth.processClientCredentialsResponse(as, client, response);
  };
}

/**
 * The SigV4 headers (service execute-api) of one GET, signed at `signingDate`. The signature depends only on the
 * request and the date, so one signed request can be replayed for as long as the verifier accepts the date (15 min).
 */
export async function presignGet(
  url: string,
  identity: { accessKeyId: string; secretAccessKey: string },
  signingDate = new Date(),
): Promise<Record<string, string>> {
  const target = new URL(url);
  const signer = new SignatureV4({
    credentials: identity,
    region: 'us-east-1',
    service: 'execute-api',
    sha256: Sha256,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: 'GET',
      protocol: target.protocol,
      hostname: target.hostname,
      port: Number(target.port),
      path: target.pathname,
      headers: { host: target.host },
    }),
    { signingDate },
  );
  return signed.headers;
}

export interface ChildServer {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** A bare Node HTTP server answering a constant JSON body, in its own process (as local mode is). */
export function startBareServer(): Promise<ChildServer> {
  return startChildServer('bare server', [
    "import { createServer } from 'node:http';",
    'const body = JSON.stringify({ ok: true });',
    "const server = createServer((request, response) => { response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }); response.end(body); });",
  ]);
}

/**
 * The least a server can do for local mode's job: verify the SigV4 signature of a GET without a query (the canonical
 * request written out, `node:crypto`, each derived signing key kept as a `KeyObject`) and answer a token held in
 * memory. No clock-skew check, no routing, no authorization: an ideal to compare local mode with, not a verifier.
 */
export function startSigV4MemoryServer(identity: {
  accessKeyId: string;
  secretAccessKey: string;
}): Promise<ChildServer> {
  return startChildServer('SigV4 memory server', [
    "import { createServer } from 'node:http';",
    "import { createHash, createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';",
    `const SECRETS = ${JSON.stringify({ [identity.accessKeyId]: identity.secretAccessKey })};`,
    "const body = JSON.stringify({ access_token: 'bench-memory-token', token_type: 'Bearer', expires_in: 3600 });",
    'const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/]+)\\/(\\d{8})\\/([^/]+)\\/([^/]+)\\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/;',
    "const EMPTY = createHash('sha256').update('').digest('hex');",
    'const keys = new Map();',
    "const hmac = (key, data) => createHmac('sha256', key).update(data).digest();",
    'const signingKey = (id, secret, date, region, service) => {',
    "  const name = id + '/' + date + '/' + region + '/' + service;",
    '  let key = keys.get(name);',
    "  if (key === undefined) { key = createSecretKey(hmac(hmac(hmac(hmac('AWS4' + secret, date), region), service), 'aws4_request')); keys.set(name, key); }",
    '  return key;',
    '};',
    'const verified = (request) => {',
    "  const match = AUTH.exec(request.headers.authorization ?? '');",
    '  if (match === null || SECRETS[match[1]] === undefined) return false;',
    '  const [, id, date, region, service, signedHeaders, signature] = match;',
    "  const canonical = [request.method, request.url, '', ...signedHeaders.split(';').map((name) => name + ':' + String(request.headers[name] ?? '').trim()), '', signedHeaders, request.headers['x-amz-content-sha256'] ?? EMPTY].join('\\n');",
    "  const toSign = ['AWS4-HMAC-SHA256', request.headers['x-amz-date'], date + '/' + region + '/' + service + '/aws4_request', createHash('sha256').update(canonical).digest('hex')].join('\\n');",
    "  return timingSafeEqual(createHmac('sha256', signingKey(id, SECRETS[id], date, region, service)).update(toSign).digest(), Buffer.from(signature, 'hex'));",
    '};',
    'const server = createServer((request, response) => {',
    '  if (!verified(request)) { response.writeHead(403).end(); return; }',
    "  response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });",
    '  response.end(body);',
    '});',
  ]);
}

/** A server whose module source is `lines` (it must define `server`), in its own process with the project's Node. */
async function startChildServer(name: string, lines: readonly string[]): Promise<ChildServer> {
  const source = [
    ...lines,
    "server.listen(0, '127.0.0.1', () => process.stdout.write('listening on http://127.0.0.1:' + server.address().port + '\\n'));",
    "process.once('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)); });",
  ].join('\n');
  const child = spawn(NODE, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const url = await new Promise<string>((resolveUrl, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match?.[1] !== undefined) resolveUrl(match[1]);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited with ${String(code)}:\n${output}`)));
  });
  return {
    url,
    pid: child.pid ?? 0,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}
