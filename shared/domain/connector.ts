import { createHash } from 'node:crypto';
import * as z from 'zod/mini';
import { misconfigured, type VendorError } from '../core/errors.ts';
import { type ConnectorRef, isScopeToken, splitScope } from '../core/identifiers.ts';
import { jsonErrorWhere } from '../core/json-position.ts';

/** RFC 9110 §5.6.2 token, the only legal header name. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const ACCOUNT_ID = /^\d{12}$/;
const PRINCIPAL_ARN = /^arn:aws[a-z-]*:iam::\d{12}:(role|user)\/[\w+=,.@/-]+$/;

const scopeString = z
  .string()
  .check(
    z.refine((value) => splitScope(value).every(isScopeToken), 'must be space-separated scope tokens (RFC 6749 §3.3)'),
  );
const headerName = z.string().check(z.regex(HEADER_NAME, 'must be a valid HTTP header name'));
/**
 * RFC 9110 §5.5 field-value: visible ASCII, spaces and tabs, and obs-text (Latin-1); no control characters. fetch
 * refuses anything else at send time, which would look like an unreachable server.
 */
export const FIELD_VALUE = /^[\t\x20-\x7E\x80-\xFF]*$/;
const headerValue = z
  .string()
  .check(
    z.refine(
      (value) => FIELD_VALUE.test(value),
      'must be a valid HTTP field value (no line breaks or control characters, Latin-1 only)',
    ),
  );
