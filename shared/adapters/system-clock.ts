import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from '../ports/clock.ts';

/** The machine's clock. */
export const systemClock: Clock = { now: Date.now, sleep: (ms) => sleep(ms), random: Math.random };
