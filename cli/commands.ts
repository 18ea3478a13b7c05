import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { type TokenResponse, TokenVendorClient, TokenVendorError } from '../client/index.ts';
import { DEFAULT_STATE_DIR, type LocalInstance, runningInstance } from '../local/instance.ts';
import { DynamoDBTokenStore } from '../shared/adapters/dynamodb-token-table.ts';
import { EncryptionSdkSealer } from '../shared/adapters/encryption-sdk-sealer.ts';
import { FileConnectorSource } from '../shared/adapters/file-connector-store.ts';
import { SecretsManagerConnectorSource } from '../shared/adapters/secrets-manager-connector-store.ts';
import { misconfigured, VendorError } from '../shared/core/errors.ts';
import {
  CONNECTOR_ID,
  type ConnectorRef,
  FAMILIES,
  type Family,
  isFamily,
  isScopeToken,
  refKey,
  splitScope,
} from '../shared/core/identifiers.ts';
import { DEFAULT_CONNECTORS_DIR, DEFAULT_TABLE_NAME, SECRET_PREFIX, secretName } from '../shared/core/settings.ts';
import { type Connector, parseConnector } from '../shared/domain/connector.ts';
import { type ConnectorHealth, healthOf } from '../shared/domain/health.ts';
import { refuseUrl } from '../shared/domain/network-policy.ts';
import type { ConnectorSource } from '../shared/ports/connector-store.ts';
import { credentialsFrom, dynamoDBClient, type Env, regionFrom, secretsManagerClient } from './aws.ts';

/** Where the CLI writes and what it reads: the process's own in `run()`, a test's in-process. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: Env;
  readonly cwd: string;
  /** The fetch `token get` uses. @default globalThis.fetch */
  readonly fetch?: typeof globalThis.fetch;
}

/** Wrong usage: exit code 2, with the command's help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The command ran and failed (refused, invalid, unreachable): exit code 1. */
export class CommandError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CommandError';
  }
}

export type Values = Record<string, string | boolean | string[] | undefined>;

const FAMILY_LIST = Object.keys(FAMILIES).join(', ');
const DEFAULT_ENDPOINT = 'http://127.0.0.1:3000';

export const str = (values: Values, name: string): string | undefined => {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
};

/** `<family>/<connectorId>`, checked as the service checks its path. */
export function parseRef(text: string | undefined): ConnectorRef {
  if (text === undefined) throw new UsageError('missing <family>/<connectorId>');
  const [family, connectorId, ...rest] = text.split('/');
  if (family === undefined || connectorId === undefined || rest.length > 0) {
    throw new UsageError(`expected <family>/<connectorId> (e.g. client-credentials/crm), got "${text}"`);
  }
  if (!isFamily(family)) throw new UsageError(`unknown family "${family}": one of ${FAMILY_LIST}`);
  if (!CONNECTOR_ID.test(connectorId)) {
    throw new UsageError(`malformed connector ID "${connectorId}": it must match ${CONNECTOR_ID.source}`);
  }
  return { family, connectorId };
}

