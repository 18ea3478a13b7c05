import { createHash } from 'node:crypto';
import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import {
  ListSecretsCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { VendorError } from '../core/errors.ts';
import type { ConnectorRef } from '../core/identifiers.ts';
import { DEFAULT_SECRET_PREFIX, refFromSecretName, secretName } from '../core/settings.ts';
import { refreshTokenOf, withRefreshToken } from '../domain/connector.ts';
import type { ConnectorSource, ReplaceCheck, WriteResult } from '../ports/connector-store.ts';

export interface SecretsManagerConnectorSourceOptions {
  readonly client: SecretsManagerClient;
  /** Secret names are `<prefix>/<family>/<connectorId>`. @default 'token-vendor' */
  readonly prefix?: string;
  /** Seconds a read document is reused before Secrets Manager is asked again. @default 30 */
  readonly maxAgeSeconds?: number;
}

const storeUnavailable = (cause: unknown) =>
  new VendorError('upstream_unavailable', 'The connector store (Secrets Manager) is unavailable; retry shortly.', {
    cause,
  });

/** A ClientRequestToken derived from the token itself, so a retried write of the same token is idempotent. */
export function clientRequestToken(refreshToken: string): string {
  return createHash('sha256').update(refreshToken).digest('hex').slice(0, 64);
}

/** AWS: each connector is the secret string of `<prefix>/<family>/<connectorId>` (CONTRACT §2). */
export class SecretsManagerConnectorSource implements ConnectorSource {
  readonly #client: SecretsManagerClient;
  readonly #provider: SecretsProvider;
  readonly #prefix: string;
  readonly #maxAge: number;
  /** AWS asks for at most one PutSecretValue per secret every 10 minutes; more piles up versions. */
  readonly checkpointIntervalMs = 600_000;

  constructor(options: SecretsManagerConnectorSourceOptions) {
    this.#client = options.client;
    // Powertools' provider owns caching with a max age, so no request reads the secret once it is warm.
    this.#provider = new SecretsProvider({ awsSdkV3Client: options.client });
    this.#prefix = options.prefix ?? DEFAULT_SECRET_PREFIX;
    this.#maxAge = options.maxAgeSeconds ?? 30;
  }

  #name(ref: ConnectorRef): string {
    return secretName(this.#prefix, ref);
  }

  async read(ref: ConnectorRef, options: { readonly fresh?: boolean } = {}): Promise<string | undefined> {
    try {
      const value = await this.#provider.get(this.#name(ref), {
        maxAge: this.#maxAge,
        forceFetch: options.fresh === true,
      });
      return typeof value === 'string' ? value : undefined;
    } catch (error) {
      const cause = error instanceof Error ? error.cause : undefined;
      if (cause instanceof ResourceNotFoundException || error instanceof ResourceNotFoundException) return undefined;
      throw storeUnavailable(error);
    }
  }

  async writeRefreshToken(ref: ConnectorRef, refreshToken: string, mayReplace: ReplaceCheck): Promise<WriteResult> {
    // Rewrite from the newest version, never the cached one, so no other field is rolled back.
    const text = await this.read(ref, { fresh: true });
    if (text === undefined) throw storeUnavailable(new Error('the connector secret no longer exists'));
    const current = refreshTokenOf(text);
    if (current === refreshToken) return 'written';
    if (!mayReplace(current)) return 'refused';
    try {
      await this.#client.send(
        new PutSecretValueCommand({
          SecretId: this.#name(ref),
          SecretString: withRefreshToken(text, refreshToken),
          ClientRequestToken: clientRequestToken(refreshToken),
        }),
      );
    } catch (error) {
      throw storeUnavailable(error);
    }
    // Re-read on next use so the cache does not hand out the replaced document.
    this.#provider.clearCache();
    return 'written';
  }

  async list(): Promise<ConnectorRef[]> {
    return (await this.#listAll()).map(({ ref }) => ref);
  }

  async listChanged(since: number): Promise<ConnectorRef[]> {
    // ListSecrets has no filter on the date: the pages are walked, the secrets themselves are not read.
    return (await this.#listAll()).filter(({ changedAt }) => changedAt >= since).map(({ ref }) => ref);
  }

  async #listAll(): Promise<{ ref: ConnectorRef; changedAt: number }[]> {
    const listed: { ref: ConnectorRef; changedAt: number }[] = [];
    let nextToken: string | undefined;
    do {
      const page = await this.#client
        .send(
          new ListSecretsCommand({
            Filters: [{ Key: 'name', Values: [`${this.#prefix}/`] }],
            MaxResults: 100,
            ...(nextToken === undefined ? {} : { NextToken: nextToken }),
          }),
        )
        .catch((error: unknown) => {
          throw storeUnavailable(error);
        });
      for (const secret of page.SecretList ?? []) {
        const ref = refFromSecretName(this.#prefix, secret.Name ?? '');
        // A secret without a change date counts as changed: reading it once too often is the safe mistake.
        const changedAt = secret.LastChangedDate?.getTime() ?? Number.POSITIVE_INFINITY;
        if (ref !== undefined) listed.push({ ref, changedAt });
      }
      nextToken = page.NextToken;
    } while (nextToken !== undefined);
    return listed;
  }
}
