import { tokenFunction } from './lambda/entry.ts';

export const handler = tokenFunction('refresh-token', process.env);
