import type { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy, { type MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import * as z from 'zod/mini';
import type { AggregatedMetrics } from '../../shared/adapters/powertools-metrics.ts';
import { errorFields, invalidRequest, toErrorBody, VendorError } from '../../shared/core/errors.ts';
import type { Family } from '../../shared/core/identifiers.ts';
import { type ForceRefreshDeps, forceRefresh } from '../../shared/use-cases/force-refresh.ts';
import { type VendDeps, vendToken } from '../../shared/use-cases/vend.ts';
import type { VendRequest } from '../../shared/use-cases/vend-request.ts';
import { type FunctionTracing, noTracing } from './tracing.ts';

const BASE_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' } as const;

export function jsonResponse(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): APIGatewayProxyResult {
  return { statusCode, headers: { ...BASE_HEADERS, ...headers }, body: JSON.stringify(body) };
}

export function errorResponse(error: VendorError): APIGatewayProxyResult {
  const retryAfter: Record<string, string> =
    error.retryAfterSeconds === undefined ? {} : { 'retry-after': String(error.retryAfterSeconds) };
  return jsonResponse(error.status, toErrorBody(error), retryAfter);
}

/** The parts of a REST API (v1) proxy event the vendor reads; validated like any other external input. */
const eventSchema = z.object({
  httpMethod: z.string(),
  resource: z.string(),
  pathParameters: z.looseObject({ connectorId: z.string(), family: z.optional(z.string()) }),
  multiValueQueryStringParameters: z.nullish(z.record(z.string(), z.optional(z.array(z.string())))),
  queryStringParameters: z.nullish(z.record(z.string(), z.optional(z.string()))),
  requestContext: z.looseObject({
    identity: z.looseObject({ userArn: z.nullish(z.string()), accountId: z.nullish(z.string()) }),
  }),
});

const MAX_QUERY_LENGTH = 4096;
/** Kept back from the invocation's remaining time for the middleware and the response. */
const INVOCATION_RESERVE_MS = 1_000;

function singleQueryValue(event: z.infer<typeof eventSchema>, name: string): string | undefined {
  const values = event.multiValueQueryStringParameters?.[name];
  if (values !== undefined && values.length > 1)
    throw invalidRequest(`The query parameter ${name} was given more than once.`);
  return values?.[0] ?? event.queryStringParameters?.[name];
}

/** Maps a REST proxy event to a vend request for the handler's family. */
export function toVendRequest(family: Family, rawEvent: unknown): VendRequest {
  const parsed = eventSchema.safeParse(rawEvent);
  if (!parsed.success) throw invalidRequest('The request is not a token request.');
  const event = parsed.data;
  const queryLength = Object.entries(event.queryStringParameters ?? {}).reduce(
    (total, [name, value]) => total + name.length + (value?.length ?? 0),
    0,
  );
  if (queryLength > MAX_QUERY_LENGTH) throw invalidRequest('The query string is too long.');
  const pathFamily = event.pathParameters.family ?? family;
  if (pathFamily !== family) throw invalidRequest('Unknown grant family in the path.');
  const { userArn, accountId } = event.requestContext.identity;
  return {
    family: pathFamily,
    connectorId: event.pathParameters.connectorId,
    scope: singleQueryValue(event, 'scope'),
    minTtl: singleQueryValue(event, 'minTtl'),
    // API Gateway's IAM authorizer fills the identity; without one there is nobody to authorize.
    caller: { arn: userArn ?? '', accountId: accountId ?? '' },
    force: event.httpMethod === 'POST' && event.resource.endsWith('/refresh'),
  };
}

/**
 * Maps every failure to the contract's error body (the pattern of middy's http-error-handler): a VendorError's
 * description is safe to send; anything else becomes a generic 500 and is logged by name only.
 */
export function contractErrors(logger: Logger): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  return {
    onError: async (request) => {
      const { error } = request;
      if (error instanceof VendorError) {
        const log = error.status >= 500 ? logger.warn.bind(logger) : logger.info.bind(logger);
        log('request refused', {
          status: error.status,
          error: error.code,
          upstreamError: error.upstreamError,
          ...causeFields(error),
        });
        request.response = errorResponse(error);
        return;
      }
      logger.error('unexpected failure', errorFields(error));
      request.response = errorResponse(new VendorError('internal_error', 'The token vendor failed unexpectedly.'));
    },
  };
}

function causeFields(error: VendorError): Record<string, unknown> {
  return error.cause === undefined ? {} : { cause: errorFields(error.cause) };
}

/**
 * Publishes the container's metrics after an invocation, when they are due (every invocation with `always`: the
 * scheduled function's runs are rare and each one's counts feed the alarms).
 */
export function publishMetrics(metrics: AggregatedMetrics, always = false): MiddlewareObj {
  const publish = async () => metrics.publish(always);
  return { after: publish, onError: publish };
}

/**
 * API Gateway's request ID (`requestContext.requestId`, also in the API's access log as `requestId`) as the
 * `correlation_id` of every log line of the invocation, refusals included; reset with the other keys after it.
 */
export function correlationIds(logger: Logger): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  return {
    before: (request) => {
      const { requestContext } = request.event as { requestContext?: { requestId?: unknown } };
      if (typeof requestContext?.requestId === 'string') logger.setCorrelationId(requestContext.requestId);
    },
  };
}

/**
 * One grant family's Lambda handler: logger context with API Gateway's request ID, the invocation's trace, metrics,
 * contract errors, and one call into the use case.
 */
export function createTokenHandler(
  family: Family,
  deps: VendDeps & ForceRefreshDeps,
  logger: Logger,
  metrics: AggregatedMetrics,
  tracing: FunctionTracing = noTracing,
) {
  return middy<APIGatewayProxyEvent, APIGatewayProxyResult, Error, Context>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(correlationIds(logger))
    .use(tracing.middlewares() as MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult>[])
    .use(publishMetrics(metrics))
    .use(contractErrors(logger))
    .handler(async (event, context) => {
      const request = toVendRequest(family, event);
      const connector = `${family}/${request.connectorId}`;
      logger.appendKeys({ connector, caller: request.caller.arn });
      // Identifiers only: the connector is searchable in X-Ray, nothing of its document is.
      tracing.annotate('connector', connector);
      // The invocation's own end bounds the answer too (a function timeout below API Gateway's 29 s).
      const deadline = deps.clock.now() + context.getRemainingTimeInMillis() - INVOCATION_RESERVE_MS;
      const withDeadline = { ...request, deadline };
      const body = request.force ? await forceRefresh(deps, withDeadline) : await vendToken(deps, withDeadline);
      return jsonResponse(200, body);
    });
}
