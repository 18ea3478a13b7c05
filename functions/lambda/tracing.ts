import type { MiddlewareObj } from '@middy/core';
import type { PowertoolsTracing } from '../../shared/adapters/powertools-tracing.ts';
import type { Tracing } from '../../shared/ports/tracing.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** What a function's composition and handler need of tracing. */
export interface FunctionTracing extends Tracing {
  /** Traces an SDK client's calls (from the first invocation on). */
  instrument<T extends object>(client: T): T;
  /** Annotates the invocation's trace (identifiers only). */
  annotate(key: string, value: string): void;
  /** The handler's trace: one subsegment per invocation (none without tracing: middy refuses an empty object). */
  middlewares(): MiddlewareObj[];
}

/** No tracing: nothing loaded, nothing recorded (local mode, and functions deployed without `tracing`). */
export const noTracing: FunctionTracing = {
  instrument: (client) => client,
  annotate: () => undefined,
  middlewares: () => [],
  span: (_name, _annotations, work) => work(),
};

/**
 * Powertools Tracer, loaded only where tracing is on (`POWERTOOLS_TRACE_ENABLED=true`, which the construct sets
 * with `tracing`): the X-Ray SDK under it costs about 130 KB of bundle and tens of milliseconds of cold start that
 * a function without tracing should not pay. Loading starts at once and the first invocation waits for it, so
 * every call of every invocation is traced.
 */
export function tracingFor(env: Env): FunctionTracing {
  if (env.POWERTOOLS_TRACE_ENABLED !== 'true') return noTracing;
  const clients: object[] = [];
  let loaded: PowertoolsTracing | undefined;
  const ready = import('../../shared/adapters/powertools-tracing.ts').then(({ PowertoolsTracing }) => {
    loaded = new PowertoolsTracing();
    for (const client of clients) loaded.instrument(client);
    return loaded;
  });
  // One middleware object: Powertools keeps the invocation's segments in it between before and after.
  const handler = ready.then((tracing) => tracing.handlerMiddleware());
  const forward =
    (stage: 'before' | 'after' | 'onError') => async (request: Parameters<NonNullable<MiddlewareObj['before']>>[0]) => {
      await (await handler)[stage]?.(request);
    };
  return {
    instrument(client) {
      if (loaded === undefined) clients.push(client);
      else loaded.instrument(client);
      return client;
    },
    annotate: (key, value) => loaded?.annotate(key, value),
    middlewares: () => [{ before: forward('before'), after: forward('after'), onError: forward('onError') }],
    span: async (name, annotations, work) => (await ready).span(name, annotations, work),
  };
}
