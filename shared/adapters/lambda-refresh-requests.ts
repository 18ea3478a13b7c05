import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { upstreamUnavailable } from '../core/errors.ts';
import type { RefreshDemand, RefreshRequests } from '../ports/refresh-requests.ts';

/** The refresher function's event for a demanded refresh (the scheduled run's own events carry no `refresh`). */
export interface RefreshEvent {
  readonly refresh: RefreshDemand;
}

/** Asks the refresher function to refresh a token, as an asynchronous (`Event`) invocation: Lambda queues it. */
export class LambdaRefreshRequests implements RefreshRequests {
  readonly #client: LambdaClient;
  readonly #functionName: string;

  constructor(options: { readonly client: LambdaClient; readonly functionName: string }) {
    this.#client = options.client;
    this.#functionName = options.functionName;
  }

  async request(demand: RefreshDemand): Promise<void> {
    const event: RefreshEvent = { refresh: demand };
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
