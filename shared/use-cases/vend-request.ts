import { invalidRequest } from '../core/errors.ts';
import { CONNECTOR_ID, type ConnectorRef, isFamily, normalizeScope, refKey, tokenKeyOf } from '../core/identifiers.ts';
import type { CachedToken } from '../core/token-policy.ts';
import type { VendResponse } from '../core/vend-response.ts';
import type { Connector } from '../domain/connector.ts';
import type { NetworkPolicy } from '../domain/network-policy.ts';
import type { Caller } from '../domain/principals.ts';
import { scopeKeyFor } from '../domain/vend-profile.ts';
import type { Clock } from '../ports/clock.ts';
import { type ConnectorDocuments, checkTokenUrl } from './connector-documents.ts';
import type { FetchTarget } from './refresh/token-fetcher.ts';

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

export interface ValidRequest {
  readonly ref: ConnectorRef;
  /** The requested scope as a set (unique, sorted), or undefined for the connector's own. */
  readonly scopes: string[] | undefined;
  readonly minTtlSeconds: number | undefined;
}

const MIN_TTL = /^\d{1,9}$/;

/** Checks what a caller sent (CONTRACT §3: `400 invalid_request`) before anything is read. */
export function validateRequest(request: VendRequest): ValidRequest {
  if (!isFamily(request.family)) throw invalidRequest('Unknown grant family in the path.');
  if (!CONNECTOR_ID.test(request.connectorId)) throw invalidRequest('Malformed connector ID.');
  const scopes = request.scope === undefined ? undefined : normalizeScope(request.scope);
  if (request.scope !== undefined && scopes === undefined) {
    throw invalidRequest('Malformed scope: expected space-separated scope tokens.');
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

/**
 * Which cached token a request is for, and the scope to send. Asking for exactly the connector's scope is the same
 * as asking for none.
 */
export function resolveScope(
  connector: Connector,
  scopes: string[] | undefined,
): { tokenKey: string; scope: string | undefined } {
  const scopeKey = scopeKeyFor(connector.document, scopes);
  return {
    tokenKey: tokenKeyOf(refKey(connector.ref), scopeKey),
    scope: scopeKey === '' ? connector.document.scope : scopeKey,
  };
}

/** How the answer carries the token (CONTRACT §3): the connector's header name and value pattern. */
export interface HeaderSettings {
  readonly headerAuthKey?: string | undefined;
  readonly headerAuthValuePattern?: string | undefined;
}

export function toVendResponse(settings: HeaderSettings, token: CachedToken, now: number): VendResponse {
  const pattern = settings.headerAuthValuePattern ?? '{{token_type}} {{access_token}}';
  return {
    access_token: token.accessToken,
    token_type: token.tokenType,
    expires_in: Math.max(0, Math.floor((token.expiresAt - now) / 1000)),
    expires_at: new Date(token.expiresAt).toISOString(),
    ...(token.scope === undefined ? {} : { scope: token.scope }),
    header: {
      name: settings.headerAuthKey ?? 'Authorization',
      // One pass, so a token that itself contains "{{token_type}}" is sent exactly as issued.
      value: pattern.replace(/\{\{(access_token|token_type)\}\}/g, (_match, name: string) =>
        name === 'access_token' ? token.accessToken : token.tokenType,
      ),
    },
  };
}

/** Every answer within this (CONTRACT §3: API Gateway gives up at 29 s). */
export const ANSWER_WITHIN_MS = 25_000;
/** When a store hangs, a still-valid token this process holds is served after this long (CONTRACT §3: 3 s). */
export const STILL_VALID_WITHIN_MS = 2_500;
/** Kept back from the deadline to shape and send the answer. */
const ANSWER_RESERVE_MS = 500;

/** A validated, authorized request: the token it is for and the time it has. */
export interface TokenRequestContext {
  readonly connector: Connector;
  readonly target: FetchTarget;
  readonly minTtlSeconds: number | undefined;
  readonly started: number;
  /** Epoch milliseconds by which the work must be done for the answer to leave in time. */
  readonly deadline: number;
}

export interface RequestContextDeps {
  readonly documents: ConnectorDocuments;
  readonly clock: Clock;
  readonly settings: { readonly network: NetworkPolicy };
}

/** Validates a request, authorizes its caller, and names the token it is for: the start of every token request. */
export async function prepareRequest(deps: RequestContextDeps, request: VendRequest): Promise<TokenRequestContext> {
  const started = deps.clock.now();
  const deadline =
    Math.min(request.deadline ?? Number.POSITIVE_INFINITY, started + ANSWER_WITHIN_MS) - ANSWER_RESERVE_MS;
  const { ref, scopes, minTtlSeconds } = validateRequest(request);
  const connector = await deps.documents.authorize(ref, request.caller, STILL_VALID_WITHIN_MS);
  checkTokenUrl(connector, deps.settings.network);
  const { tokenKey, scope } = resolveScope(connector, scopes);
  return { connector, target: { connector, tokenKey, scope }, minTtlSeconds, started, deadline };
}
