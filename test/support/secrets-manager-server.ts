import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const CURRENT = 'AWSCURRENT';
const PREVIOUS = 'AWSPREVIOUS';
/** Secrets Manager keeps at most this many versions; past it, the oldest ones without a staging label go. */
const MAX_VERSIONS = 100;

/** One version of a secret, as a test sees it. */
export interface SecretVersion {
  readonly versionId: string;
  /** Its staging labels, `AWSCURRENT` first; empty for a deprecated version. */
  readonly stages: readonly string[];
  readonly value: string;
}

interface StoredVersion {
  readonly versionId: string;
  readonly value: string;
  readonly createdDate: Date;
  readonly stages: Set<string>;
}

/** A secret and every version it keeps, oldest first. `value` and `versionId` are those of its `AWSCURRENT` version. */
export interface StoredSecret {
  readonly name: string;
  readonly arn: string;
  readonly createdDate: Date;
  /** The `AWSCURRENT` version's secret string. */
  readonly value: string;
  /** The `AWSCURRENT` version's ID. */
  readonly versionId: string;
  readonly versions: readonly StoredVersion[];
}

class Secret implements StoredSecret {
  readonly name: string;
  readonly arn: string;
  readonly createdDate = new Date();
  lastChangedDate = this.createdDate;
  readonly versions: StoredVersion[] = [];

  constructor(name: string) {
    this.name = name;
    // The service appends six random characters to the name in the ARN.
    this.arn = `arn:aws:secretsmanager:us-east-1:000000000000:secret:${name}-${randomBytes(3).toString('hex')}`;
  }

  version(versionId: string): StoredVersion | undefined {
    return this.versions.find((version) => version.versionId === versionId);
  }

  staged(stage: string): StoredVersion | undefined {
    return this.versions.find((version) => version.stages.has(stage));
  }

  get current(): StoredVersion {
    const current = this.staged(CURRENT);
    if (current === undefined) throw new Error(`secret ${this.name} has no ${CURRENT} version`);
    return current;
  }

  get value(): string {
    return this.current.value;
  }

  get versionId(): string {
    return this.current.versionId;
  }

  /**
   * Adds a version and moves `stages` onto it. When `AWSCURRENT` moves, the version it leaves gets `AWSPREVIOUS` (taken
   * from whichever version had it), as PutSecretValue and UpdateSecret do.
   */
  add(versionId: string, value: string, stages: readonly string[]): StoredVersion {
    const version: StoredVersion = { versionId, value, createdDate: new Date(), stages: new Set() };
    const formerCurrent = this.staged(CURRENT);
    for (const stage of stages) {
      for (const other of this.versions) other.stages.delete(stage);
      version.stages.add(stage);
    }
    if (stages.includes(CURRENT) && formerCurrent !== undefined) {
      for (const other of this.versions) other.stages.delete(PREVIOUS);
      formerCurrent.stages.add(PREVIOUS);
    }
    this.versions.push(version);
    this.lastChangedDate = version.createdDate;
    while (this.versions.length > MAX_VERSIONS) {
      const deprecated = this.versions.findIndex((candidate) => candidate.stages.size === 0);
      if (deprecated < 0) break;
      this.versions.splice(deprecated, 1);
    }
    return version;
  }
}

export interface SecretsManagerServer {
  readonly endpoint: string;
  /** Secrets by name; each keeps its versions. */
  readonly secrets: Map<string, StoredSecret>;
  /** Calls by operation name (`GetSecretValue`, …). */
  readonly calls: Map<string, number>;
  /** Operations that answer with ThrottlingException while listed. */
  readonly throttled: Set<string>;
  /** Operations that accept the request and never answer while listed; the connection stays open until `close()`. */
  readonly hung: Set<string>;
  /** Operations that answer 500 InternalServiceError while listed. */
  readonly failing: Set<string>;
  /** PutSecretValue calls by SecretId: every call that reached the server, failed and idempotent repeats included. */
  readonly putsBySecret: Map<string, number>;
  /** GetSecretValue calls by SecretId. */
  readonly readsBySecret: Map<string, number>;
  /**
   * Creates the secret with `value` as its `AWSCURRENT` version or, when it exists, adds `value` as a new
   * `AWSCURRENT` version (an operator's `put-secret-value`). Returns the new version's ID.
   */
  put(name: string, value: string): string;
  /** Every version the secret keeps, oldest first (empty for an unknown secret). */
  versions(name: string): SecretVersion[];
  /** Settles once the server has answered `operation` (or, if hung, received it) `count` more times. */
  nextCalls(operation: string, count?: number): Promise<void>;
  close(): Promise<void>;
}

