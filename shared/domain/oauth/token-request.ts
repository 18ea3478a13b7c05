import { misconfigured } from '../../core/errors.ts';
import { grantTypeParameter } from '../../core/identifiers.ts';
import type { HttpRequest } from '../../ports/http.ts';
import { type ConnectorDocument, FIELD_VALUE } from '../connector.ts';
import { applyClientAuth, type ClientAuthMethod } from './client-auth.ts';

/** What a single token request needs beyond the connector document. */
export interface TokenRequestOptions {
  readonly authMethod: ClientAuthMethod;
  /** Space-separated scope to ask for; undefined sends none. */
  readonly scope: string | undefined;
  /** The refresh token to use (the newest stored one), for the `refresh_token` grant. */
  readonly refreshToken?: string | undefined;
  /** Set: the authorization-code grant instead of the connector's own (`token-vendor connect`). */
  readonly authorizationCode?: AuthorizationCodeGrant | undefined;
  /** The signed assertion of the `jwt_bearer` grant. */
  readonly assertion?: string | undefined;
  /** The signed client assertion, for `private_key_jwt`. */
  readonly clientAssertion?: string | undefined;
}

/** The code exchange of RFC 6749 §4.1.3 with the PKCE verifier of RFC 7636 §4.5. */
export interface AuthorizationCodeGrant {
  readonly code: string;
  readonly codeVerifier: string;
  readonly redirectUri: string;
}

const TEMPLATE = /\{\{(clientId|clientSecret|username|password)\}\}/g;

/** Fills `{{clientId}}`, `{{clientSecret}}`, `{{username}}`, `{{password}}` (CONTRACT §2). */
export function fillCredentialTemplate(template: string, document: ConnectorDocument): string {
  return template.replace(TEMPLATE, (_match, name: 'clientId' | 'clientSecret' | 'username' | 'password') => {
    return document[name] ?? '';
  });
}

/**
 * Builds the token request of the connector's grant (RFC 6749 §4.4.2, §4.3.2, §6, RFC 7523 §2.1), or of the
 * authorization-code grant that obtains its first refresh token (§4.1.3): a form-urlencoded POST that asks for JSON,
 * with the connector's client authentication, headers and request data either way.
 */
export function buildTokenRequest(document: ConnectorDocument, options: TokenRequestOptions): HttpRequest {
  const { authorizationCode } = options;
  const form = new URLSearchParams({
    grant_type:
      authorizationCode === undefined
        ? (document.customGrantType ?? grantTypeParameter(document.grantType))
        : 'authorization_code',
  });
  if (authorizationCode !== undefined) {
    form.set('code', authorizationCode.code);
    form.set('redirect_uri', authorizationCode.redirectUri);
    form.set('code_verifier', authorizationCode.codeVerifier);
  } else if (document.grantType === 'password') {
    form.set('username', document.username ?? '');
    form.set('password', document.password ?? '');
  } else if (document.grantType === 'refresh_token') {
    form.set('refresh_token', options.refreshToken ?? document.refreshToken ?? '');
  } else if (document.grantType === 'jwt_bearer') {
    if (options.assertion === undefined) throw new Error('jwt_bearer without a signed assertion');
    form.set('assertion', options.assertion);
  }
  if (options.scope !== undefined && options.scope !== '') form.set('scope', options.scope);
  for (const [name, value] of Object.entries(document.additionalRequestData ?? {})) {
    form.set(name, fillCredentialTemplate(value, document));
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(document.additionalHeaders ?? {})) {
    const filled = fillCredentialTemplate(value, document);
    // A credential filled in may bring what the template alone did not (a secret with a line break).
    if (!FIELD_VALUE.test(filled)) {
      throw misconfigured(`additionalHeaders.${name}`, 'is not a valid HTTP field value once filled in');
    }
    headers[name.toLowerCase()] = filled;
  }
  headers['content-type'] = 'application/x-www-form-urlencoded';
  headers.accept = 'application/json';
  // Without client authentication the assertion alone identifies the client (RFC 7521 §4.1: client authentication
  // is optional for an assertion grant), as Salesforce and Google expect: nothing else is sent.
  const assertionAlone = document.grantType === 'jwt_bearer' && options.authMethod === 'none';
  if (!assertionAlone) {
    applyClientAuth(
      options.authMethod,
      { clientId: document.clientId, clientSecret: document.clientSecret, clientAssertion: options.clientAssertion },
      headers,
      form,
    );
  }

  return { url: document.tokenUrl, method: 'POST', headers, body: form.toString() };
}
