import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { errorResponse } from '../functions/lambda/api.ts';
import { VendorError } from '../shared/core/errors.ts';
import { type Family, isFamily } from '../shared/core/identifiers.ts';
import { decodeComponent, type Principals, parseQuery, verifySigV4 } from './sigv4.ts';

export type ProxyHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

export interface ApiGatewayOptions {
  readonly handlers: Readonly<Record<Family, ProxyHandler>>;
  readonly principals: Principals;
  readonly region: string;
  /** The API owner's account, reported as `requestContext.accountId` (never used to authorize). */
  readonly apiAccountId?: string;
  readonly now?: () => number;
}

const MAX_BODY_BYTES = 64 * 1024;
const ROUTE = /^\/tokens\/([^/]*)\/([^/]*)(\/refresh)?$/;
/** API Gateway's message for a route or method the API does not define. */
export const MISSING_AUTHENTICATION_TOKEN = 'Missing Authentication Token';

function send(response: ServerResponse, result: APIGatewayProxyResult): void {
  response.writeHead(result.statusCode, { ...(result.headers as Record<string, string> | undefined) });
  response.end(result.body);
}

const refusal = (
  status: number,
  code: 'access_denied' | 'invalid_request',
  description: string,
): APIGatewayProxyResult => {
  const result = errorResponse(new VendorError(code, description));
  return { ...result, statusCode: status };
};

async function readBody(request: IncomingMessage): Promise<string | undefined> {
  // A request without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3); a vend is such a GET.
  if (request.headers['content-length'] === undefined && request.headers['transfer-encoding'] === undefined) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** API Gateway's integration timeout: the invocation ends (for the caller) this long after it starts. */
const INTEGRATION_TIMEOUT_MS = 29_000;

function lambdaContext(functionName: string, requestId: string, now: () => number): Context {
  const started = now();
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '256',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, started + INTEGRATION_TIMEOUT_MS - now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/**
 * API Gateway's REST API as local mode needs it: SigV4 verification of every request (403 on a missing, wrong
 * or expired signature), the `/tokens/{family}/{connectorId}[/refresh]` routes, and the same v1 proxy event,
 * with `requestContext.identity` filled from the principals file, passed to the same handler modules.
 */
export function createApiGateway(options: ApiGatewayOptions): Server {
  const now = options.now ?? Date.now;
  const apiAccountId = options.apiAccountId ?? '000000000000';

  const handle = async (request: IncomingMessage): Promise<APIGatewayProxyResult> => {
    const url = request.url ?? '/';
    const queryStart = url.indexOf('?');
    const rawPath = queryStart === -1 ? url : url.slice(0, queryStart);
    const rawQuery = queryStart === -1 ? '' : url.slice(queryStart + 1);
    const method = request.method ?? 'GET';
    // API Gateway matches the route before it authenticates: a path or method the API does not define (an
    // unknown family, GET …/refresh, POST on a token) gets its MISSING_AUTHENTICATION_TOKEN answer, which the
    // construct's gateway response turns into this body (infra GATEWAY_ERRORS), signed or not.
    const route = ROUTE.exec(rawPath);
    const [, rawFamily = '', rawConnectorId = '', refresh] = route ?? [];
    const family = decodeComponent(rawFamily);
    if (route === null || family === undefined || method !== (refresh === undefined ? 'GET' : 'POST'))
      return refusal(403, 'access_denied', MISSING_AUTHENTICATION_TOKEN);

    const body = await readBody(request);
    if (body === undefined) return refusal(413, 'invalid_request', 'Request body too large.');
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    const verification = await verifySigV4(
      { method, rawPath, rawQuery, headers, body },
      options.principals,
      options.region,
      now(),
    );
    if (!verification.ok) return refusal(403, 'access_denied', verification.reason);
    // The construct's catch-all answers an unknown family itself, once the signature is checked (CONTRACT §3).
    if (!isFamily(family)) return refusal(400, 'invalid_request', 'Unknown grant family in the path.');

    const connectorId = decodeComponent(rawConnectorId);
    if (connectorId === undefined || connectorId === '')
      return refusal(400, 'invalid_request', 'Malformed connector ID.');

    // Verification already refused a query that does not decode.
    const query = parseQuery(rawQuery) ?? {};
    const hasQuery = Object.keys(query).length > 0;
    const requestId = randomUUID();
    const resource = `/tokens/${family}/{connectorId}${refresh ?? ''}`;
    const event: APIGatewayProxyEvent = {
      resource,
      path: rawPath,
      httpMethod: method,
      headers,
      multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, [value]])),
      queryStringParameters: hasQuery
        ? Object.fromEntries(Object.entries(query).map(([name, values]) => [name, values.at(-1)]))
        : null,
      multiValueQueryStringParameters: hasQuery ? query : null,
      pathParameters: { connectorId },
      stageVariables: null,
      body: body === '' ? null : body,
      isBase64Encoded: false,
      requestContext: {
        accountId: apiAccountId,
        apiId: 'local',
        authorizer: null,
        protocol: 'HTTP/1.1',
        httpMethod: method,
        path: `/local${rawPath}`,
        stage: 'local',
        requestId,
        requestTimeEpoch: now(),
        resourceId: 'local',
        resourcePath: resource,
        identity: {
          accessKey: verification.accessKeyId,
          accountId: verification.principal.arn.split(':')[4] ?? null,
          apiKey: null,
          apiKeyId: null,
          caller: verification.accessKeyId,
          clientCert: null,
          cognitoAuthenticationProvider: null,
          cognitoAuthenticationType: null,
          cognitoIdentityId: null,
          cognitoIdentityPoolId: null,
          principalOrgId: null,
          sourceIp: request.socket.remoteAddress ?? '127.0.0.1',
          user: verification.accessKeyId,
          userAgent: headers['user-agent'] ?? null,
          userArn: verification.principal.arn,
        },
      },
    };
    const handler = options.handlers[family];
    return handler(event, lambdaContext(`token-vendor-${family}`, requestId, now));
  };

  return createServer((request, response) => {
    handle(request)
      .then((result) => send(response, result))
      .catch(() => send(response, errorResponse(new VendorError('internal_error', 'The local gateway failed.'))));
  });
}

export async function listen(server: Server, port: number, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}
