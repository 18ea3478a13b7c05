import type { MetricsSink } from '../adapters/powertools-metrics.ts';
import { accessDenied, invalidRequest, misconfigured, VendorError } from '../core/errors.ts';
import {
  CONNECTOR_ID,
  type ConnectorRef,
  FAMILIES,
  isFamily,
  isScopeToken,
  refKey,
  splitScope,
  tokenKeyOf,
} from '../core/identifiers.ts';
import type { CachedToken } from '../core/token-policy.ts';
import { type Connector, parseConnector, peekAllowedPrincipals } from '../domain/connector.ts';
import { within } from '../domain/deadline.ts';
import { type NetworkPolicy, refuseUrl } from '../domain/network-policy.ts';
import { type Caller, isAllowed } from '../domain/principals.ts';
import type { ConnectorSource } from '../ports/connector-store.ts';
import { errorFields, type Log } from '../ports/log.ts';
import type { TokenStore } from '../ports/token-table.ts';
import type { TokenFetcher } from './token-fetcher.ts';

/** What a caller asked for, as it arrived (validated here). */
export interface VendRequest {
  readonly family: string;
  readonly connectorId: string;
  readonly scope?: string | undefined;
  readonly minTtl?: string | undefined;
  readonly caller: Caller;
  /** `POST …/refresh`: discard the cached token and fetch a new one. */
  readonly force?: boolean;
  /** Epoch milliseconds by which the answer must be sent (the invocation's end, API Gateway's 29 s). */
  readonly deadline?: number;
}

/** The `200` body (CONTRACT §3). */
export interface VendResponse {
  readonly access_token: string;
  readonly token_type: string;
  readonly expires_in: number;
  readonly expires_at: string;
  readonly scope?: string;
  readonly header: { readonly name: string; readonly value: string };
}

export interface VendSettings {
  /** Where token URLs may point (CONTRACT §4: `http://` only to loopback, in local mode). */
  readonly network: NetworkPolicy;
  /** Minimum spacing of forced refreshes per connector; 0 turns the limit off. */
  readonly forcedRefreshSpacingMs: number;
  /** How long a token held in memory is served without looking at the table again. */
  readonly memoryStalenessMs: number;
  readonly defaultMinTtlSeconds: number;
  /** `background` in a long-lived process; `inline` in Lambda (see refreshAheadIfDue). */
  readonly refreshAhead: 'background' | 'inline';
  /**
   * This process's place, in [0, 1), in the window after a token's refresh point: containers holding the same hot
   * token act on it at different moments, so the first one's refresh is seen by the rest before they try.
   */
  readonly refreshSpread: number;
}

export interface VendDeps {
  readonly source: ConnectorSource;
  readonly store: TokenStore;
  readonly fetcher: TokenFetcher;
  readonly now: () => number;
  readonly log: Log;
  readonly settings: VendSettings;
  readonly memory: TokenMemory;
  readonly metrics: MetricsSink;
}

const MIN_TTL = /^\d{1,9}$/;
/** Every answer within this (CONTRACT §3: API Gateway gives up at 29 s). */
export const ANSWER_WITHIN_MS = 25_000;
/** When a store hangs, a still-valid token this process holds is served after this long (CONTRACT §3: 3 s). */
const STILL_VALID_WITHIN_MS = 2_500;
/** Kept back from the deadline to shape and send the answer. */
const ANSWER_RESERVE_MS = 500;
const MAX_SCOPE_LENGTH = 4096;

/**
 * Tokens this process has seen, served without a table read for at most `memoryStalenessMs` after they were
 * last read from or written to the table: the bound on how long a token discarded elsewhere (a forced refresh
 * in another container) can still be handed out here. Tokens never change in place, so that is the only staleness.
 */
export class TokenMemory {
  readonly #entries = new Map<string, { token: CachedToken; seenAt: number }>();
  readonly #maxEntries: number;

  constructor(maxEntries = 1000) {
    this.#maxEntries = maxEntries;
  }

  get(key: string, now: number, stalenessMs: number): CachedToken | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || now - entry.seenAt > stalenessMs || entry.token.expiresAt <= now) return undefined;
    return entry.token;
  }

  set(key: string, token: CachedToken, now: number): void {
    this.#entries.delete(key);
    this.#entries.set(key, { token, seenAt: now });
    // Map iteration is insertion order, so the first key is the least recently stored.
    if (this.#entries.size > this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value as string);
  }

  /** The token held for `key` whatever its staleness, unless expired: the last resort when the table is down. */
  peek(key: string, now: number): CachedToken | undefined {
    const entry = this.#entries.get(key);
    return entry === undefined || entry.token.expiresAt <= now ? undefined : entry.token;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }
}

