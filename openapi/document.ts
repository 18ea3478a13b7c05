import { z } from 'zod';
import { CONTRACT_ERROR_CODES } from '../client/errors.ts';
import { type ErrorCode, VendorError } from '../shared/core/errors.ts';
import { CONNECTOR_ID, FAMILIES, type Family, grantTypeParameter } from '../shared/core/identifiers.ts';
import { connectorSchema } from '../shared/domain/connector.ts';
import { errorSchema, gatewayErrorSchema, tokenSchema } from './schemas.ts';

/** RFC 6749 §3.3 scope-token, the same class as the service's `isScopeToken`. */
const SCOPE_TOKEN = '[\\x21\\x23-\\x5B\\x5D-\\x7E]+';
/** What the service accepts as `scope`: space-separated scope tokens, at least one (extra spaces are ignored). */
export const SCOPE_PATTERN = `^ *${SCOPE_TOKEN}(?: +${SCOPE_TOKEN})* *$`;
/** `minTtl`: a whole number of seconds, up to nine digits. */
export const MIN_TTL_PATTERN = '^\\d{1,9}$';
/** API Gateway and the vendor refuse a query string (names and values) over 4096 characters. */
const MAX_QUERY_LENGTH = 4096;

/** The stage name the CDK construct deploys (`STAGE_NAME` in infra/). */
const STAGE = 'v1';

type Json = Record<string, unknown>;

/** A zod schema (classic or mini) as a JSON Schema (2020-12, OpenAPI 3.1's dialect) without its own `$schema` line. */
function jsonSchema(schema: z.core.$ZodType): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'output' }) as Json;
  return rest;
}

/**
 * The connector document's JSON Schema, from the service's own zod schema, plus what zod's refinements check and
 * JSON Schema can say too: the credentials each grant needs.
 */
function connectorDocumentSchema(): Json {
  const schema = jsonSchema(connectorSchema);
  const properties = schema.properties as Record<string, Json>;
  properties.tokenUrl = { ...properties.tokenUrl, format: 'uri' };
  return {
    title: 'ConnectorDocument',
    description:
      'A connector document (CONTRACT §2): the secret string of `<prefix>/<family>/<connectorId>` in AWS, the ' +
      'file `<dir>/<family>/<connectorId>.json` in local mode. Not sent over this API; here for editors and ' +
      'tooling. `token-vendor connectors validate` checks the rest (scope tokens, principal forms, header values).',
    ...schema,
    allOf: [
      {
        if: { type: 'object', properties: { grantType: { const: 'password' } }, required: ['grantType'] },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's own if/then keywords.
        then: { type: 'object', required: ['username', 'password'] },
      },
      {
        if: { type: 'object', properties: { grantType: { const: 'refresh_token' } }, required: ['grantType'] },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's own if/then keywords.
        then: { type: 'object', required: ['refreshToken'] },
      },
    ],
  };
}

const statusOf = (code: ErrorCode) => new VendorError(code, '').status;

/** The contract's codes grouped by the status they are sent with, from the service's own mapping. */
function codesByStatus(): Map<number, ErrorCode[]> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of CONTRACT_ERROR_CODES) {
    const status = statusOf(code);
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return byStatus;
}

const WHEN: Record<ErrorCode, string> = {
  invalid_request:
    "malformed connector ID, `scope` (or not a subset of the connector's) or `minTtl`; a query parameter given twice; a query over 4 KiB",
  access_denied:
    'the caller is not in `allowedPrincipals`, the connector does not exist, or its `grantType` is not this family (one answer for all three); in local mode also a missing, wrong or expired signature',
  rate_limited: 'a forced refresh asked sooner than `TOKEN_VENDOR_FORCED_REFRESH_SECONDS` after the last',
  upstream_rejected: 'the token server refused the grant; `upstream_error` carries its OAuth error code',
  upstream_invalid_response: 'the token server answered with something that is not a token',
  upstream_unavailable:
    'the token server is down, slow or rate-limiting (or the token table or connector store is unavailable) and no still-valid token is cached',
  connector_misconfigured: 'the connector document is invalid: the description names the field, never its value',
  internal_error: 'the vendor failed unexpectedly',
};

