import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import * as z from 'zod/mini';
import { createLogger } from '../../shared/adapters/powertools-logger.ts';
import { AggregatedMetrics, createMetrics } from '../../shared/adapters/powertools-metrics.ts';
import { VendorError } from '../../shared/core/errors.ts';
import { CONNECTOR_ID, FAMILIES, type Family, normalizeScope } from '../../shared/core/identifiers.ts';
import { refFromSecretName } from '../../shared/core/settings.ts';
import { refreshDemanded } from '../../shared/use-cases/refresh-demanded.ts';
import { rotateConnectors } from '../../shared/use-cases/rotate.ts';
import { reconcileConnectors, syncConnector } from '../../shared/use-cases/sync.ts';
import { createTokenHandler, publishMetrics } from './api.ts';
import { createRuntime, type RuntimeOverrides } from './composition.ts';
import { loadConfig } from './config.ts';
import { tracingFor } from './tracing.ts';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * One grant family's function: its logger, metrics and runtime from the environment it was given. The handler
 * modules call it with `process.env`; local mode calls it with its own composition (`overrides.network`).
 */
export function tokenFunction(family: Family, env: Env, overrides: RuntimeOverrides = {}) {
  const logger = createLogger();
  const metrics = new AggregatedMetrics(createMetrics(env.POWERTOOLS_METRICS_NAMESPACE));
  const tracing = overrides.tracing ?? tracingFor(env);
  const correlationId = () => {
    const id = logger.getCorrelationId();
    return typeof id === 'string' ? id : undefined;
  };
  const deps = createRuntime(loadConfig(env), logger, { metrics, tracing, correlationId, ...overrides });
  return createTokenHandler(family, deps, logger, metrics, tracing);
}

const connectorRef = z.object({
  family: z.enum(Object.keys(FAMILIES) as [Family, ...Family[]]),
  connectorId: z.string().check(z.regex(CONNECTOR_ID)),
});

/** A demand from a vend's `async` refresh ahead (any other event is the schedule's). */
const demandEvent = z.object({
  refresh: z.extend(connectorRef, {
    scopeKey: z.string().check(z.refine((value) => value === '' || normalizeScope(value)?.join(' ') === value)),
  }),
  correlationId: z.optional(z.string().check(z.maxLength(128))),
});

/**
 * `{ sync }`: a connector document changed (the CLI says so); `{ reconcile }`: sync what the listing says changed
 * lately, or every connector with `full`.
 */
const syncEvent = z.object({ sync: connectorRef });
const reconcileEvent = z.object({ reconcile: z.object({ full: z.optional(z.boolean()) }) });
/**
 * EventBridge's copy of a Secrets Manager API call, delivered through CloudTrail (the construct's rule passes only
 * calls that change a secret under the prefix).
 */
const secretChangedEvent = z.object({
  source: z.literal('aws.secretsmanager'),
  detail: z.object({ requestParameters: z.object({ secretId: z.string() }) }),
});

/** The secret name in a `secretId`, which is a name or an ARN (`…:secret:<name>-<6 random characters>`). */
const secretNameOf = (secretId: string): string =>
  secretId.startsWith('arn:')
    ? secretId.slice(secretId.indexOf(':secret:') + 8).replace(/-[A-Za-z0-9]{6}$/, '')
    : secretId;

/**
 * The scheduled function, also the refresher and the syncer: EventBridge Scheduler's events run the scheduled
 * rotation (`{ reconcile }` the reconciliation); a `{ refresh }` event (an asynchronous invocation from a vend)
 * refreshes that one token; a `{ sync }` event or a secret change from EventBridge syncs that connector.
 */
export function rotateFunction(env: Env, overrides: RuntimeOverrides = {}) {
  const logger = createLogger();
  const metrics = new AggregatedMetrics(createMetrics(env.POWERTOOLS_METRICS_NAMESPACE));
  const config = loadConfig(env);
  const tracing = overrides.tracing ?? tracingFor(env);
  const deps = createRuntime(config, logger, { metrics, tracing, ...overrides });
  return middy()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(tracing.middlewares())
    .use(publishMetrics(metrics, true))
    .handler(async (event: unknown) => {
      const demand = demandEvent.safeParse(event);
      if (demand.success) {
        const { family, connectorId, scopeKey } = demand.data.refresh;
        logger.appendKeys({ connector: `${family}/${connectorId}` });
        // The vend that handed this over: its API Gateway request ID joins the two functions' log lines.
        if (demand.data.correlationId !== undefined) logger.setCorrelationId(demand.data.correlationId);
        tracing.annotate('connector', `${family}/${connectorId}`);
        try {
          const started = deps.clock.now();
          const token = await refreshDemanded(deps, { family, connectorId, scopeKey });
          // Not refreshed: another holder had stored a fresh token already, or holds the lease now.
          const refreshed = token !== undefined && token.issuedAt >= started;
          logger.info('demanded refresh finished', { refreshed });
          return { refreshed };
        } catch (error) {
          // A refused or failed refresh is the connector's health (recorded, alarmed on), not the function failing.
          if (!(error instanceof VendorError)) throw error;
          logger.warn('demanded refresh failed', { error: error.code, upstreamError: error.upstreamError });
          return { refreshed: false, error: error.code };
        }
      }
      const changed = secretChangedEvent.safeParse(event);
      const sync = syncEvent.safeParse(event);
      const ref = sync.success
        ? sync.data.sync
        : changed.success
          ? refFromSecretName(config.secretPrefix, secretNameOf(changed.data.detail.requestParameters.secretId))
          : undefined;
      if (sync.success || changed.success) {
        if (ref === undefined) return { synced: false };
        logger.appendKeys({ connector: `${ref.family}/${ref.connectorId}` });
        const outcome = await syncConnector(deps, ref);
        logger.info('connector synced', { outcome });
        return { synced: true, outcome };
      }
      const reconcile = reconcileEvent.safeParse(event);
      if (reconcile.success) {
        // `full`: every connector, changed or not (a new deployment, and a daily repair of anything missed).
        const since = reconcile.data.reconcile.full === true ? 0 : deps.clock.now() - config.reconcileWindowMs;
        const report = await reconcileConnectors(deps, since);
        logger.info('connectors reconciled', { ...report });
        return report;
      }
      return rotateConnectors(deps, { budgetMs: config.rotateBudgetMs, idleRefreshMs: config.idleRefreshMs });
    });
}
