import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { VendorError } from './errors.ts';
import type { ClientAuthMethod } from './oauth/client-auth.ts';
import type {
  CachedToken,
  ConnectorState,
  Lease,
  RefreshTokenJournal,
  TokenFailure,
  TokenStore,
} from './token-store.ts';

/** The table's key and TTL attribute names; the CDK construct and local mode create the table with these. */
export const TABLE_KEY = 'pk';
export const TTL_ATTRIBUTE = 'ttl';

export type DynamoDBTokenStoreOptions = {
  readonly tableName: string;
} & (
  | { readonly client: DynamoDBClient; readonly clientConfig?: never }
  | { readonly client?: never; readonly clientConfig?: ConstructorParameters<typeof DynamoDBClient>[0] }
);

const tokenKey = (key: string) => ({ [TABLE_KEY]: `t#${key}` });
const stateKey = (connectorKey: string) => ({ [TABLE_KEY]: `c#${connectorKey}` });
/** DynamoDB TTL is in epoch seconds; a minute of slack keeps an item around while its token can still be served. */
const ttlSeconds = (epochMs: number) => Math.ceil(epochMs / 1000) + 60;

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const num = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined);

/**
 * TokenStore on one DynamoDB table, single-item conditional writes only (no transactions), so it runs the same
 * on DynamoDB and on dynalite.
 */
export class DynamoDBTokenStore implements TokenStore {
  readonly #tableName: string;
  readonly #client: DynamoDBDocumentClient;

  constructor(options: DynamoDBTokenStoreOptions) {
    this.#tableName = options.tableName;
    const client = options.client ?? new DynamoDBClient(options.clientConfig ?? {});
    this.#client = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  }

  async getToken(key: string, now: number): Promise<CachedToken | undefined> {
    const { Item } = await this.#send(() =>
      this.#client.send(new GetCommand({ TableName: this.#tableName, Key: tokenKey(key), ConsistentRead: true })),
    );
    const accessToken = str(Item?.accessToken);
    const expiresAt = num(Item?.expiresAt);
    if (Item === undefined || accessToken === undefined || expiresAt === undefined || expiresAt <= now)
      return undefined;
    return {
      accessToken,
      tokenType: str(Item.tokenType) ?? 'Bearer',
      scope: str(Item.scope),
      issuedAt: num(Item.issuedAt) ?? now,
      expiresAt,
      refreshAt: num(Item.refreshAt) ?? expiresAt,
      tokenRevision: str(Item.tokenRevision) ?? '',
    };
  }

