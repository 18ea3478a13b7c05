import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { upstreamUnavailable } from '../core/errors.ts';
import type { RefreshDemand, RefreshRequests } from '../ports/refresh-requests.ts';

/** The refresher function's event for a demanded refresh (the scheduled run's own events carry no `refresh`). */
export interface RefreshEvent {
  readonly refresh: RefreshDemand;
  /** The vend's correlation ID (API Gateway's request ID), so the refresher's log lines name it too. */
  readonly correlationId?: string;
}

/** Asks the refresher function to refresh a token, as an asynchronous (`Event`) invocation: Lambda queues it. */
export class LambdaRefreshRequests implements RefreshRequests {
  readonly #client: LambdaClient;
  readonly #functionName: string;

  readonly #correlationId: () => string | undefined;

  constructor(options: {
    readonly client: LambdaClient;
    readonly functionName: string;
    /** The correlation ID of the invocation that asks (the logger's), if any. */
    readonly correlationId?: () => string | undefined;
  }) {
    this.#client = options.client;
    this.#functionName = options.functionName;
    this.#correlationId = options.correlationId ?? (() => undefined);
  }

  async request(demand: RefreshDemand): Promise<void> {
    const correlationId = this.#correlationId();
    const event: RefreshEvent = { refresh: demand, ...(correlationId === undefined ? {} : { correlationId }) };
    try {
      await this.#client.send(
        new InvokeCommand({
          FunctionName: this.#functionName,
          InvocationType: 'Event',
          Payload: new TextEncoder().encode(JSON.stringify(event)),
        }),
      );
    } catch (error) {
      throw upstreamUnavailable('The refresher could not be invoked.', error);
    }
  }
}
