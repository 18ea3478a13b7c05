import type { NetworkPolicy } from '../shared/domain/network-policy.ts';

/**
 * Local mode's token URLs: loopback (and `http://` to it) and private ranges, since the token servers a developer
 * runs are there (CONTRACT §4). Only local mode's composition passes this; nothing infers it from the environment.
 */
export const LOCAL_NETWORK: NetworkPolicy = { allowLoopback: true, allowPrivate: true };