/** Headers that frame the message: set by the HTTP client, never by a connector (RFC 9110 §7, §6.4). */
const FRAMING_HEADERS = new Set([
  'connection',
  'content-length',
  'host',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
/**
 * What the vendor sets in every token request itself. A connector that names one is refused rather than let a
 * request carry a parameter twice or two client authentications (RFC 6749 §2.3).
 */
const VENDOR_HEADERS = new Set([...FRAMING_HEADERS, 'accept', 'authorization', 'content-type']);
const VENDOR_PARAMETERS = new Set([
  'grant_type',
  'client_id',
  'client_secret',
  'username',
  'password',
  'refresh_token',
  'scope',
  'assertion',
  'client_assertion',
  'client_assertion_type',
  // The authorization-code exchange of `token-vendor connect` (RFC 6749 §4.1.3, RFC 7636 §4.5).
  'code',
  'code_verifier',
  'redirect_uri',
]);
const additionalHeaderName = headerName.check(
  z.refine((name) => !VENDOR_HEADERS.has(name.toLowerCase()), 'is a header the vendor sets itself'),
);
const callerHeaderName = headerName.check(
  z.refine((name) => !FRAMING_HEADERS.has(name.toLowerCase()), 'must not be a header that frames the message'),
);
const requestParameterName = z
  .string()
  .check(z.refine((name) => !VENDOR_PARAMETERS.has(name), 'is a parameter the vendor sets itself'));
const principal = z
  .string()
  .check(
    z.refine(
      (value) => value === '*' || ACCOUNT_ID.test(value) || PRINCIPAL_ARN.test(value),
      'each entry must be a 12-digit account ID, an IAM role or user ARN, or "*"',
    ),
  );
/** Claims the vendor sets itself in an assertion (RFC 7523 §3); the connector has a field for each that it may set. */
const VENDOR_CLAIMS = new Set(['iss', 'sub', 'aud', 'iat', 'exp', 'jti']);
const assertionClaimName = z
  .string()
  .check(z.refine((name) => !VENDOR_CLAIMS.has(name), 'is a claim the vendor sets itself'));
/**
 * The key that signs assertions (CONTRACT §2): one of a KMS key, whose private key never leaves KMS, or a PKCS#8
 * private key kept in the document like any secret.
 */
const signingKey = z.strictObject({
  kmsKeyId: z.optional(z.string().check(z.minLength(1), z.maxLength(2048))),
  privateKeyPem: z.optional(z.string().check(z.minLength(1))),
  kid: z.optional(z.string().check(z.minLength(1), z.maxLength(256))),
});

const tokenUrl = z.string().check(
  z.refine((value) => {
    if (!URL.canParse(value)) return false;
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.username === '' && url.password === '';
  }, 'must be an absolute http(s) URL without credentials'),
);
const nonEmpty = z.string().check(z.minLength(1));

export const connectorSchema = z
  .strictObject({
    grantType: z.enum(['client_credentials', 'password', 'refresh_token', 'jwt_bearer']),
    tokenUrl,
    /** Where `token-vendor connect` sends the operator to authorize a refresh-token connector (CONTRACT §2, §5). */
    authorizationUrl: z.optional(tokenUrl),
    authorizationScope: z.optional(scopeString),
    clientId: nonEmpty,
    clientSecret: z.optional(nonEmpty),
    scope: z.optional(scopeString),
    username: z.optional(nonEmpty),
    password: z.optional(nonEmpty),
    refreshToken: z.optional(nonEmpty),
    clientAuthentication: z.optional(z.enum(['basic', 'body', 'private_key_jwt'])),
    customGrantType: z.optional(nonEmpty),
    additionalHeaders: z.optional(z.record(additionalHeaderName, headerValue)),
    additionalRequestData: z.optional(z.record(requestParameterName, z.string())),
    headerAuthKey: z.optional(callerHeaderName),
    headerAuthValuePattern: z.optional(headerValue),
    allowedPrincipals: z.array(principal).check(z.minLength(1)),
    prewarm: z.optional(z.boolean()),
    defaultExpiresIn: z.optional(z.number().check(z.int(), z.positive(), z.maximum(31_536_000))),
    signingKey: z.optional(signingKey),
    signingAlgorithm: z.optional(z.enum(['RS256', 'PS256', 'ES256'])),
    assertionIssuer: z.optional(nonEmpty),
    assertionSubject: z.optional(nonEmpty),
    assertionAudience: z.optional(nonEmpty),
    // Any JSON value: the document is JSON already, so nothing else can arrive here.
    assertionClaims: z.optional(z.record(assertionClaimName, z.unknown())),
  })
  .check(
    z.superRefine((doc, ctx) => {
      if (doc.grantType === 'password') {
        if (doc.username === undefined) ctx.addIssue({ code: 'custom', path: ['username'], message: 'is required' });
        if (doc.password === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: 'is required' });
      }
      // Without a refresh token, a connector with an authorization URL awaits its first authorization (CONTRACT §2).
      if (doc.grantType === 'refresh_token' && doc.refreshToken === undefined && doc.authorizationUrl === undefined) {
        ctx.addIssue({ code: 'custom', path: ['refreshToken'], message: 'is required' });
      }
      if (doc.grantType === 'jwt_bearer' && doc.assertionIssuer === undefined) {
        ctx.addIssue({ code: 'custom', path: ['assertionIssuer'], message: 'is required' });
      }
      const signs = doc.grantType === 'jwt_bearer' || doc.clientAuthentication === 'private_key_jwt';
      if (signs && doc.signingKey === undefined) {
        ctx.addIssue({ code: 'custom', path: ['signingKey'], message: 'is required' });
      }
      const key = doc.signingKey;
      if (key !== undefined && (key.kmsKeyId === undefined) === (key.privateKeyPem === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: ['signingKey'],
          message: 'must hold exactly one of kmsKeyId and privateKeyPem',
        });
      }
    }),
  );

export type ConnectorDocument = z.infer<typeof connectorSchema>;

/** A validated connector with what every use of it needs. */
export interface Connector {
  readonly ref: ConnectorRef;
  readonly document: ConnectorDocument;
  /** Fingerprint of the whole document: state tied to it (needs re-authorization) ends when it changes. */
  readonly revision: string;
  /**
   * Fingerprint of the settings that shape a token request, without the refresh token the vendor itself
   * rotates: cached tokens and the remembered auth method are valid while it stays the same.
   */
  readonly tokenRevision: string;
}

/** A refresh-token connector created with an authorization URL and not yet connected (`token-vendor connect`). */
export const awaitsAuthorization = (document: ConnectorDocument): boolean =>
  document.grantType === 'refresh_token' && document.refreshToken === undefined;