export function onePositional(positionals: readonly string[], what: string): string {
  if (positionals.length === 0) throw new UsageError(`missing ${what}`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  return positionals[0] as string;
}

const familyOf = (grantType: string): Family | undefined =>
  (Object.keys(FAMILIES) as Family[]).find((family) => FAMILIES[family] === grantType);

/** Where token URLs may point: in local mode (loopback, `http://` to it) or in AWS (https, private ranges opt-in). */
export type Deployment = 'local' | 'aws' | 'either';

type Inspection =
  | { readonly ok: true; readonly connector: Connector; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly problem: string };

/**
 * Validates a document with the service's own {@link parseConnector} (the same messages: field names, never
 * values), its family, and its token URL against the network policy of where it is going.
 */
export function inspectDocument(text: string, expected: ConnectorRef | undefined, deployment: Deployment): Inspection {
  let connector: Connector;
  try {
    connector = parseConnector(expected ?? { family: 'client-credentials', connectorId: 'document' }, text);
  } catch (error) {
    if (error instanceof VendorError) return { ok: false, problem: error.message };
    throw error;
  }
  const { grantType, tokenUrl } = connector.document;
  if (expected !== undefined && FAMILIES[expected.family] !== grantType) {
    return {
      ok: false,
      problem:
        `grantType "${grantType}" belongs under ${familyOf(grantType)}/, not ${expected.family}/: ` +
        'the vendor would answer 403 for it.',
    };
  }
  const url = new URL(tokenUrl);
  const local = refuseUrl(url, { allowLoopback: true, allowPrivate: true });
  const aws = refuseUrl(url, { allowLoopback: false, allowPrivate: true });
  const awsPublic = refuseUrl(url, { allowLoopback: false, allowPrivate: false });
  const refusal = deployment === 'aws' ? aws : local;
  if (refusal !== undefined) return { ok: false, problem: misconfigured('tokenUrl', refusal).message };
  const warnings: string[] = [];
  if (deployment === 'either' && aws !== undefined) {
    warnings.push(`tokenUrl ${aws}: accepted in local mode only, refused in AWS.`);
  } else if (deployment !== 'local' && awsPublic !== undefined) {
    warnings.push('tokenUrl points to a private address: in AWS only with TOKEN_VENDOR_ALLOW_PRIVATE_NETWORKS=true.');
  }
  return { ok: true, connector, warnings };
}

async function readText(file: string, cwd: string): Promise<string> {
  try {
    return await readFile(resolve(cwd, file), 'utf8');
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? String(error.code) : 'unreadable';
    throw new CommandError(`cannot read ${file} (${code})`, { cause: error });
  }
}

/** Explains a failure of the vendor's own adapters (Secrets Manager, DynamoDB) with the SDK error underneath. */
export function storeFailure(action: string, error: unknown): CommandError {
  const cause = error instanceof VendorError && error.cause !== undefined ? error.cause : error;
  const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  return new CommandError(`${action} failed (${detail})`, { cause: error });
}

// ---------------------------------------------------------------------------------------------- token get

function describeVendorError(error: TokenVendorError): string {
  const head = error.status === 0 ? error.code : `${error.code} (HTTP ${error.status})`;
  const extras: string[] = [];
  if (error.upstreamError !== undefined) extras.push(`upstream error: ${error.upstreamError}`);
  if (error.retryAfterSeconds !== undefined) extras.push(`retry after ${error.retryAfterSeconds} s`);
  // No answer at all: say why (ECONNREFUSED, a timeout, no credentials), from the error underneath.
  const cause = error.cause instanceof Error ? error.cause : undefined;
  if (cause !== undefined && error.status === 0) {
    const root = cause.cause instanceof Error ? cause.cause : cause;
    extras.push('code' in root && typeof root.code === 'string' ? root.code : root.message);
  }
  return `${head}: ${error.message}${extras.length === 0 ? '' : ` (${extras.join('; ')})`}`;
}

export async function tokenGet(values: Values, positionals: readonly string[], io: CliIo): Promise<void> {
  const ref = parseRef(onePositional(positionals, '<family>/<connectorId>'));
  if (values.header === true && values.json === true) throw new UsageError('--header and --json exclude each other');
  const scope = str(values, 'scope');
  if (scope !== undefined && (splitScope(scope).length === 0 || !splitScope(scope).every(isScopeToken))) {
    throw new UsageError('--scope must be space-separated scope tokens (RFC 6749 §3.3)');
  }
  const minTtlText = str(values, 'min-ttl');
  if (minTtlText !== undefined && !/^\d{1,9}$/.test(minTtlText)) {
    throw new UsageError('--min-ttl must be a whole number of seconds');
  }
  const endpoint = str(values, 'endpoint') ?? io.env.TOKEN_VENDOR_ENDPOINT ?? DEFAULT_ENDPOINT;
  if (!URL.canParse(endpoint) || !/^https?:$/.test(new URL(endpoint).protocol)) {
    throw new UsageError(`--endpoint must be an http(s) URL, got "${endpoint}"`);
  }
  const region = regionFrom(io.env, str(values, 'region'));
  const client = new TokenVendorClient({
    endpoint,
    ...(region === undefined ? {} : { region }),
    credentials: credentialsFrom(io.env),
    ...(io.fetch === undefined ? {} : { fetch: io.fetch }),
  });
  let token: TokenResponse;
  try {
    token = await client.getToken(ref.family, ref.connectorId, {
      ...(scope === undefined ? {} : { scope }),
      ...(minTtlText === undefined ? {} : { minTtl: Number(minTtlText) }),
    });
  } catch (error) {
    if (error instanceof TokenVendorError) throw new CommandError(describeVendorError(error), { cause: error });
    throw error;
  }
  if (values.json === true) io.stdout(`${JSON.stringify(token, null, 2)}\n`);
  else if (values.header === true) io.stdout(`${token.header.name}: ${token.header.value}\n`);
  else io.stdout(`${token.access_token}\n`);
}

// ---------------------------------------------------------------------------------------------- connectors

/** The family and ID a path names when it is `<…>/<family>/<connectorId>.json`, as in a connectors folder. */
function refFromPath(file: string): ConnectorRef | undefined {
  const family = basename(dirname(resolve(file)));
  const name = basename(file);
  const connectorId = name.endsWith('.json') ? name.slice(0, -'.json'.length) : '';
  return isFamily(family) && CONNECTOR_ID.test(connectorId) ? { family, connectorId } : undefined;
}

export async function connectorsValidate(values: Values, positionals: readonly string[], io: CliIo): Promise<void> {
  if (positionals.length === 0) throw new UsageError('missing <file>');
  const family = str(values, 'family');
  if (family !== undefined && !isFamily(family))
    throw new UsageError(`unknown family "${family}": one of ${FAMILY_LIST}`);
  let invalid = 0;
  for (const file of positionals) {
    let text: string;
    try {
      text = await readText(file, io.cwd);
    } catch (error) {
      io.stderr(`${file}: ${(error as Error).message}\n`);
      invalid += 1;
      continue;
    }
    const expected = family !== undefined ? { family, connectorId: 'document' } : refFromPath(resolve(io.cwd, file));
    const inspection = inspectDocument(text, expected, 'either');
    if (!inspection.ok) {
      io.stderr(`${file}: invalid: ${inspection.problem}\n`);
      invalid += 1;
      continue;
    }
    for (const warning of inspection.warnings) io.stderr(`${file}: warning: ${warning}\n`);
    io.stdout(`${file}: valid ${inspection.connector.document.grantType} connector\n`);
  }
  if (invalid > 0) throw new CommandError(`${invalid} of ${positionals.length} document(s) invalid`);
}

export type Target =
  | { readonly kind: 'dir'; readonly dir: string }
  | { readonly kind: 'secrets'; readonly prefix: string };

/** The local mode running from `cwd` (its state folder: `TOKEN_VENDOR_STATE_DIR`, else `.token-vendor/state`). */
const localInstance = (io: CliIo): Promise<LocalInstance | undefined> =>
  runningInstance(resolve(io.cwd, io.env.TOKEN_VENDOR_STATE_DIR ?? DEFAULT_STATE_DIR));

/**
 * `--dir` (local mode's folder) or `--prefix` (Secrets Manager, as deployed); without either, what the service
 * itself would use: `TOKEN_VENDOR_CONNECTORS_DIR`, `TOKEN_VENDOR_SECRET_PREFIX`, or `./connectors`, which a write
 * creates (local mode serves it from its next start) and a read of a missing one replaces with the folder the
 * running local mode serves (the demo's). Never AWS by accident.
 */
export async function resolveTarget(values: Values, io: CliIo, purpose: 'read' | 'write'): Promise<Target> {
  const dir = str(values, 'dir');
  const prefix = str(values, 'prefix');
  if (dir !== undefined && prefix !== undefined) throw new UsageError('--dir and --prefix exclude each other');
  const checkedPrefix = (value: string): Target => {
    // `token-vendor/` is how people write a folder; the prefix is the same without the slash.
    const prefix = value.replace(/\/+$/, '');
    if (!SECRET_PREFIX.test(prefix)) throw new UsageError(`--prefix "${value}" is not a valid secret name prefix`);
    return { kind: 'secrets', prefix };
  };
  if (dir !== undefined) return { kind: 'dir', dir: resolve(io.cwd, dir) };
  if (prefix !== undefined) return checkedPrefix(prefix);
  if (io.env.TOKEN_VENDOR_CONNECTORS_DIR !== undefined) {
    return { kind: 'dir', dir: resolve(io.cwd, io.env.TOKEN_VENDOR_CONNECTORS_DIR) };
  }
  if (io.env.TOKEN_VENDOR_SECRET_PREFIX !== undefined) return checkedPrefix(io.env.TOKEN_VENDOR_SECRET_PREFIX);
  const local = resolve(io.cwd, DEFAULT_CONNECTORS_DIR);
  if (purpose === 'write' || existsSync(local)) return { kind: 'dir', dir: local };
  const running = (await localInstance(io))?.connectorsDir;
  if (running !== undefined) return { kind: 'dir', dir: running };
  throw new UsageError(
    'say where the connectors are: --dir <folder> (local mode) or --prefix <secret prefix> (AWS, e.g. token-vendor)',
  );
}

export const describeTarget = (target: Target) =>
  target.kind === 'dir' ? target.dir : `Secrets Manager under ${target.prefix}/`;

export interface OpenedTarget {
  readonly source: ConnectorSource;
  readonly secrets: SecretsManagerClient | undefined;
  close(): void;
}

export function openTarget(target: Target, values: Values, io: CliIo): OpenedTarget {
  if (target.kind === 'dir') {
    if (existsSync(target.dir) && !statSync(target.dir).isDirectory()) {
      throw new CommandError(`${target.dir} is not a folder`);
    }
    return { source: new FileConnectorSource(target.dir), secrets: undefined, close: () => undefined };
  }
  const client = secretsManagerClient(io.env, regionFrom(io.env, str(values, 'region')));
  return {
    // maxAge 0: an operator's command always sees the current secret.
    source: new SecretsManagerConnectorSource({ client, prefix: target.prefix, maxAgeSeconds: 0 }),
    secrets: client,
    close: () => client.destroy(),
  };
}

/** Write beside it, then rename: the vendor reads the old document or the new one, never half of one. */
async function writeAtomically(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = `${path}.${randomUUID()}.tmp`;
  try {
    await writeFile(temporary, text, { mode: 0o600, flush: true });
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new CommandError(`cannot write ${path} (${(error as NodeJS.ErrnoException).code ?? 'failed'})`, {
      cause: error,
    });
  }
}

async function putSecret(client: SecretsManagerClient, name: string, text: string, values: Values) {
  try {
    await client.send(new PutSecretValueCommand({ SecretId: name, SecretString: text }));
    return 'updated';
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException)) throw storeFailure(`PutSecretValue on ${name}`, error);
  }
  const kmsKeyId = str(values, 'kms-key-id');
  try {
    await client.send(
      new CreateSecretCommand({
        Name: name,
        SecretString: text,
        Description: 'Token vendor connector document',
        ...(kmsKeyId === undefined ? {} : { KmsKeyId: kmsKeyId }),
      }),
    );
    return 'created';
  } catch (error) {
    throw storeFailure(`CreateSecret ${name}`, error);
  }
}

