import { tokenFunction } from './lambda/entry.ts';

export const handler = tokenFunction('client-credentials', process.env);
