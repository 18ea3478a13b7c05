import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import { createLogger } from '../shared/adapters/powertools-logger.ts';
import { createMetrics, powertoolsSink } from '../shared/adapters/powertools-metrics.ts';
import { rotateConnectors } from '../shared/use-cases/rotate.ts';
import { createRuntime } from './lambda/composition.ts';
import { loadConfig } from './lambda/config.ts';

const logger = createLogger();
const metrics = createMetrics(process.env.POWERTOOLS_METRICS_NAMESPACE);
const config = loadConfig(process.env);
const deps = createRuntime(config, logger, { metrics: powertoolsSink(metrics) });

/** Invoked by the schedule (EventBridge Scheduler in AWS, a timer in local mode). */
export const handler = middy()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics))
  .handler(async () =>
    rotateConnectors(deps, { budgetMs: config.rotateBudgetMs, idleRefreshMs: config.idleRefreshMs }),
  );