const ref = (kind: string, name: string) => ({ $ref: `#/components/${kind}/${name}` });

function errorContent(codes: readonly ErrorCode[], withGateway: boolean): Json {
  const vendor = { allOf: [ref('schemas', 'Error'), { type: 'object', properties: { error: { enum: [...codes] } } }] };
  return {
    'application/json': {
      schema: withGateway ? { oneOf: [vendor, ref('schemas', 'GatewayError')] } : vendor,
    },
  };
}

/** One response per error status, named by status; `forced` for the refresh route's 429. */
function errorResponses(): Record<string, Json> {
  const responses: Record<string, Json> = {};
  for (const [status, codes] of codesByStatus()) {
    // 403 may come from API Gateway itself (signature, identity policy); the vendor's own 429 only on refresh.
    const fromGateway = status === 403 || status === 429;
    responses[`Error${status}`] = {
      description: codes.map((code) => `\`${code}\`: ${WHEN[code]}.`).join(' '),
      headers: {
        'Cache-Control': fromGateway ? ref('headers', 'CacheControlIfVendor') : ref('headers', 'CacheControl'),
        ...(status === 429 ? { 'Retry-After': ref('headers', 'RetryAfter') } : {}),
        ...(status === 503 ? { 'Retry-After': ref('headers', 'RetryAfterIfKnown') } : {}),
      },
      content: errorContent(codes, fromGateway),
    };
  }
  responses.Throttled = {
    description: "API Gateway's stage throttling.",
    content: { 'application/json': { schema: ref('schemas', 'GatewayError') } },
  };
  responses.GatewayTimeout = {
    description: 'API Gateway gave up on the function (29 s); the vendor itself answers within its 12 s deadline.',
    content: { 'application/json': { schema: ref('schemas', 'GatewayError') } },
  };
  return responses;
}

function operation(family: Family, forced: boolean): Json {
  const errors = Object.fromEntries(
    [...codesByStatus().keys()]
      .filter((status) => forced || status !== statusOf('rate_limited'))
      .map((status) => [String(status), ref('responses', `Error${status}`)]),
  );
  return {
    operationId: `${forced ? 'refresh' : 'get'}${family
      .split('-')
      .map((word) => word[0]?.toUpperCase() + word.slice(1))
      .join('')}Token`,
    tags: [family],
    summary: forced
      ? `Discard the cached ${family} token and get a new one`
      : `Get a ${family} token valid for at least minTtl seconds`,
    description: forced
      ? 'For a caller whose downstream call was refused with 401. Discards the cached token and returns a new one; ' +
        'if the new fetch fails, the discarded token is not served again. At most one forced refresh per connector ' +
        'every `TOKEN_VENDOR_FORCED_REFRESH_SECONDS` (default 5); sooner gets `429` with `Retry-After`.'
      : `A cached token when one is valid for \`minTtl\`, else one fetched with grant_type=${grantTypeParameter(FAMILIES[family])} ` +
        '(one request across all containers). While the token server is unavailable, a still-valid token is ' +
        'served even below `minTtl`.',
    parameters: [ref('parameters', 'connectorId'), ref('parameters', 'scope'), ref('parameters', 'minTtl')],
    responses: {
      '200': ref('responses', 'Token'),
      ...errors,
      ...(forced ? {} : { '429': ref('responses', 'Throttled') }),
      '504': ref('responses', 'GatewayTimeout'),
    },
  };
}

/**
 * The OpenAPI 3.1 document of the vendor's HTTP API (CONTRACT §3), built from the service's own definitions:
 * families, the connector ID pattern, error codes and their statuses, the connector document schema.
 * `npm run openapi` writes it to `openapi/openapi.json`; a test keeps that file equal to this.
 */