export const fingerprint = (value: string): string =>
  createHash('sha256').update(value).digest('base64url').slice(0, 22);

function tokenRevisionOf(document: ConnectorDocument): string {
  const { refreshToken, allowedPrincipals, prewarm, headerAuthKey, headerAuthValuePattern, ...settings } = document;
  return fingerprint(JSON.stringify(settings));
}

interface Problem {
  readonly field: string;
  readonly problem: string;
}

// Zod's own messages for some issue kinds quote the input; these never do.
function describeIssue(issue: z.core.$ZodIssue): Problem[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ field: [...issue.path, key].join('.'), problem: 'is not a known field' }));
  }
  const field = issue.path.length === 0 ? '(document)' : issue.path.map(String).join('.');
  switch (issue.code) {
    case 'invalid_type':
      return [
        issue.input === undefined
          ? { field, problem: 'is required' }
          : { field, problem: `must be ${issue.expected === 'int' ? 'an integer' : `of type ${issue.expected}`}` },
      ];
    case 'invalid_value':
      // The allowed values are the schema's own words, never the input's.
      return [
        issue.input === undefined
          ? { field, problem: 'is required' }
          : { field, problem: `must be one of ${issue.values.map(String).join(', ')}` },
      ];
    case 'too_small':
      return [{ field, problem: issue.origin === 'array' ? 'must not be empty' : 'is too small or empty' }];
    case 'too_big':
      return [{ field, problem: 'is too large' }];
    case 'invalid_key': {
      // The key's own refinement says why (its messages are ours and never quote the key's value).
      const inner = issue.issues[0];
      return [{ field, problem: inner?.code === 'custom' ? inner.message : 'has an invalid key' }];
    }
    default:
      return [{ field, problem: issue.message }];
  }
}

/** Every problem of a document in one message (`field "a": …; field "b": …`), so one round fixes them all. */
function misconfiguredAll(problems: readonly Problem[]): VendorError {
  const [first, ...rest] = problems;
  if (first === undefined) return misconfigured('(document)', 'is invalid');
  const more = rest.map(({ field, problem }) => `; field "${field}": ${problem}`).join('');
  return misconfigured(first.field, `${first.problem}${more}`);
}

/**
 * Validates a connector document (CONTRACT §2). Errors name every field in trouble and never a value; invalid
 * JSON is located by line and column.
 * @throws VendorError `connector_misconfigured`
 */
export function parseConnector(ref: ConnectorRef, text: string): Connector {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw misconfigured('(document)', `is not valid JSON${jsonErrorWhere(text)}`);
  }
  // reportInput lets describeIssue tell "missing" from "wrong"; the input itself never reaches a message.
  const result = connectorSchema.safeParse(json, { reportInput: true });
  if (!result.success) throw misconfiguredAll(result.error.issues.flatMap(describeIssue));
  return { ref, document: result.data, revision: fingerprint(text), tokenRevision: tokenRevisionOf(result.data) };
}

/**
 * Reads `allowedPrincipals` alone from a document that may be invalid otherwise, so that a caller who is not
 * allowed gets 403 rather than learning the connector exists but is broken.
 */
const principalsOnly = z.object({ allowedPrincipals: z.array(z.string()) });

export function peekAllowedPrincipals(text: string): string[] | undefined {
  try {
    const json: unknown = JSON.parse(text);
    const parsed = principalsOnly.safeParse(json);
    return parsed.success ? parsed.data.allowedPrincipals : undefined;
  } catch {
    return undefined;
  }
}

/** Sets `refreshToken` in a document's text, keeping every other field as it was. */
export function withRefreshToken(text: string, refreshToken: string): string {
  const document = JSON.parse(text) as Record<string, unknown>;
  document.refreshToken = refreshToken;
  return `${JSON.stringify(document, null, 2)}\n`;
}

/** The refresh token a document's text holds, if any (the text was validated when it was first read). */
export function refreshTokenOf(text: string): string | undefined {
  const value = (JSON.parse(text) as Record<string, unknown>).refreshToken;
  return typeof value === 'string' ? value : undefined;
}
