/**
 * How connectors, scopes and cached tokens are named (CONTRACT §1–§3). Pure: the client library, the CLI, the CDK
 * construct and the functions all read these, so a name means the same everywhere.
 */

/** Path segment → `grantType` (CONTRACT §1). */
export const FAMILIES = {
  'client-credentials': 'client_credentials',
  password: 'password',
  'refresh-token': 'refresh_token',
  'jwt-bearer': 'jwt_bearer',
} as const;

export type Family = keyof typeof FAMILIES;
export type GrantType = (typeof FAMILIES)[Family];

/** @see https://www.rfc-editor.org/rfc/rfc7523#section-2.1 */
export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** The `grant_type` a grant sends (CONTRACT §1); `customGrantType` replaces it. */
export const grantTypeParameter = (grantType: GrantType): string =>
  grantType === 'jwt_bearer' ? JWT_BEARER_GRANT_TYPE : grantType;

export const CONNECTOR_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isFamily(value: string): value is Family {
  return Object.hasOwn(FAMILIES, value);
}

/** A connector is addressed by its family and ID; `key` is the one string form used in every store. */
export interface ConnectorRef {
  readonly family: Family;
  readonly connectorId: string;
}

export const refKey = (ref: ConnectorRef): string => `${ref.family}/${ref.connectorId}`;

/** The connector a `<family>/<connectorId>` key names, or undefined when it names none (the inverse of refKey). */
export function refOfKey(key: string): ConnectorRef | undefined {
  const [family, connectorId, ...rest] = key.split('/');
  if (rest.length > 0 || family === undefined || !isFamily(family) || connectorId === undefined) return undefined;
  return CONNECTOR_ID.test(connectorId) ? { family, connectorId } : undefined;
}

/**
 * The key of one cached token: the connector's key and the scope set it was asked for ('' for the connector's own
 * scope). A connector key never holds `#` (CONNECTOR_ID), so the connector is recovered from the token key.
 */
export const tokenKeyOf = (connectorKey: string, scopeKey = ''): string => `${connectorKey}#${scopeKey}`;
export const connectorKeyOf = (tokenKey: string): string => tokenKey.slice(0, tokenKey.indexOf('#'));
/** The scope set a token key names: '' for the connector's own scope. */
export const scopeKeyOf = (tokenKey: string): string => tokenKey.slice(tokenKey.indexOf('#') + 1);

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
/** Longest `scope` a caller may ask for (the service bounds its query string). */
export const MAX_SCOPE_LENGTH = 4096;

export const isScopeToken = (token: string): boolean => SCOPE_TOKEN.test(token);

/** Splits a space-separated scope string into its tokens. */
export function splitScope(scope: string): string[] {
  return scope.split(' ').filter((token) => token !== '');
}

/**
 * A requested scope as a set: its tokens, unique and sorted, so `b a a` and `a b` name one cached token. Undefined
 * when it is not a space-separated list of RFC 6749 scope tokens.
 */
export function normalizeScope(scope: string): string[] | undefined {
  const tokens = splitScope(scope);
  if (scope.length > MAX_SCOPE_LENGTH || tokens.length === 0 || !tokens.every(isScopeToken)) return undefined;
  return [...new Set(tokens)].sort();
}
