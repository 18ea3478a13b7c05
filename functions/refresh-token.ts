import { createTokenHandler } from '../shared/api.ts';
import { loadConfig } from '../shared/config.ts';
import { createLogger } from '../shared/logger.ts';
import { createVendDeps } from '../shared/runtime.ts';

const logger = createLogger();
export const handler = createTokenHandler('refresh-token', createVendDeps(loadConfig(process.env), logger), logger);
