import { timingSafeEqual } from 'node:crypto';
import type { ConnectorDocument } from '../connector.ts';

/**
 * Parameters `token-vendor connect` sets itself in an authorization request: `--param` may not replace them, or the
 * redirect could not be checked (state, PKCE) or would go elsewhere (RFC 6749 §4.1.1, RFC 7636 §4.3).
 */
export const FLOW_PARAMETERS: ReadonlySet<string> = new Set([
  'response_type',
  'client_id',
  'redirect_uri',
  'state',
  'code_challenge',
  'code_challenge_method',
]);

export interface AuthorizationRequest {
  readonly redirectUri: string;
  readonly state: string;
  /** BASE64URL(SHA256(code_verifier)), RFC 7636 §4.2. */
  readonly codeChallenge: string;
  /** Extra parameters (`--param`): each added, or replacing one of the same name. */
  readonly parameters?: Readonly<Record<string, string>>;
}

/**
 * The authorization URL (RFC 6749 §4.1.1 with PKCE S256, RFC 7636 §4.3): the connector's `authorizationUrl` with
 * its own query kept, `authorizationScope` as `scope`, then the extra parameters. `URLSearchParams.set` replaces
 * every earlier occurrence, so no parameter is ever sent twice (RFC 6749 §3.1).
 */
export function buildAuthorizationUrl(document: ConnectorDocument, request: AuthorizationRequest): string {
  if (document.authorizationUrl === undefined) throw new Error('the connector has no authorizationUrl');
  const url = new URL(document.authorizationUrl);
  const query = url.searchParams;
  query.set('response_type', 'code');
  query.set('client_id', document.clientId);
  query.set('redirect_uri', request.redirectUri);
  if (document.authorizationScope !== undefined) query.set('scope', document.authorizationScope);
  for (const [name, value] of Object.entries(request.parameters ?? {})) {
    if (FLOW_PARAMETERS.has(name)) throw new Error(`${name} is set by the flow itself`);
    query.set(name, value);
  }
  query.set('state', request.state);
  query.set('code_challenge', request.codeChallenge);
  query.set('code_challenge_method', 'S256');
  return url.toString();
}

/** What came back to the redirect URI (RFC 6749 §4.1.2, §4.1.2.1). */
export type AuthorizationResponse =
  | { readonly ok: true; readonly code: string }
  | { readonly ok: false; readonly problem: 'state'; readonly description: string }
  | { readonly ok: false; readonly problem: 'error'; readonly error: string; readonly description: string | undefined }
  | { readonly ok: false; readonly problem: 'no_code'; readonly description: string };

// RFC 6749 §4.1.2.1: error is %x20-21 / %x23-5B / %x5D-7E; shown as a code, so without spaces.
const ERROR_CODE = /^[\x21\x23-\x5B\x5D-\x7E]{1,64}$/;

/** Printable ASCII only, bounded: it reaches a terminal, and it came through a browser anyone can point anywhere. */
const printable = (text: string, max = 200): string =>
  text
    .replace(/[^\x20-\x7E]/g, '?')
    .slice(0, max)
    .trim();

const sameState = (received: string, expected: string): boolean => {
  const a = Buffer.from(received);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
};

/**
 * Reads the redirect's query. The state is checked first, also for an error answer: a redirect that does not carry
 * the state this flow sent is not an answer to it (RFC 6749 §10.12), whatever it says.
 */
export function readAuthorizationResponse(query: URLSearchParams, expectedState: string): AuthorizationResponse {
  const state = query.get('state');
  if (state === null) {
    return { ok: false, problem: 'state', description: 'the redirect carries no state' };
  }
  if (query.getAll('state').length > 1 || !sameState(state, expectedState)) {
    return { ok: false, problem: 'state', description: 'the redirect carries a state this flow did not send' };
  }
  const error = query.get('error');
  if (error !== null) {
    const description = query.get('error_description');
    return {
      ok: false,
      problem: 'error',
      error: ERROR_CODE.test(error) ? error : 'invalid_error_code',
      description: description === null ? undefined : printable(description),
    };
  }
  const codes = query.getAll('code');
  const code = codes[0];
  if (codes.length !== 1 || code === undefined || code === '') {
    return { ok: false, problem: 'no_code', description: 'the redirect carries no single authorization code' };
  }
  return { ok: true, code };
}
