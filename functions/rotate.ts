import { rotateFunction } from './lambda/entry.ts';

/** Invoked by the schedule (EventBridge Scheduler), and asynchronously by vends whose token is due. */
export const handler = rotateFunction(process.env);