interface ValidRequest {
  readonly ref: ConnectorRef;
  readonly scopes: string[] | undefined;
  readonly minTtlSeconds: number | undefined;
}

function validateRequest(request: VendRequest): ValidRequest {
  if (!isFamily(request.family)) throw invalidRequest('Unknown grant family in the path.');
  if (!CONNECTOR_ID.test(request.connectorId)) throw invalidRequest('Malformed connector ID.');
  let scopes: string[] | undefined;
  if (request.scope !== undefined) {
    scopes = splitScope(request.scope);
    if (request.scope.length > MAX_SCOPE_LENGTH || scopes.length === 0 || !scopes.every(isScopeToken)) {
      throw invalidRequest('Malformed scope: expected space-separated scope tokens.');
    }
    scopes = [...new Set(scopes)].sort();
  }
  if (request.minTtl !== undefined && !MIN_TTL.test(request.minTtl)) {
    throw invalidRequest('Malformed minTtl: expected a whole number of seconds.');
  }
  return {
    ref: { family: request.family, connectorId: request.connectorId },
    scopes,
    minTtlSeconds: request.minTtl === undefined ? undefined : Number(request.minTtl),
  };
}

/** Refuses a token URL the deployment may not call before anything is sent; resolved names are checked at connect. */
function checkTokenUrl(connector: Connector, network: NetworkPolicy): void {
  const refusal = refuseUrl(new URL(connector.document.tokenUrl), network);
  if (refusal !== undefined) throw misconfigured('tokenUrl', refusal);
}

/**
 * Which scope set a request is for: its cache key suffix and the scope to send. Asking for exactly the
 * connector's scope is the same as asking for none.
 */
function resolveScope(connector: Connector, scopes: string[] | undefined): { key: string; scope: string | undefined } {
  const configured = connector.document.scope;
  if (scopes === undefined) return { key: '', scope: configured };
  const allowed = new Set(splitScope(configured ?? ''));
  if (!scopes.every((scope) => allowed.has(scope))) {
    throw invalidRequest("The requested scope is not a subset of the connector's scope.");
  }
  return scopes.length === allowed.size
    ? { key: '', scope: configured }
    : { key: scopes.join(' '), scope: scopes.join(' ') };
}

interface ParsedDocument {
  readonly text: string;
  readonly principals: string[] | undefined;
  readonly connector: Connector | VendorError;
}

/**
 * The last parse of each connector's document, reused while its text is unchanged: the same text always parses
 * the same way, and parsing on every vend was a tenth of the hit path's time.
 */
const parsedDocuments = new Map<string, ParsedDocument>();
const MAX_PARSED_DOCUMENTS = 1000;

function parseDocument(ref: ConnectorRef, text: string): ParsedDocument {
  const key = refKey(ref);
  const known = parsedDocuments.get(key);
  if (known?.text === text) return known;
  let connector: Connector | VendorError;
  try {
    connector = parseConnector(ref, text);
  } catch (error) {
    if (!(error instanceof VendorError)) throw error;
    connector = error;
  }
  const parsed = { text, principals: peekAllowedPrincipals(text), connector };
  parsedDocuments.delete(key);
  parsedDocuments.set(key, parsed);
  if (parsedDocuments.size > MAX_PARSED_DOCUMENTS)
    parsedDocuments.delete(parsedDocuments.keys().next().value as string);
  return parsed;
}

/**
 * The connector's document, read within `budgetMs` when this process has read it before: if the connector store is
 * slow or down, the last copy read answers (the store's outage must not stop tokens this process can serve).
 */
async function readDocument(deps: Pick<VendDeps, 'source' | 'log'>, ref: ConnectorRef, budgetMs: number) {
  const known = parsedDocuments.get(refKey(ref));
  if (known === undefined) return deps.source.read(ref);
  try {
    return await within(deps.source.read(ref), budgetMs, 'The connector store');
  } catch (error) {
    if (!(error instanceof VendorError) || error.code !== 'upstream_unavailable') throw error;
    deps.log.warn('the connector store is unavailable; using the document read last', {
      connector: refKey(ref),
      ...errorFields(error),
    });
    return known.text;
  }
}