export async function connectorsPut(values: Values, positionals: readonly string[], io: CliIo): Promise<void> {
  const ref = parseRef(onePositional(positionals, '<family>/<connectorId>'));
  const file = str(values, 'file');
  if (file === undefined) throw new UsageError('missing --file <document.json>');
  const target = await resolveTarget(values, io, 'write');
  if (target.kind === 'dir' && str(values, 'kms-key-id') !== undefined) {
    throw new UsageError('--kms-key-id applies to Secrets Manager (--prefix) only');
  }
  const text = await readText(file, io.cwd);
  const inspection = inspectDocument(text, ref, target.kind === 'dir' ? 'local' : 'aws');
  if (!inspection.ok) throw new CommandError(`${file}: invalid, nothing written: ${inspection.problem}`);
  for (const warning of inspection.warnings) io.stderr(`${file}: warning: ${warning}\n`);

  let outcome: string;
  let where: string;
  if (target.kind === 'dir') {
    where = join(target.dir, ref.family, `${ref.connectorId}.json`);
    outcome = existsSync(where) ? 'updated' : 'created';
    const running = await localInstance(io);
    await writeAtomically(where, text);
    if (running !== undefined && running.connectorsDir !== target.dir) {
      io.stderr(
        `note: the local mode running at ${running.url ?? `pid ${running.pid}`} serves ${running.connectorsDir ?? 'Secrets Manager'}; ` +
          `restart it (npm start) to serve ${target.dir}\n`,
      );
    }
  } else {
    where = secretName(target.prefix, ref);
    const client = secretsManagerClient(io.env, regionFrom(io.env, str(values, 'region')));
    try {
      outcome = await putSecret(client, where, text, values);
    } finally {
      client.destroy();
    }
  }
  io.stdout(`${outcome} ${refKey(ref)} (${inspection.connector.document.grantType}) in ${where}\n`);
}

