import { accessDenied, invalidRequest } from '../core/errors.ts';
import { FAMILIES, type Family, splitScope } from '../core/identifiers.ts';
import type { Connector } from './connector.ts';
import { type Caller, isAllowed } from './principals.ts';

/**
 * What a vend needs of a connector besides the token: kept beside each cached token in the table, so that a vend
 * served from the cache reads no secret. Nothing in it is secret. It is rewritten whenever the vendor reads the
 * document (a fetch, a sync after the document changed).
 */
export interface VendProfile {
  /** The document's fingerprint ({@link Connector.revision}) this profile was taken from. */
  readonly revision: string;
  /** The request settings' fingerprint: a token fetched with others does not serve. */
  readonly tokenRevision: string;
  readonly grantType: string;
  readonly allowedPrincipals: readonly string[];
  readonly scope?: string | undefined;
  readonly headerAuthKey?: string | undefined;
  readonly headerAuthValuePattern?: string | undefined;
}

export function profileOf(connector: Connector): VendProfile {
  const { document } = connector;
  return {
    revision: connector.revision,
    tokenRevision: connector.tokenRevision,
    grantType: document.grantType,
    allowedPrincipals: document.allowedPrincipals,
    scope: document.scope,
    headerAuthKey: document.headerAuthKey,
    headerAuthValuePattern: document.headerAuthValuePattern,
  };
}

/** A profile as stored, or undefined when it is not one (an item written before profiles, or damaged). */
export function toVendProfile(value: unknown): VendProfile | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const item = value as Record<string, unknown>;
  const optional = (field: unknown): field is string | undefined => field === undefined || typeof field === 'string';
  const { revision, tokenRevision, grantType, allowedPrincipals, scope, headerAuthKey, headerAuthValuePattern } = item;
  if (typeof revision !== 'string' || typeof tokenRevision !== 'string' || typeof grantType !== 'string') return;
  if (!Array.isArray(allowedPrincipals) || !allowedPrincipals.every((entry) => typeof entry === 'string')) return;
  if (!optional(scope) || !optional(headerAuthKey) || !optional(headerAuthValuePattern)) return undefined;
  return { revision, tokenRevision, grantType, allowedPrincipals, scope, headerAuthKey, headerAuthValuePattern };
}

/** Refuses a caller the profile does not admit, or a path whose family is not the connector's (CONTRACT §3). */
export function authorizeByProfile(profile: VendProfile, family: Family, caller: Caller): void {
  if (profile.grantType !== FAMILIES[family] || !isAllowed(profile.allowedPrincipals, caller)) throw accessDenied();
}

/**
 * The scope key a request's scopes name under this profile: `''` for the connector's own scope (asking for exactly
 * it is asking for none), else the requested set; `invalid_request` when it is not a subset (CONTRACT §3).
 */
export function scopeKeyFor(profile: Pick<VendProfile, 'scope'>, scopes: readonly string[] | undefined): string {
  if (scopes === undefined) return '';
  const allowed = new Set(splitScope(profile.scope ?? ''));
  if (!scopes.every((scope) => allowed.has(scope))) {
    throw invalidRequest("The requested scope is not a subset of the connector's scope.");
  }
  return scopes.length === allowed.size ? '' : scopes.join(' ');
}