export async function loadAuthorizedConnector(
  deps: Pick<VendDeps, 'source' | 'log'>,
  ref: ConnectorRef,
  caller: Caller,
  budgetMs = STILL_VALID_WITHIN_MS,
) {
  const text = await readDocument(deps, ref, budgetMs);
  if (text === undefined) throw accessDenied();
  const { principals, connector: parsed } = parseDocument(ref, text);
  // Decide access before validating the rest, so that a stranger cannot tell a broken connector from none.
  if (principals !== undefined && !isAllowed(principals, caller)) throw accessDenied();
  if (parsed instanceof VendorError) throw parsed;
  const connector = parsed;
  if (
    connector.document.grantType !== FAMILIES[ref.family] ||
    !isAllowed(connector.document.allowedPrincipals, caller)
  ) {
    throw accessDenied();
  }
  return connector;
}

/** A token serves a caller while it has minTtl left; minTtl counts as at most half the token's lifetime. */
export function servesFor(token: CachedToken, minTtlSeconds: number, now: number): boolean {
  const needed = Math.min(minTtlSeconds * 1000, (token.expiresAt - token.issuedAt) / 2);
  return token.expiresAt - now >= needed;
}

export function toVendResponse(connector: Connector, token: CachedToken, now: number): VendResponse {
  const pattern = connector.document.headerAuthValuePattern ?? '{{token_type}} {{access_token}}';
  return {
    access_token: token.accessToken,
    token_type: token.tokenType,
    expires_in: Math.max(0, Math.floor((token.expiresAt - now) / 1000)),
    expires_at: new Date(token.expiresAt).toISOString(),
    ...(token.scope === undefined ? {} : { scope: token.scope }),
    header: {
      name: connector.document.headerAuthKey ?? 'Authorization',
      // One pass, so a token that itself contains "{{token_type}}" is sent exactly as issued.
      value: pattern.replace(/\{\{(access_token|token_type)\}\}/g, (_match, name: string) =>
        name === 'access_token' ? token.accessToken : token.tokenType,
      ),
    },
  };
}

/**
 * The vending use case (CONTRACT §3): validate, authorize, then serve from memory, from the table, or from one
 * fetch shared by every process; refresh ahead of expiry in the background.
 */
export async function vendToken(deps: VendDeps, request: VendRequest): Promise<VendResponse> {
  const started = deps.now();
  const deadline =
    Math.min(request.deadline ?? Number.POSITIVE_INFINITY, started + ANSWER_WITHIN_MS) - ANSWER_RESERVE_MS;
  const { ref, scopes, minTtlSeconds } = validateRequest(request);
  const connector = await loadAuthorizedConnector(deps, ref, request.caller);
  checkTokenUrl(connector, deps.settings.network);
  const { key, scope } = resolveScope(connector, scopes);
  const tokenKey = tokenKeyOf(refKey(ref), key);
  const minTtl = minTtlSeconds ?? deps.settings.defaultMinTtlSeconds;
  const serves = (token: CachedToken) =>
    token.tokenRevision === connector.tokenRevision && servesFor(token, minTtl, deps.now());
  const target = { connector, tokenKey, scope };

  if (request.force === true) {
    const token = await forceRefresh(deps, target, serves, deadline);
    return toVendResponse(connector, token, deps.now());
  }

  const remembered = deps.memory.get(tokenKey, deps.now(), deps.settings.memoryStalenessMs);
  if (remembered !== undefined && serves(remembered)) {
    deps.metrics.count('MemoryHits');
    return toVendResponse(connector, await refreshAheadIfDue(deps, target, remembered), deps.now());
  }
  // A token this process still holds is served if the table does not answer soon (CONTRACT §3).
  const held = deps.memory.peek(tokenKey, deps.now());
  let stored: CachedToken | undefined;
  try {
    const read = deps.store.getToken(tokenKey, deps.now());
    stored = await (held === undefined
      ? read
      : within(read, started + STILL_VALID_WITHIN_MS - deps.now(), 'The token table'));
  } catch (error) {
    // The table is down: a token this container still holds, of any age, beats a 503.
    return serveStillValid(deps, connector, held, error);
  }
  if (stored !== undefined && serves(stored)) {
    deps.metrics.count('TableHits');
    deps.memory.set(tokenKey, stored, deps.now());
    return toVendResponse(connector, await refreshAheadIfDue(deps, target, stored), deps.now());
  }
  let fetched: CachedToken | undefined;
  const fetchStarted = deps.now();
  try {
    fetched = await deps.fetcher.fetch(target, { accept: serves, deadline });
    deps.metrics.count('TokenFetches');
    deps.metrics.milliseconds('TokenFetchLatency', deps.now() - fetchStarted);
  } catch (error) {
    deps.metrics.count('TokenFetchFailures');
    const fallback = stored?.tokenRevision === connector.tokenRevision ? stored : held;
    return serveStillValid(deps, connector, fallback, error);
  }
  if (fetched === undefined) throw new VendorError('internal_error', 'No token was obtained.');
  deps.memory.set(tokenKey, fetched, deps.now());
  return toVendResponse(connector, fetched, deps.now());
}

