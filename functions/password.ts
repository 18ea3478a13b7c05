import { tokenFunction } from './lambda/entry.ts';

export const handler = tokenFunction('password', process.env);
