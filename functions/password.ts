import { createTokenHandler } from '../shared/api.ts';
import { loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/logger.ts';
import { createMetrics, powertoolsSink } from '../shared/metrics.ts';
import { createVendDeps } from '../shared/runtime.ts';

const logger = createLogger();
const metrics = createMetrics(process.env.POWERTOOLS_METRICS_NAMESPACE);
const deps = createVendDeps(loadConfig(process.env), logger, { metrics: powertoolsSink(metrics) });
export const handler = createTokenHandler('password', deps, logger, metrics);
