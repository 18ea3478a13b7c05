import { createHash, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Secret {
  value: string;
  versionId: string;
  /** ClientRequestToken → versionId, as Secrets Manager keeps for idempotency. */
  readonly requestTokens: Map<string, { versionId: string; valueHash: string }>;
}

export interface SecretsManagerServer {
  readonly endpoint: string;
  readonly secrets: Map<string, Secret>;
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
  put(name: string, value: string): void;
  close(): Promise<void>;
}

const sha = (value: string) => createHash('sha256').update(value).digest('hex');

/**
 * The part of Secrets Manager's JSON 1.1 protocol the vendor and its CLI use (GetSecretValue, PutSecretValue with
 * ClientRequestToken idempotency, CreateSecret, ListSecrets with a name filter and pagination), on loopback, so the real AWS SDK
 * client and Powertools' provider run unchanged against it. Operations can be made to throttle, fail or hang, to model
 * an outage the SDK sees through its real retry and timeout handling.
 */
export async function startSecretsManagerServer(pageSize = 2): Promise<SecretsManagerServer> {
  const secrets = new Map<string, Secret>();
  const calls = new Map<string, number>();
  const throttled = new Set<string>();
  const hung = new Set<string>();
  const failing = new Set<string>();
  const putsBySecret = new Map<string, number>();
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
      };
      const fail = (type: string, message: string) => answer(400, { __type: type, message });
      const name = String(input.SecretId ?? '');
      if (operation === 'PutSecretValue') putsBySecret.set(name, (putsBySecret.get(name) ?? 0) + 1);
      if (hung.has(operation)) return;
      if (failing.has(operation))
        return answer(500, { __type: 'InternalServiceError', message: 'An error occurred on the server side.' });
      if (throttled.has(operation)) return fail('ThrottlingException', 'Rate exceeded');
      const secret = secrets.get(name);
      switch (operation) {
        case 'GetSecretValue':
          if (secret === undefined)
            return fail('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
          return answer(200, {
            ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${name}`,
            Name: name,
            SecretString: secret.value,
            VersionId: secret.versionId,
          });
        case 'PutSecretValue': {
          if (secret === undefined)
            return fail('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
          const token = String(input.ClientRequestToken ?? randomUUID());
          const value = String(input.SecretString ?? '');
          const earlier = secret.requestTokens.get(token);
          if (earlier !== undefined) {
            if (earlier.valueHash !== sha(value))
              return fail(
                'ResourceExistsException',
                'A version with this ClientRequestToken already exists with different content.',
              );
            return answer(200, { Name: name, VersionId: earlier.versionId });
          }
          secret.value = value;
          secret.versionId = token;
          secret.requestTokens.set(token, { versionId: token, valueHash: sha(value) });
          return answer(200, { Name: name, VersionId: token });
        }
        case 'CreateSecret': {
          const newName = String(input.Name ?? '');
          if (secrets.has(newName))
            return fail(
              'ResourceExistsException',
              `The operation failed because the secret ${newName} already exists.`,
            );
          const token = String(input.ClientRequestToken ?? randomUUID());
          const value = String(input.SecretString ?? '');
          secrets.set(newName, {
            value,
            versionId: token,
            requestTokens: new Map([[token, { versionId: token, valueHash: sha(value) }]]),
          });
          return answer(200, {
            ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${newName}`,
            Name: newName,
            VersionId: token,
          });
        }
        case 'ListSecrets': {
          const filters = (input.Filters as { Key: string; Values: string[] }[] | undefined) ?? [];
          const prefix = filters.find((filter) => filter.Key === 'name')?.Values[0] ?? '';
          const names = [...secrets.keys()].filter((candidate) => candidate.startsWith(prefix)).sort();
          const start = Number(input.NextToken ?? 0);
          const page = names.slice(start, start + pageSize);
          return answer(200, {
            SecretList: page.map((secretName) => ({ Name: secretName })),
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
    put(name, value) {
      secrets.set(name, { value, versionId: randomUUID(), requestTokens: new Map() });
    },
    // Destroys every connection, hung requests' included, so closing never waits for an answer that will not come.
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
