import { ConditionalCheckFailedException, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { VendorError } from '../core/errors.ts';
import { connectorKeyOf } from '../core/identifiers.ts';
import {
  connectorKeyOfStateItem,
  DUE_INDEX,
  DUE_SHARD,
  stateItemKey,
  TABLE_KEY,
  TTL_ATTRIBUTE,
  tokenItemKey,
} from '../core/table.ts';
import type { CachedToken } from '../core/token-policy.ts';
import { toVendProfile, type VendProfile } from '../domain/vend-profile.ts';
import type { SealContext, TokenSealer } from '../ports/token-sealer.ts';
import type {
  ConnectorState,
  ExchangeOutcome,
  Lease,
  LeaseAttempt,
  LeaseView,
  TokenEntry,
  TokenFailure,
  TokenStore,
} from '../ports/token-table.ts';
import { SealError } from './encryption-sdk-sealer.ts';

export type DynamoDBTokenStoreOptions = {
  readonly tableName: string;
  /** Seals every token value before it is written and opens it when read: the table never holds one in clear. */
  readonly sealer: TokenSealer;
} & (
  | { readonly client: DynamoDBClient; readonly clientConfig?: never }
  | { readonly client?: never; readonly clientConfig?: ConstructorParameters<typeof DynamoDBClient>[0] }
);

const tokenKey = (key: string) => ({ [TABLE_KEY]: tokenItemKey(key) });
const stateKey = (connectorKey: string) => ({ [TABLE_KEY]: stateItemKey(connectorKey) });
/** DynamoDB TTL is in epoch seconds; a minute of slack keeps an item around while its token can still be served. */
const ttlSeconds = (epochMs: number) => Math.ceil(epochMs / 1000) + 60;
/**
 * A connector's state item expires this long after its last lease or exchange: a live connector renews it at every
 * refresh (refresh tokens at least daily), one that was deleted leaves nothing behind for long.
 */
const STATE_LIFETIME_MS = 30 * 24 * 3600_000;

const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const num = (value: unknown): number | undefined => (typeof value === 'number' ? value : undefined);

const FAILURE_ATTRIBUTES = [
  'failureAt',
  'failureCode',
  'failureRevision',
  'failureCount',
  'failureUpstreamError',
  'failureOpenUntil',
  'failureNextAttemptAt',
  'failureUnconfirmed',
];

/**
 * A token as stored (a token item, or the head token on a state item) with its access token opened, or undefined
 * when not one.
 */
function toCachedToken(value: unknown, accessToken: string | undefined): CachedToken | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const item = value as Record<string, unknown>;
  const expiresAt = num(item.expiresAt);
  if (accessToken === undefined || expiresAt === undefined) return undefined;
  const issuedAt = num(item.issuedAt) ?? expiresAt;
  return {
    accessToken,
    tokenType: str(item.tokenType) ?? 'Bearer',
    scope: str(item.scope),
    issuedAt,
    expiresAt,
    refreshAt: num(item.refreshAt) ?? expiresAt,
    tokenRevision: str(item.tokenRevision) ?? '',
  };
}

function leaseOf(item: Record<string, unknown>): LeaseView | undefined {
  const owner = str(item.leaseOwner);
  const until = num(item.leaseUntil);
  return owner === undefined || until === undefined || Number.isNaN(until) ? undefined : { owner, until };
}

/**
 * TokenStore on one DynamoDB table, single-item conditional writes only (no transactions), so it runs the same
 * on DynamoDB and on dynalite.
 */
export class DynamoDBTokenStore implements TokenStore {
  readonly #tableName: string;
  readonly #client: DynamoDBDocumentClient;
  readonly #sealer: TokenSealer;