const epochSeconds = (date: Date) => date.getTime() / 1000;
const stagesOf = (version: StoredVersion) =>
  [...version.stages].sort((a, b) => Number(b === CURRENT) - Number(a === CURRENT) || a.localeCompare(b));

/**
 * The part of Secrets Manager's JSON 1.1 protocol the vendor and its CLI use, on loopback, so the real AWS SDK client
 * and Powertools' provider run unchanged against it: CreateSecret, PutSecretValue, GetSecretValue, DescribeSecret and
 * ListSecrets (name filter, pagination). Versions behave as the service documents: every secret keeps its versions; a
 * new version takes `AWSCURRENT` (or the `VersionStages` asked for) and the version that had it becomes `AWSPREVIOUS`;
 * the ClientRequestToken is the new version's ID, so repeating it with the same value changes nothing and with
 * another value fails with ResourceExistsException. Operations can be made to throttle, fail or hang, to model an
 * outage the SDK sees through its real retry and timeout handling.
 */
export async function startSecretsManagerServer(pageSize = 2): Promise<SecretsManagerServer> {
  const secrets = new Map<string, Secret>();
  const calls = new Map<string, number>();
  const throttled = new Set<string>();
  const hung = new Set<string>();
  const failing = new Set<string>();
  const putsBySecret = new Map<string, number>();
  const readsBySecret = new Map<string, number>();
  const waiters: { operation: string; remaining: number; resolve: () => void }[] = [];
  const notify = (operation: string) => {
    for (const waiter of [...waiters]) {
      if (waiter.operation !== operation) continue;
      waiter.remaining -= 1;
      if (waiter.remaining > 0) continue;
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  // SecretId is a name or an ARN.
  const find = (secretId: string) =>
    secrets.get(secretId) ?? [...secrets.values()].find((secret) => secret.arn === secretId);

  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const operation = String(request.headers['x-amz-target'] ?? '').replace('secretsmanager.', '');
      calls.set(operation, (calls.get(operation) ?? 0) + 1);
      const input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
      const answer = (status: number, body: object) => {
        response.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        response.end(JSON.stringify(body));
        notify(operation);
      };
      const fail = (type: string, message: string) => answer(400, { __type: type, message });
      const notFound = (message = "Secrets Manager can't find the specified secret.") =>
        fail('ResourceNotFoundException', message);
      const secretId = String(input.SecretId ?? '');
      if (operation === 'PutSecretValue') putsBySecret.set(secretId, (putsBySecret.get(secretId) ?? 0) + 1);
      if (operation === 'GetSecretValue') readsBySecret.set(secretId, (readsBySecret.get(secretId) ?? 0) + 1);
      if (hung.has(operation)) return notify(operation);
      if (failing.has(operation))
        return answer(500, { __type: 'InternalServiceError', message: 'An error occurred on the server side.' });
      if (throttled.has(operation)) return fail('ThrottlingException', 'Rate exceeded');
      const secret = find(secretId);
      switch (operation) {
        case 'GetSecretValue': {
          if (secret === undefined) return notFound();
          const versionId = input.VersionId === undefined ? undefined : String(input.VersionId);
          const stage = input.VersionStage === undefined ? undefined : String(input.VersionStage);
          let version: StoredVersion | undefined;
          if (versionId !== undefined) {
            version = secret.version(versionId);
            if (version === undefined)
              return notFound(`Secrets Manager can't find the specified secret value for VersionId: ${versionId}`);
            // Both given: they must name the same version.
            if (stage !== undefined && !version.stages.has(stage))
              return notFound('You provided a VersionStage that is not associated to the provided VersionId.');
          } else {
            version = secret.staged(stage ?? CURRENT);
            if (version === undefined)
              return notFound(`Secrets Manager can't find the specified secret value for staging label: ${stage}`);
          }
          return answer(200, {
            ARN: secret.arn,
            Name: secret.name,
            VersionId: version.versionId,
            SecretString: version.value,
            VersionStages: stagesOf(version),
            CreatedDate: epochSeconds(version.createdDate),
          });
        }
        case 'PutSecretValue': {
          if (secret === undefined) return notFound();
          const token = String(input.ClientRequestToken ?? randomUUID());
          const value = String(input.SecretString ?? '');
          const stages = (input.VersionStages as string[] | undefined) ?? [CURRENT];
          // The token is the version's ID: a repeat with the same value is ignored, with another value refused.
          const existing = secret.version(token);
          if (existing !== undefined && existing.value !== value)
            return fail(
              'ResourceExistsException',
              "You can't modify an existing version, you can only create a new version.",
            );
          const version = existing ?? secret.add(token, value, stages);
          return answer(200, {
            ARN: secret.arn,
            Name: secret.name,
            VersionId: version.versionId,
            VersionStages: stagesOf(version),
          });
        }
        case 'CreateSecret': {
          const name = String(input.Name ?? '');
          if (secrets.has(name))
            return fail('ResourceExistsException', `The operation failed because the secret ${name} already exists.`);
          const created = new Secret(name);
          const version = created.add(
            String(input.ClientRequestToken ?? randomUUID()),
            String(input.SecretString ?? ''),
            [CURRENT],
          );
          secrets.set(name, created);
          return answer(200, { ARN: created.arn, Name: name, VersionId: version.versionId });
        }
        case 'DescribeSecret': {
          if (secret === undefined) return notFound();
          return answer(200, {
            ARN: secret.arn,
            Name: secret.name,
            CreatedDate: epochSeconds(secret.createdDate),
            LastChangedDate: epochSeconds(secret.lastChangedDate),
            // Only versions with a staging label; the others are deprecated.
            VersionIdsToStages: Object.fromEntries(
              secret.versions
                .filter((version) => version.stages.size > 0)
                .map((version) => [version.versionId, stagesOf(version)]),
            ),
          });
        }
        case 'ListSecrets': {
          const filters = (input.Filters as { Key: string; Values: string[] }[] | undefined) ?? [];
          const prefix = filters.find((filter) => filter.Key === 'name')?.Values[0] ?? '';
          const names = [...secrets.keys()].filter((candidate) => candidate.startsWith(prefix)).sort();
          const start = Number(input.NextToken ?? 0);
          const page = names.slice(start, start + pageSize);
          return answer(200, {
            SecretList: page.map((name) => {
              const secret = secrets.get(name);
              return {
                ARN: secret?.arn,
                Name: name,
                ...(secret === undefined ? {} : { LastChangedDate: epochSeconds(secret.lastChangedDate) }),
              };
            }),
            ...(start + pageSize < names.length ? { NextToken: String(start + pageSize) } : {}),
          });
        }
        default:
          return fail('UnknownOperationException', operation);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    secrets,
    calls,
    throttled,
    hung,
    failing,
    putsBySecret,
    readsBySecret,
    put(name, value) {
      const secret = secrets.get(name) ?? new Secret(name);
      secrets.set(name, secret);
      return secret.add(randomUUID(), value, [CURRENT]).versionId;
    },
    versions: (name) =>
      (secrets.get(name)?.versions ?? []).map((version) => ({
        versionId: version.versionId,
        stages: stagesOf(version),
        value: version.value,
      })),
    nextCalls: (operation, count = 1) =>
      new Promise((resolve) => {
        waiters.push({ operation, remaining: count, resolve });
      }),
    // Destroys every connection, hung requests' included, so closing never waits for an answer that will not come.
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