export function buildOpenApiDocument(version: string): Json {
  const paths: Record<string, Json> = {};
  for (const family of Object.keys(FAMILIES) as Family[]) {
    paths[`/tokens/${family}/{connectorId}`] = { get: operation(family, false) };
    paths[`/tokens/${family}/{connectorId}/refresh`] = { post: operation(family, true) };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Token vendor',
      version,
      summary: 'OAuth 2.0 access tokens for IAM principals',
      description:
        'Vends access tokens of third-party OAuth 2.0 APIs to IAM principals. Every request is signed with AWS ' +
        'Signature Version 4 (service `execute-api`) and authorized by API Gateway (`AWS_IAM`), then by the ' +
        "connector's `allowedPrincipals`. Every answer is JSON with `Cache-Control: no-store`.",
    },
    servers: [
      {
        url: 'https://{restApiId}.execute-api.{region}.amazonaws.com/{stage}',
        description: "AWS: the stack's `ApiUrl` output",
        variables: {
          restApiId: { default: 'abc123defg', description: 'The REST API ID' },
          region: { default: 'us-east-1' },
          stage: { default: STAGE },
        },
      },
      { url: 'http://127.0.0.1:3000', description: 'Local mode (`npm start`)' },
    ],
    security: [{ sigv4: [] }],
    tags: (Object.keys(FAMILIES) as Family[]).map((family) => ({
      name: family,
      description: `Connectors with \`grantType: ${FAMILIES[family]}\``,
    })),
    paths,
    components: {
      securitySchemes: {
        sigv4: {
          type: 'apiKey',
          name: 'Authorization',
          in: 'header',
          description:
            "AWS Signature Version 4 for service `execute-api` in the API's region (`Authorization`, " +
            '`X-Amz-Date`, and `X-Amz-Security-Token` for temporary credentials). The caller needs ' +
            "`execute-api:Invoke` on the route and a place in the connector's `allowedPrincipals`.",
          'x-amazon-apigateway-authtype': 'awsSigv4',
        },
      },
      parameters: {
        connectorId: {
          name: 'connectorId',
          in: 'path',
          required: true,
          description: 'The connector, named as its document is.',
          schema: { type: 'string', pattern: CONNECTOR_ID.source, maxLength: 128 },
          example: 'crm',
        },
        scope: {
          name: 'scope',
          in: 'query',
          required: false,
          description:
            "Space-separated scopes, a subset of the connector's `scope`; default: all of it. The whole query " +
            `string (names and values) may hold at most ${MAX_QUERY_LENGTH} characters.`,
          schema: { type: 'string', pattern: SCOPE_PATTERN, maxLength: MAX_QUERY_LENGTH - 'scope'.length },
          example: 'read',
        },
        minTtl: {
          name: 'minTtl',
          in: 'query',
          required: false,
          description:
            "Seconds the token must still be valid; default 60. Above half of the token's lifetime it counts as " +
            'half, so that short-lived tokens are still served from the cache.',
          schema: { type: 'string', pattern: MIN_TTL_PATTERN },
          example: '300',
        },
      },
      headers: {
        CacheControl: { required: true, schema: { type: 'string', const: 'no-store' } },
        CacheControlIfVendor: {
          description: "`no-store` on every answer of the vendor; absent on API Gateway's own.",
          schema: { type: 'string', const: 'no-store' },
        },
        RetryAfter: {
          description: "Seconds until a retry may succeed (on the vendor's own `rate_limited`).",
          schema: { type: 'integer', minimum: 0 },
        },
        RetryAfterIfKnown: {
          description: 'Seconds until a retry may succeed, when known.',
          schema: { type: 'integer', minimum: 0 },
        },
      },
      schemas: {
        Token: jsonSchema(tokenSchema),
        Error: jsonSchema(errorSchema),
        GatewayError: jsonSchema(gatewayErrorSchema),
        ConnectorDocument: connectorDocumentSchema(),
      },
      responses: {
        Token: {
          description: 'The token and the header to send with it.',
          headers: { 'Cache-Control': ref('headers', 'CacheControl') },
          content: { 'application/json': { schema: ref('schemas', 'Token') } },
        },
        ...errorResponses(),
      },
    },
  };
}
