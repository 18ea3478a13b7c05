import { tokenFunction } from './lambda/entry.ts';

export const handler = tokenFunction('jwt-bearer', process.env);