  constructor(options: DynamoDBTokenStoreOptions) {
    this.#tableName = options.tableName;
    this.#sealer = options.sealer;
    const client = options.client ?? new DynamoDBClient(options.clientConfig ?? {});
    this.#client = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  }

  async getToken(key: string, now: number): Promise<CachedToken | undefined> {
    return (await this.#readTokenItem(key, now, true)).token;
  }

  async readEntry(key: string, now: number): Promise<TokenEntry> {
    return this.#readTokenItem(key, now, false);
  }

  async #readTokenItem(key: string, now: number, consistent: boolean): Promise<TokenEntry> {
    const { Item } = await this.#send(() =>
      this.#client.send(new GetCommand({ TableName: this.#tableName, Key: tokenKey(key), ConsistentRead: consistent })),
    );
    if (Item === undefined) return {};
    const profile = toVendProfile(Item.profile);
    if (num(Item.expiresAt) === undefined || (num(Item.expiresAt) ?? 0) <= now) return { profile };
    // A value that does not open for this item was not written by the vendor for it: no token.
    const accessToken = await this.#open(Item.accessToken, { item: tokenItemKey(key), field: 'accessToken' }).catch(
      (error: unknown) => {
        if (error instanceof SealError) return undefined;
        throw error;
      },
    );
    return { token: toCachedToken(Item, accessToken), profile };
  }

  async putToken(key: string, token: CachedToken, fence: number, profile: VendProfile): Promise<boolean> {
    const sealed = await this.#sealer.seal(token.accessToken, { item: tokenItemKey(key), field: 'accessToken' });
    return this.#conditional(() =>
      this.#client.send(
        new PutCommand({
          TableName: this.#tableName,
          Item: {
            ...tokenKey(key),
            ...token,
            accessToken: sealed,
            profile,
            fence,
            [TTL_ATTRIBUTE]: ttlSeconds(token.expiresAt),
          },
          ConditionExpression: 'attribute_not_exists(fence) OR fence <= :fence',
          ExpressionAttributeValues: { ':fence': fence },
        }),
      ),
    );
  }

  async setProfile(key: string, profile: VendProfile): Promise<void> {
    await this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: tokenKey(key),
          UpdateExpression: 'SET profile = :profile',
          // Only beside a token: a profile alone would be an item nothing expires.
          ConditionExpression: 'attribute_exists(expiresAt)',
          ExpressionAttributeValues: { ':profile': profile },
        }),
      ),
    );
  }

  async deleteToken(key: string): Promise<void> {
    await this.#send(() => this.#client.send(new DeleteCommand({ TableName: this.#tableName, Key: tokenKey(key) })));
    await this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKeyOf(key)),
          UpdateExpression: 'REMOVE headKey, headToken',
          ConditionExpression: 'headKey = :key',
          ExpressionAttributeValues: { ':key': key },
        }),
      ),
    );
  }

  /** The connector's state; with `secrets: false` its refresh token and access token stay sealed (not read). */
  async getState(connectorKey: string, options: { readonly secrets?: boolean } = {}): Promise<ConnectorState> {
    const { Item } = await this.#send(() =>
      this.#client.send(
        new GetCommand({ TableName: this.#tableName, Key: stateKey(connectorKey), ConsistentRead: true }),
      ),
    );
    if (Item === undefined) return {};
    const authMethod = str(Item.authMethod);
    const secrets = options.secrets !== false;
    const item = stateItemKey(connectorKey);
    const chainToken = secrets ? await this.#open(Item.chainToken, { item, field: 'chainToken' }) : undefined;
    const headKey = secrets ? str(Item.headKey) : undefined;
    const reauthRevision = str(Item.reauthRevision);
    const failureAt = num(Item.failureAt);
    const headToken =
      headKey === undefined
        ? undefined
        : toCachedToken(
            Item.headToken,
            await this.#open((Item.headToken as Record<string, unknown> | undefined)?.accessToken, {
              item,
              field: 'headToken',
            }),
          );
    return {
      authMethod: authMethod === 'basic' || authMethod === 'body' || authMethod === 'none' ? authMethod : undefined,
      authRevision: str(Item.authRevision),
      chain:
        chainToken === undefined
          ? undefined
          : {
              refreshToken: chainToken,
              held: Array.isArray(Item.chainHeld) ? Item.chainHeld.filter((entry) => typeof entry === 'string') : [],
              checkpointAt: num(Item.chainCheckpointAt),
              checkpointed: str(Item.chainCheckpointed),
            },
      head: headKey === undefined || headToken === undefined ? undefined : { tokenKey: headKey, token: headToken },
      lease: leaseOf(Item),
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
              unconfirmed: Item.failureUnconfirmed === true ? true : undefined,
            },
      tokenKeys: Item.tokenKeys instanceof Set ? [...Item.tokenKeys].filter((entry) => typeof entry === 'string') : [],
    };
  }

  async acquireLease(connectorKey: string, owner: string, now: number, durationMs: number): Promise<LeaseAttempt> {
    const until = now + durationMs;
    try {
      const { Attributes } = await this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          // An expired lease is free whether or not anything deleted it: the check is on leaseUntil, not on TTL.
          UpdateExpression: 'SET leaseOwner = :owner, leaseUntil = :until, #ttl = :ttl ADD fence :one',
          // `ttl` is one of DynamoDB's reserved words.
          ExpressionAttributeNames: { '#ttl': TTL_ATTRIBUTE },
          ConditionExpression: 'attribute_not_exists(leaseUntil) OR leaseUntil <= :now',
          ExpressionAttributeValues: {
            ':owner': owner,
            ':until': until,
            ':now': now,
            ':one': 1,
            ':ttl': ttlSeconds(now + STATE_LIFETIME_MS),
          },
          ReturnValues: 'UPDATED_NEW',
          // DynamoDB hands back the holder with the refusal, so a loser learns when to look again without a read.
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { lease: { owner, fence: num(Attributes?.fence) ?? 1, until } };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw storeUnavailable(error);
      const item = error.Item;
      if (item !== undefined) {
        return { heldBy: leaseOf({ leaseOwner: item.leaseOwner?.S, leaseUntil: Number(item.leaseUntil?.N) }) };
      }
      // dynalite (local mode) does not return the item with the refusal.
      return { heldBy: (await this.getState(connectorKey)).lease };
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

  async completeExchange(connectorKey: string, lease: Lease, outcome: ExchangeOutcome): Promise<boolean> {
    const sets = ['authMethod = :method', 'authRevision = :revision', 'leaseUntil = :zero'];
    const values: Record<string, unknown> = {
      ':tokenKeys': new Set([outcome.tokenKey]),
      ':method': outcome.authMethod,
      ':revision': outcome.authRevision,
      ':zero': 0,
      ':owner': lease.owner,
      ':fence': lease.fence,
    };
    const { chain, head, dueAt } = outcome;
    if (dueAt !== undefined) {
      sets.push(`${DUE_INDEX.partitionKey} = :dueShard`, `${DUE_INDEX.sortKey} = :dueAt`);
      values[':dueShard'] = DUE_SHARD;
      values[':dueAt'] = dueAt;
    }
    if (chain !== undefined) {
      sets.push('chainToken = :chainToken', 'chainHeld = :chainHeld');
      values[':chainToken'] = await this.#sealer.seal(chain.refreshToken, {
        item: stateItemKey(connectorKey),
        field: 'chainToken',
      });
      values[':chainHeld'] = [...chain.held];
      if (chain.checkpointed !== undefined) {
        sets.push('chainCheckpointed = :checkpointed');
        values[':checkpointed'] = chain.checkpointed;
      }
    }
    if (head !== undefined) {
      sets.push('headKey = :headKey', 'headToken = :headToken');
      values[':headKey'] = head.tokenKey;
      values[':headToken'] = {
        ...head.token,
        accessToken: await this.#sealer.seal(head.token.accessToken, {
          item: stateItemKey(connectorKey),
          field: 'headToken',
        }),
      };
    }
    return this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression: `SET ${sets.join(', ')} ADD tokenKeys :tokenKeys REMOVE ${FAILURE_ATTRIBUTES.join(', ')}`,
          // The fence proves no other holder has taken the lease since: only then may this exchange's result count.
          ConditionExpression: 'leaseOwner = :owner AND fence = :fence',
          ExpressionAttributeValues: values,
        }),
      ),
    );
  }

  async claimCheckpoint(connectorKey: string, now: number, intervalMs: number): Promise<boolean> {
    return this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression: 'SET chainCheckpointAt = :now',
          ConditionExpression: 'attribute_not_exists(chainCheckpointAt) OR chainCheckpointAt <= :earliest',
          ExpressionAttributeValues: { ':now': now, ':earliest': now - intervalMs },
        }),
      ),
    );
  }

  async recordCheckpoint(connectorKey: string, at: number, checkpointed: string): Promise<void> {
    await this.#update(connectorKey, 'SET chainCheckpointAt = :at, chainCheckpointed = :checkpointed', {
      ':at': at,
      ':checkpointed': checkpointed,
    });
  }

  async recordFailure(connectorKey: string, lease: Lease, failure: TokenFailure): Promise<boolean> {
    const { upstreamError, openUntil, nextAttemptAt, unconfirmed } = failure;
    const sets = ['failureAt = :at', 'failureCode = :code', 'failureRevision = :revision', 'failureCount = :count'];
    const removes: string[] = [];
    if (upstreamError === undefined) removes.push('failureUpstreamError');
    else sets.push('failureUpstreamError = :upstream');
    if (openUntil === undefined) removes.push('failureOpenUntil');
    else sets.push('failureOpenUntil = :openUntil');
    if (nextAttemptAt === undefined) removes.push('failureNextAttemptAt');
    else sets.push('failureNextAttemptAt = :nextAttemptAt');
    if (unconfirmed === true) sets.push('failureUnconfirmed = :unconfirmed');
    else removes.push('failureUnconfirmed');
    return this.#conditional(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          UpdateExpression: `SET ${sets.join(', ')}${removes.length > 0 ? ` REMOVE ${removes.join(', ')}` : ''}`,
          ConditionExpression: 'leaseOwner = :owner AND fence = :fence',
          ExpressionAttributeValues: {
            ':at': failure.at,
            ':code': failure.code,
            ':revision': failure.revision,
            ':count': failure.consecutive,
            ':owner': lease.owner,
            ':fence': lease.fence,
            ...(upstreamError === undefined ? {} : { ':upstream': upstreamError }),
            ...(openUntil === undefined ? {} : { ':openUntil': openUntil }),
            ...(nextAttemptAt === undefined ? {} : { ':nextAttemptAt': nextAttemptAt }),
            ...(unconfirmed === true ? { ':unconfirmed': true } : {}),
          },
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

  async listDue(now: number, limit: number): Promise<string[]> {
    const keys: string[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const page = await this.#send(() =>
        this.#client.send(
          new QueryCommand({
            TableName: this.#tableName,
            IndexName: DUE_INDEX.name,
            KeyConditionExpression: '#shard = :shard AND #due <= :now',
            ExpressionAttributeNames: { '#shard': DUE_INDEX.partitionKey, '#due': DUE_INDEX.sortKey },
            ExpressionAttributeValues: { ':shard': DUE_SHARD, ':now': now },
            // Oldest due first: what a run leaves for lack of time is the first thing the next one takes.
            ScanIndexForward: true,
            Limit: limit - keys.length,
            ...(start === undefined ? {} : { ExclusiveStartKey: start }),
          }),
        ),
      );
      for (const item of page.Items ?? []) {
        const key = connectorKeyOfStateItem(str(item[TABLE_KEY]) ?? '');
        if (key !== undefined) keys.push(key);
      }
      start = page.LastEvaluatedKey;
    } while (start !== undefined && keys.length < limit);
    return keys;
  }

  async setDue(connectorKey: string, dueAt: number | undefined): Promise<void> {
    const names = { '#shard': DUE_INDEX.partitionKey, '#due': DUE_INDEX.sortKey, '#ttl': TTL_ATTRIBUTE };
    if (dueAt === undefined) {
      // Only on an item that exists: a REMOVE would otherwise create an empty one.
      await this.#conditional(() =>
        this.#client.send(
          new UpdateCommand({
            TableName: this.#tableName,
            Key: stateKey(connectorKey),
            UpdateExpression: 'REMOVE #shard, #due',
            ConditionExpression: `attribute_exists(${TABLE_KEY})`,
            ExpressionAttributeNames: { '#shard': names['#shard'], '#due': names['#due'] },
          }),
        ),
      );
      return;
    }
    await this.#send(() =>
      this.#client.send(
        new UpdateCommand({
          TableName: this.#tableName,
          Key: stateKey(connectorKey),
          // The item lives on past its due time (a connector new to the table gets its state item here).
          UpdateExpression: 'SET #shard = :shard, #due = :due, #ttl = :ttl',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: {
            ':shard': DUE_SHARD,
            ':due': dueAt,
            ':ttl': ttlSeconds(dueAt + STATE_LIFETIME_MS),
          },
        }),
      ),
    );
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

  /** Opens a sealed attribute; a value that does not open is a stored value the vendor cannot trust. */
  async #open(value: unknown, context: SealContext): Promise<string | undefined> {
    if (typeof value !== 'string') return undefined;
    try {
      return await this.#sealer.open(value, context);
    } catch (error) {
      if (error instanceof SealError) throw error;
      if (error instanceof VendorError) throw error;
      throw new VendorError('internal_error', 'A stored value could not be opened.', { cause: error });
    }
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
