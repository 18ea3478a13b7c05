import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import type { MiddlewareObj } from '@middy/core';
import { SERVICE_NAME } from '../core/settings.ts';
import type { Tracing } from '../ports/tracing.ts';

/**
 * Powertools Tracer (X-Ray) as the functions use it: the handler's subsegment (cold start and service annotated,
 * the response never recorded: it carries the token), SDK clients captured, and named spans for the token request.
 * Outgoing HTTP is not captured wholesale: the token request gets its own span, annotated with the connector.
 */
export class PowertoolsTracing implements Tracing {
  readonly tracer = new Tracer({ serviceName: SERVICE_NAME, captureHTTPsRequests: false });

  /** An SDK v3 client whose calls become subsegments (service, operation, request ID, retries). */
  instrument<T extends object>(client: T): T {
    return this.tracer.captureAWSv3Client(client);
  }

  /** Middy middleware: one subsegment per invocation; errors recorded by name and message (never a secret). */
  handlerMiddleware(): MiddlewareObj {
    return captureLambdaHandler(this.tracer, { captureResponse: false }) as MiddlewareObj;
  }

  /** An annotation on the invocation's subsegment, searchable in X-Ray (`annotation.connector = "…"`). */
  annotate(key: string, value: string): void {
    this.tracer.putAnnotation(key, value);
  }

  async span<T>(name: string, annotations: Readonly<Record<string, string>>, work: () => Promise<T>): Promise<T> {
    const parent = this.tracer.getSegment();
    if (!this.tracer.isTracingEnabled() || parent === undefined) return work();
    const subsegment = parent.addNewSubsegment(name);
    this.tracer.setSegment(subsegment);
    for (const [key, value] of Object.entries(annotations)) subsegment.addAnnotation(key, value);
    try {
      return await work();
    } catch (error) {
      if (error instanceof Error) subsegment.addError(error);
      throw error;
    } finally {
      subsegment.close();
      this.tracer.setSegment(parent);
    }
  }
}