export async function connectorsList(values: Values, positionals: readonly string[], io: CliIo): Promise<void> {
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const target = await resolveTarget(values, io, 'read');
  if (target.kind === 'dir' && !existsSync(target.dir)) throw new CommandError(`no such folder: ${target.dir}`);
  const opened = openTarget(target, values, io);
  let refs: ConnectorRef[];
  try {
    refs = await opened.source.list();
  } catch (error) {
    throw storeFailure(`listing ${describeTarget(target)}`, error);
  } finally {
    opened.close();
  }
  const names = refs.map(refKey);
  io.stdout(values.json === true ? `${JSON.stringify(names, null, 2)}\n` : names.map((name) => `${name}\n`).join(''));
}

// ---------------------------------------------------------------------------------------------- status

type StatusRow = ConnectorHealth | { readonly connector: string; readonly state: 'invalid'; readonly problem: string };

/** `connectable`: a refresh-token connector with an authorization URL, which `token-vendor connect` re-authorizes. */
function detailOf(row: StatusRow, connectable: boolean): string {
  switch (row.state) {
    case 'ok':
      return '';
    case 'invalid':
      return row.problem;
    case 'needs_reauthorization':
      return connectable
        ? `${row.upstreamError ?? 'refused'}: run token-vendor connect ${row.connector}`
        : `${row.upstreamError ?? 'refused'}: put a new document (new refresh token or client secret)`;
    case 'failing': {
      const parts = [`${row.consecutiveFailures ?? 1} failure(s) in a row`, `last ${row.lastError ?? 'unknown'}`];
      if (row.upstreamError !== undefined) parts.push(`upstream ${row.upstreamError}`);
      if (row.nextAttemptAt !== undefined) parts.push(`next scheduled attempt ${row.nextAttemptAt}`);
      return parts.join(', ');
    }
  }
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/**
 * The environment and table `status` reads a folder's health with: the table of the local mode serving that folder
 * (its embedded DynamoDB, from the record it keeps in its state folder) unless `AWS_ENDPOINT_URL_DYNAMODB` says
 * otherwise; connectors in a folder have no table in AWS.
 */
async function tableFor(
  target: Target,
  values: Values,
  io: CliIo,
): Promise<{ env: Env; table: string; region: string | undefined }> {
  const table = str(values, 'table') ?? io.env.TOKEN_VENDOR_TABLE;
  const region = regionFrom(io.env, str(values, 'region'));
  const given = (io.env.AWS_ENDPOINT_URL_DYNAMODB ?? io.env.AWS_ENDPOINT_URL) !== undefined;
  if (target.kind === 'secrets' || given) return { env: io.env, table: table ?? DEFAULT_TABLE_NAME, region };
  const running = await localInstance(io);
  if (running?.dynamodbEndpoint === undefined || running.connectorsDir !== target.dir) {
    throw new CommandError(
      `no running local mode serves ${target.dir} (none recorded in ${resolve(io.cwd, io.env.TOKEN_VENDOR_STATE_DIR ?? DEFAULT_STATE_DIR)}): ` +
        'start it (npm start) from this folder or set TOKEN_VENDOR_STATE_DIR to its state folder, or set ' +
        'AWS_ENDPOINT_URL_DYNAMODB to the DynamoDB it uses',
    );
  }
  return {
    // A loopback DynamoDB accepts any signature; the SDK still needs something to sign with.
    env: {
      ...io.env,
      AWS_ENDPOINT_URL_DYNAMODB: running.dynamodbEndpoint,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_SESSION_TOKEN: undefined,
    },
    table: table ?? running.table ?? DEFAULT_TABLE_NAME,
    region: str(values, 'region') ?? running.region ?? region,
  };
}

export async function status(values: Values, positionals: readonly string[], io: CliIo): Promise<void> {
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const target = await resolveTarget(values, io, 'read');
  if (target.kind === 'dir' && !existsSync(target.dir)) throw new CommandError(`no such folder: ${target.dir}`);
  const { env, table: tableName, region } = await tableFor(target, values, io);
  const opened = openTarget(target, values, io);
  const dynamodb = dynamoDBClient(env, region);
  // Health only: the token values stay sealed, so the operator needs no use of the token key.
  const store = new DynamoDBTokenStore({ tableName, client: dynamodb, sealer: EncryptionSdkSealer.ephemeral() });
  const rows: StatusRow[] = [];
  const connectable = new Set<string>();
  try {
    let refs: ConnectorRef[];
    try {
      refs = await opened.source.list();
    } catch (error) {
      throw storeFailure(`listing ${describeTarget(target)}`, error);
    }
    for (const ref of refs) {
      const text = await opened.source.read(ref, { fresh: true }).catch((error: unknown) => {
        throw storeFailure(`reading ${refKey(ref)}`, error);
      });
      // Deleted between list and read.
      if (text === undefined) continue;
      const inspection = inspectDocument(text, ref, target.kind === 'dir' ? 'local' : 'aws');
      if (!inspection.ok) {
        rows.push({ connector: refKey(ref), state: 'invalid', problem: inspection.problem });
        continue;
      }
      const state = await store.getState(refKey(ref), { secrets: false }).catch((error: unknown) => {
        throw storeFailure(`reading the token table ${tableName}`, error);
      });
      rows.push(healthOf(inspection.connector, state));
      if (inspection.connector.document.authorizationUrl !== undefined) connectable.add(refKey(ref));
    }
  } finally {
    opened.close();
    dynamodb.destroy();
  }
  if (values.json === true) {
    io.stdout(`${JSON.stringify(rows, null, 2)}\n`);
    return;
  }
  if (rows.length === 0) {
    io.stdout(`no connectors in ${describeTarget(target)}\n`);
    return;
  }
  io.stdout(
    table([
      ['CONNECTOR', 'STATE', 'DETAIL'],
      ...rows.map((row) => [row.connector, row.state, detailOf(row, connectable.has(row.connector))]),
    ]),
  );
}
