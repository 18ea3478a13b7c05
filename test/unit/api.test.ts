import { describe, expect, it } from 'vitest';
import { errorResponse, jsonResponse, toVendRequest } from '../../functions/lambda/api.ts';
import { VendorError } from '../../shared/core/errors.ts';

const CALLER_ARN = 'arn:aws:sts::111122223333:assumed-role/caller/session-1';
const API_OWNER = '999999999999';

interface EventOptions {
  method?: string;
  resource?: string;
  connectorId?: string;
  family?: string;
  query?: Record<string, string[]> | null;
  identity?: Record<string, unknown>;
}

/** A REST API (v1) proxy event as API Gateway sends it for an IAM-authorized route. */
function restEvent(options: EventOptions = {}): Record<string, unknown> {
  const query = options.query ?? null;
  return {
    resource: options.resource ?? '/tokens/client-credentials/{connectorId}',
    path: `/tokens/client-credentials/${options.connectorId ?? 'demo'}`,
    httpMethod: options.method ?? 'GET',
    headers: { host: 'abc.execute-api.us-east-1.amazonaws.com' },
    multiValueHeaders: {},
    queryStringParameters:
      query === null ? null : Object.fromEntries(Object.entries(query).map(([name, values]) => [name, values.at(-1)])),
    multiValueQueryStringParameters: query,
    pathParameters: {
      connectorId: options.connectorId ?? 'demo',
      ...(options.family === undefined ? {} : { family: options.family }),
    },
    stageVariables: null,
    body: null,
    isBase64Encoded: false,
    requestContext: {
      accountId: API_OWNER,
      apiId: 'abc',
      stage: 'prod',
      requestId: 'req-1',
      identity: options.identity ?? {
        accountId: '111122223333',
        userArn: CALLER_ARN,
        caller: 'AROAEXAMPLE:session-1',
        sourceIp: '10.0.0.1',
      },
    },
  };
}

function refusal(act: () => unknown): VendorError {
  try {
    act();
  } catch (error) {
    expect(error).toBeInstanceOf(VendorError);
    return error as VendorError;
  }
  throw new Error('expected a refusal');
}

describe('Function: toVendRequest', () => {
  it('builds the vend request from the path, query and caller identity', () => {
    // Act
    const request = toVendRequest(
      'client-credentials',
      restEvent({ connectorId: 'crm-prod', query: { scope: ['read write'], minTtl: ['300'] } }),
    );

    // Assess
    expect(request).toEqual({
      family: 'client-credentials',
      connectorId: 'crm-prod',
      scope: 'read write',
      minTtl: '300',
      caller: { arn: CALLER_ARN, accountId: '111122223333' },
      force: false,
    });
  });

  it("takes the caller's account from identity, never the API owner's requestContext.accountId", () => {
    // Act
    const request = toVendRequest('client-credentials', restEvent());

    // Assess
    expect(request.caller.accountId).toBe('111122223333');
    expect(request.caller.accountId).not.toBe(API_OWNER);
  });

  it('leaves scope and minTtl undefined without a query string', () => {
    // Act
    const request = toVendRequest('client-credentials', restEvent({ query: null }));

    // Assess
    expect(request.scope).toBeUndefined();
    expect(request.minTtl).toBeUndefined();
  });

  it('reads the query from queryStringParameters when multi-value parameters are absent', () => {
    // Prepare
    const event = { ...restEvent(), queryStringParameters: { scope: 'read' }, multiValueQueryStringParameters: null };

    // Act
    const request = toVendRequest('client-credentials', event);

    // Assess
    expect(request.scope).toBe('read');
  });

  it.each(['scope', 'minTtl'])('refuses a %s given twice as invalid_request', (name) => {
    // Prepare
    const event = restEvent({ query: { [name]: ['1', '2'] } });

    // Act
    const error = refusal(() => toVendRequest('client-credentials', event));

    // Assess
    expect(error.code).toBe('invalid_request');
    expect(error.status).toBe(400);
  });

  it('sets force for POST on the refresh resource', () => {
    // Act
    const request = toVendRequest(
      'client-credentials',
      restEvent({ method: 'POST', resource: '/tokens/client-credentials/{connectorId}/refresh' }),
    );

    // Assess
    expect(request.force).toBe(true);
  });

  it.each([
    ['GET on the refresh resource', 'GET', '/tokens/client-credentials/{connectorId}/refresh'],
    ['POST on the token resource', 'POST', '/tokens/client-credentials/{connectorId}'],
  ])('does not set force for %s', (_name, method, resource) => {
    // Act
    const request = toVendRequest('client-credentials', restEvent({ method, resource }));

    // Assess
    expect(request.force).toBe(false);
  });

  it('refuses a family path parameter that is not the handler family', () => {
    // Act
    const error = refusal(() => toVendRequest('client-credentials', restEvent({ family: 'password' })));

    // Assess
    expect(error.code).toBe('invalid_request');
  });

  it('accepts a family path parameter that is the handler family', () => {
    // Act
    const request = toVendRequest('password', restEvent({ family: 'password' }));

    // Assess
    expect(request.family).toBe('password');
  });

  it('reports a missing identity as an empty caller, whom no entry but "*" admits', () => {
    // Act
    const request = toVendRequest('client-credentials', restEvent({ identity: { userArn: null, accountId: null } }));

    // Assess
    expect(request.caller).toEqual({ arn: '', accountId: '' });
  });

  it.each([
    ['no pathParameters', { ...restEvent(), pathParameters: null }],
    ['no requestContext', { ...restEvent(), requestContext: undefined }],
    ['not an object', 'GET /tokens'],
  ])('refuses an event with %s as invalid_request', (_name, event) => {
    // Act
    const error = refusal(() => toVendRequest('client-credentials', event));

    // Assess
    expect(error.code).toBe('invalid_request');
  });

  it('refuses an overlong query string', () => {
    // Act
    const error = refusal(() =>
      toVendRequest('client-credentials', restEvent({ query: { scope: ['a'.repeat(5000)] } })),
    );

    // Assess
    expect(error.code).toBe('invalid_request');
  });
});

describe('Function: jsonResponse', () => {
  it('answers JSON that is never cached', () => {
    // Act
    const response = jsonResponse(200, { ok: true });

    // Assess
    expect(response.headers).toMatchObject({ 'content-type': 'application/json', 'cache-control': 'no-store' });
    expect(JSON.parse(response.body)).toEqual({ ok: true });
  });
});

describe('Function: errorResponse', () => {
  it('answers the contract error body with the status and upstream_error', () => {
    // Act
    const response = errorResponse(
      new VendorError('upstream_rejected', 'The token server refused the grant.', { upstreamError: 'invalid_grant' }),
    );

    // Assess
    expect(response.statusCode).toBe(502);
    expect(response.headers).toMatchObject({ 'cache-control': 'no-store' });
    expect(JSON.parse(response.body)).toEqual({
      error: 'upstream_rejected',
      error_description: 'The token server refused the grant.',
      upstream_error: 'invalid_grant',
    });
  });

  it('sends Retry-After when the error carries it', () => {
    // Act
    const response = errorResponse(new VendorError('rate_limited', 'Too often.', { retryAfterSeconds: 4 }));

    // Assess
    expect(response.statusCode).toBe(429);
    expect(response.headers).toMatchObject({ 'retry-after': '4' });
    expect(JSON.parse(response.body)).not.toHaveProperty('upstream_error');
  });
});
