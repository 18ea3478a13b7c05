import type { Family } from '../core/identifiers.ts';

/** A token that is due, named as the refresher needs it: the connector and the requested scope set ('' for its own). */
export interface RefreshDemand {
  readonly family: Family;
  readonly connectorId: string;
  readonly scopeKey: string;
}

/**
 * Hands a due token's refresh to other compute (in AWS an asynchronous invocation of the refresher function), so no
 * caller waits on the token server and no refresh runs in a container that freezes after its response.
 */
export interface RefreshRequests {
  request(demand: RefreshDemand): Promise<void>;
}