/**
 * While the token server or the table is unavailable, a token that has not expired is served even below the
 * caller's minTtl (CONTRACT §3: 503 only when "no still-valid token is cached"). Anything else fails as it failed.
 */
function serveStillValid(
  deps: VendDeps,
  connector: Connector,
  token: CachedToken | undefined,
  error: unknown,
): VendResponse {
  const unavailable = error instanceof VendorError && error.code === 'upstream_unavailable';
  if (!unavailable || token === undefined || token.expiresAt <= deps.now()) throw error;
  deps.metrics.count('StillValidServed');
  deps.log.warn('serving a still-valid cached token while the refresh fails', {
    connector: refKey(connector.ref),
    ...errorFields(error),
  });
  return toVendResponse(connector, token, deps.now());
}

async function forceRefresh(
  deps: VendDeps,
  target: { connector: Connector; tokenKey: string; scope: string | undefined },
  serves: (token: CachedToken) => boolean,
  deadline: number,
): Promise<CachedToken> {
  const connectorKey = refKey(target.connector.ref);
  const spacing = deps.settings.forcedRefreshSpacingMs;
  if (spacing > 0) {
    const waitMs = await deps.store.takeForcedRefreshSlot(connectorKey, deps.now(), spacing);
    if (waitMs !== undefined) {
      const seconds = Math.ceil(waitMs / 1000);
      throw new VendorError(
        'rate_limited',
        `Forced refresh of this connector was asked too often; retry in ${seconds} s.`,
        {
          retryAfterSeconds: seconds,
        },
      );
    }
  }
  // Discard first: if the new fetch fails, the old token is not served again.
  const discardedAt = deps.now();
  deps.memory.delete(target.tokenKey);
  await deps.store.deleteToken(target.tokenKey);
  const token = await deps.fetcher.fetch(target, { accept: serves, issuedAfter: discardedAt, deadline });
  if (token === undefined) throw new VendorError('internal_error', 'No token was obtained.');
  deps.memory.set(target.tokenKey, token, deps.now());
  return token;
}

/**
 * When this process acts on a token's refresh point: spread over the first half of the time from the refresh point
 * to the last moment the token serves a default caller, so one container refreshes and the others find its result.
 */
function dueAt(token: CachedToken, settings: VendSettings): number {
  const servableUntil =
    token.expiresAt - Math.min(settings.defaultMinTtlSeconds * 1000, (token.expiresAt - token.issuedAt) / 2);
  return token.refreshAt + Math.max(0, servableUntil - token.refreshAt) * 0.5 * settings.refreshSpread;
}

/**
 * Past its refresh point, a served token triggers one refresh ahead through the lease; the token itself is still
 * good to serve. In a long-lived process (local mode) the refresh runs detached and no caller waits. In Lambda a
 * detached promise freezes with the container between invocations, which could strand a rotated refresh token
 * mid-exchange, so there the one caller that wins the lease waits for it (everyone else is served at once).
 */
async function refreshAheadIfDue(
  deps: VendDeps,
  target: { connector: Connector; tokenKey: string; scope: string | undefined },
  token: CachedToken,
): Promise<CachedToken> {
  if (deps.now() < dueAt(token, deps.settings)) return token;
  const refresh = deps.fetcher
    .fetch(target, { accept: (candidate) => candidate.refreshAt > deps.now(), background: true })
    .then((fresh) => {
      if (fresh !== undefined) deps.memory.set(target.tokenKey, fresh, deps.now());
      return fresh ?? token;
    })
    .catch((error: unknown) => {
      deps.log.warn('refresh ahead failed; the cached token is still served', {
        connector: refKey(target.connector.ref),
        ...errorFields(error),
      });
      return token;
    });
  return deps.settings.refreshAhead === 'inline' ? refresh : token;
}
