import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const lock = JSON.parse(readFileSync(new URL('../../package-lock.json', import.meta.url), 'utf8')) as {
  packages: Record<string, { version?: string }>;
};

/** Every version of `name` the lock file installs, wherever it sits in node_modules. */
const versionsOf = (name: string) =>
  Object.entries(lock.packages)
    .filter(([path]) => path === `node_modules/${name}` || path.endsWith(`/node_modules/${name}`))
    .map(([, entry]) => entry.version);

describe('Dependencies: what the function bundles carry', () => {
  it('installs one copy of Powertools commons, shared by logger, metrics and parameters', () => {
    // Each Powertools package pins its commons exactly; mixed releases would bundle two copies.
    expect(versionsOf('@aws-lambda-powertools/commons')).toHaveLength(1);
  });
});
