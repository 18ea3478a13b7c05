import { createLogger } from '../shared/adapters/powertools-logger.ts';
import { createMetrics, powertoolsSink } from '../shared/adapters/powertools-metrics.ts';
import { createTokenHandler } from './lambda/api.ts';
import { createRuntime } from './lambda/composition.ts';
import { loadConfig } from './lambda/config.ts';

const logger = createLogger();
const metrics = createMetrics(process.env.POWERTOOLS_METRICS_NAMESPACE);
const deps = createRuntime(loadConfig(process.env), logger, { metrics: powertoolsSink(metrics) });
export const handler = createTokenHandler('refresh-token', deps, logger, metrics);