  async putToken(key: string, token: CachedToken, fence: number): Promise<boolean> {
    return this.#conditional(() =>
      this.#client.send(
        new PutCommand({
          TableName: this.#tableName,
          Item: { ...tokenKey(key), ...token, fence, [TTL_ATTRIBUTE]: ttlSeconds(token.expiresAt) },
          ConditionExpression: 'attribute_not_exists(fence) OR fence <= :fence',
          ExpressionAttributeValues: { ':fence': fence },
        }),
      ),
    );
  }

  async deleteToken(key: string): Promise<void> {
    await this.#send(() => this.#client.send(new DeleteCommand({ TableName: this.#tableName, Key: tokenKey(key) })));
  }

  async getState(connectorKey: string): Promise<ConnectorState> {
    const { Item } = await this.#send(() =>
      this.#client.send(
        new GetCommand({ TableName: this.#tableName, Key: stateKey(connectorKey), ConsistentRead: true }),
      ),
    );
    if (Item === undefined) return {};
    const authMethod = str(Item.authMethod);
    const journalToken = str(Item.journalToken);
    const reauthRevision = str(Item.reauthRevision);
    const failureAt = num(Item.failureAt);
    return {
      authMethod: authMethod === 'basic' || authMethod === 'body' || authMethod === 'none' ? authMethod : undefined,
      authRevision: str(Item.authRevision),
      journal:
        journalToken === undefined
          ? undefined
          : {
              refreshToken: journalToken,
              replaces: str(Item.journalReplaces) ?? '',
              written: Item.journalWritten === true,
            },
      reauthorization:
        reauthRevision === undefined
          ? undefined
          : { revision: reauthRevision, upstreamError: str(Item.reauthError) ?? 'invalid_grant' },
      failure:
        failureAt === undefined
          ? undefined
          : {
              at: failureAt,
              code: str(Item.failureCode) ?? 'upstream_unavailable',
              upstreamError: str(Item.failureUpstreamError),
              revision: str(Item.failureRevision) ?? '',
              consecutive: num(Item.failureCount) ?? 1,
              openUntil: num(Item.failureOpenUntil),
              nextAttemptAt: num(Item.failureNextAttemptAt),
            },
    };
  }

  async acquireLease(connectorKey: string, owner: string, now: number, durationMs: number): Promise<Lease | undefined> {
    const until = now + durationMs;
    try {
      const { Attributes } = await this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          // An expired lease is free whether or not anything deleted it: the check is on leaseUntil, not on TTL.
          UpdateExpression: 'SET leaseOwner = :owner, leaseUntil = :until ADD fence :one',
          ConditionExpression: 'attribute_not_exists(leaseUntil) OR leaseUntil <= :now',
          ExpressionAttributeValues: { ':owner': owner, ':until': until, ':now': now, ':one': 1 },
          ReturnValues: 'UPDATED_NEW',
        }),
      );
      return { owner, fence: num(Attributes?.fence) ?? 1, until };
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return undefined;
      throw storeUnavailable(error);
    }
  }

  async releaseLease(connectorKey: string, lease: Lease): Promise<void> {
    await this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression: 'SET leaseUntil = :zero',
          ConditionExpression: 'leaseOwner = :owner AND fence = :fence',
          ExpressionAttributeValues: { ':zero': 0, ':owner': lease.owner, ':fence': lease.fence },
        }),
      ),
    );
  }

  async rememberAuthMethod(connectorKey: string, method: ClientAuthMethod, revision: string): Promise<void> {
    await this.#update(connectorKey, 'SET authMethod = :method, authRevision = :revision', {
      ':method': method,
      ':revision': revision,
    });
  }

  async journalRefreshToken(
    connectorKey: string,
    lease: Lease,
    journal: Omit<RefreshTokenJournal, 'written'>,
  ): Promise<boolean> {
    return this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression:
            'SET journalToken = :token, journalReplaces = :replaces, journalFence = :fence, journalWritten = :false',
          ConditionExpression: 'attribute_not_exists(journalFence) OR journalFence <= :fence',
          ExpressionAttributeValues: {
            ':token': journal.refreshToken,
            ':replaces': journal.replaces,
            ':fence': lease.fence,
            ':false': false,
          },
        }),
      ),
    );
  }

  async markJournalWritten(connectorKey: string, refreshToken: string): Promise<void> {
    await this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression: 'SET journalWritten = :true',
          ConditionExpression: 'journalToken = :token',
          ExpressionAttributeValues: { ':true': true, ':token': refreshToken },
        }),
      ),
    );
  }

  async recordFailure(connectorKey: string, failure: TokenFailure): Promise<void> {
    const { upstreamError, openUntil, nextAttemptAt } = failure;
    const sets = ['failureAt = :at', 'failureCode = :code', 'failureRevision = :revision', 'failureCount = :count'];
    const removes: string[] = [];
    if (upstreamError === undefined) removes.push('failureUpstreamError');
    else sets.push('failureUpstreamError = :upstream');
    if (openUntil === undefined) removes.push('failureOpenUntil');
    else sets.push('failureOpenUntil = :openUntil');
    if (nextAttemptAt === undefined) removes.push('failureNextAttemptAt');
    else sets.push('failureNextAttemptAt = :nextAttemptAt');
    await this.#update(
      connectorKey,
      `SET ${sets.join(', ')}${removes.length > 0 ? ` REMOVE ${removes.join(', ')}` : ''}`,
      {
        ':at': failure.at,
        ':code': failure.code,
        ':revision': failure.revision,
        ':count': failure.consecutive,
        ...(upstreamError === undefined ? {} : { ':upstream': upstreamError }),
        ...(openUntil === undefined ? {} : { ':openUntil': openUntil }),
        ...(nextAttemptAt === undefined ? {} : { ':nextAttemptAt': nextAttemptAt }),
      },
    );
  }

  async clearFailure(connectorKey: string): Promise<void> {
    await this.#send(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression:
            'REMOVE failureAt, failureCode, failureRevision, failureCount, failureUpstreamError, failureOpenUntil, failureNextAttemptAt',
        }),
      ),
    );
  }

  async markNeedsReauthorization(connectorKey: string, revision: string, upstreamError: string): Promise<void> {
    await this.#update(connectorKey, 'SET reauthRevision = :revision, reauthError = :error', {
      ':revision': revision,
      ':error': upstreamError,
    });
  }

  async takeForcedRefreshSlot(connectorKey: string, now: number, spacingMs: number): Promise<number | undefined> {
    const granted = await this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression: 'SET forcedAt = :now',
          ConditionExpression: 'attribute_not_exists(forcedAt) OR forcedAt <= :earliest',
          ExpressionAttributeValues: { ':now': now, ':earliest': now - spacingMs },
        }),
      ),
    );
    if (granted) return undefined;
    const { Item } = await this.#send(() =>
      this.#client.send(
        new GetCommand({ TableName: this.#tableName, Key: stateKey(connectorKey), ConsistentRead: true }),
      ),
    );
    return Math.max(1, (num(Item?.forcedAt) ?? now) + spacingMs - now);
  }

  async #update(connectorKey: string, expression: string, values: Record<string, unknown>): Promise<void> {
    await this.#send(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression: expression,
          ExpressionAttributeValues: values,
        }),
      ),
    );
  }

  /** Runs a conditional write: true when it applied, false when its condition refused it. */
  async #conditional(write: () => Promise<unknown>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw storeUnavailable(error);
    }
  }

  async #send<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw storeUnavailable(error);
    }
  }
}

function storeUnavailable(cause: unknown): VendorError {
  return new VendorError('upstream_unavailable', 'The token store is unavailable; retry shortly.', { cause });
}
