import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/logger.ts';
import { rotateConnectors } from '../shared/rotate.ts';
import { createVendDeps } from '../shared/runtime.ts';

const logger = createLogger();
const deps = createVendDeps(loadConfig(process.env), logger);

/** Invoked by the schedule (EventBridge Scheduler in AWS, a timer in local mode). */
export const handler = middy()
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .handler(async () => rotateConnectors(deps));
