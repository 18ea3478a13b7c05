import { createSocket, type Socket } from 'node:dgram';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noTracing, tracingFor } from '../../functions/lambda/tracing.ts';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import { eventually } from '../support/local-mode.ts';

const TOKEN = 'made-up.access.token.1234';
const CONTEXT = {
  functionName: 'token-vendor-client-credentials',
  awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
  getRemainingTimeInMillis: () => 29_000,
} as unknown as Context;

/** X-Ray documents as the SDK sends them to the daemon: a header line, then the (sub)segment. */
type Document = { name: string; annotations?: Record<string, unknown>; subsegments?: Document[]; aws?: unknown };

describe('Tracing: Powertools Tracer where tracing is on, nothing where it is off', () => {
  let daemon: Socket;
  let dynamo: EmbeddedDynamoDB;
  const sent: string[] = [];

  beforeAll(async () => {
    // A loopback X-Ray daemon: in Lambda the SDK sends every closed subsegment to it at once, over UDP.
    daemon = createSocket('udp4');
    daemon.on('message', (message) => sent.push(message.toString('utf8')));
    await new Promise<void>((done) => daemon.bind(0, '127.0.0.1', done));
    dynamo = await startEmbeddedDynamoDB();
    // What Lambda gives a function with active tracing.
    Object.assign(process.env, {
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
      AWS_LAMBDA_FUNCTION_NAME: CONTEXT.functionName,
      LAMBDA_TASK_ROOT: '/var/task',
      _HANDLER: 'index.handler',
      _X_AMZN_TRACE_ID: 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1',
      AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${daemon.address().port}`,
      AWS_XRAY_CONTEXT_MISSING: 'IGNORE_ERROR',
    });
  });
  afterAll(async () => {
    daemon?.close();
    await dynamo?.close();
  });

  const documents = (): Document[] =>
    sent.flatMap((datagram) => {
      const body = datagram.slice(datagram.indexOf('\n') + 1);
      return [JSON.parse(body) as Document];
    });

  it('traces the invocation, its SDK calls and the token request, with the connector as annotation and no token', async () => {
    // Prepare
    const tracing = tracingFor({ POWERTOOLS_TRACE_ENABLED: 'true' });
    const client = tracing.instrument(
      new DynamoDBClient({
        endpoint: dynamo.endpoint,
        region: 'us-east-1',
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
      }),
    );
    const handler = middy()
      .use(tracing.middlewares())
      .handler(async () => {
        tracing.annotate('connector', 'client-credentials/crm');
        await client.send(new ListTablesCommand({}));
        return tracing.span(
          'token request',
          { connector: 'client-credentials/crm', grantType: 'client_credentials' },
          async () => ({ access_token: TOKEN }),
        );
      });

    // Act
    const answer = await handler({}, CONTEXT);

    // Assess
    expect(answer).toEqual({ access_token: TOKEN });
    await eventually(() => documents().some((document) => document.name === '## index.handler'), 5_000);
    const invocation = documents().find((document) => document.name === '## index.handler');
    expect(invocation?.annotations).toMatchObject({
      ColdStart: expect.any(Boolean),
      Service: 'token-vendor',
      connector: 'client-credentials/crm',
    });
    const all = JSON.stringify(documents());
    expect(all).toContain('"name":"DynamoDB"');
    expect(all).toContain('"operation":"ListTables"');
    const request = documents()
      .flatMap((document) => [document, ...(document.subsegments ?? [])])
      .find((document) => document.name === 'token request');
    expect(request?.annotations).toEqual({ connector: 'client-credentials/crm', grantType: 'client_credentials' });
    // The response (a token) is never recorded.
    expect(all).not.toContain(TOKEN);
  });

  it('loads nothing and records nothing where tracing is off', async () => {
    // Act
    const tracing = tracingFor({ POWERTOOLS_TRACE_ENABLED: 'false' });

    // Assess
    expect(tracing).toBe(noTracing);
    expect(await tracing.span('token request', {}, async () => 'done')).toBe('done');
  });
});
