import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../functions/lambda/config.ts';

describe('Function: loadConfig', () => {
  it('applies the CONTRACT defaults to an empty environment', () => {
    // Act
    const config = loadConfig({});

    // Assess
    expect(config).toMatchObject({
      tableName: 'token-vendor-tokens',
      connectorsDir: undefined,
      secretPrefix: 'token-vendor',
      forcedRefreshSpacingMs: 5_000,
      defaultMinTtlSeconds: 60,
    });
  });

  it('keeps the default timings consistent: an attempt fits the deadline, the deadline fits the lease', () => {
    // Act
    const config = loadConfig({});

    // Assess
    expect(config.attemptTimeoutMs).toBeGreaterThan(0);
    expect(config.attemptTimeoutMs).toBeLessThanOrEqual(config.fetchDeadlineMs);
    expect(config.fetchDeadlineMs).toBeLessThan(config.leaseMs);
    expect(config.maxAttempts).toBeGreaterThanOrEqual(1);
    expect(config.memoryStalenessMs).toBeGreaterThan(0);
    expect(config.waitMs).toBeGreaterThan(0);
  });

  it('reads every setting given', () => {
    // Act
    const config = loadConfig({
      TOKEN_VENDOR_TABLE: 'tokens-prod',
      TOKEN_VENDOR_CONNECTORS_DIR: '/srv/connectors',
      TOKEN_VENDOR_SECRET_PREFIX: 'vendor/prod',
      TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0',
      TOKEN_VENDOR_MEMORY_STALENESS_SECONDS: '2.5',
      TOKEN_VENDOR_SECRET_MAX_AGE_SECONDS: '45',
      TOKEN_VENDOR_LEASE_SECONDS: '30',
      TOKEN_VENDOR_WAIT_SECONDS: '25',
      TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS: '4',
      TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '20',
      TOKEN_VENDOR_MAX_ATTEMPTS: '2',
      TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS: '120',
      TOKEN_VENDOR_ALLOW_PRIVATE_NETWORKS: 'true',
      TOKEN_VENDOR_ROTATE_BUDGET_SECONDS: '240',
      TOKEN_VENDOR_IDLE_REFRESH_SECONDS: '3600',
      TOKEN_VENDOR_RECONCILE_WINDOW_SECONDS: '900',
      TOKEN_VENDOR_REFRESH_MARGIN_SHARE: '0.1',
    });

    // Assess
    expect(config).toEqual({
      tableName: 'tokens-prod',
      connectorsDir: '/srv/connectors',
      secretPrefix: 'vendor/prod',
      forcedRefreshSpacingMs: 0,
      memoryStalenessMs: 2_500,
      secretMaxAgeSeconds: 45,
      leaseMs: 30_000,
      waitMs: 25_000,
      attemptTimeoutMs: 4_000,
      fetchDeadlineMs: 20_000,
      maxAttempts: 2,
      defaultMinTtlSeconds: 120,
      allowPrivateNetworks: true,
      rotateBudgetMs: 240_000,
      refreshAhead: 'background',
      idleRefreshMs: 3_600_000,
      reconcileWindowMs: 900_000,
      refreshMarginShare: 0.1,
    });
  });

  it('ignores unrelated variables', () => {
    // Act
    const config = loadConfig({ PATH: '/usr/bin', AWS_REGION: 'eu-west-1', TOKEN_VENDOR_TABLE: 't' });

    // Assess
    expect(config.tableName).toBe('t');
  });

  it.each([
    ['TOKEN_VENDOR_FORCED_REFRESH_SECONDS', 'five'],
    ['TOKEN_VENDOR_LEASE_SECONDS', '-1'],
    ['TOKEN_VENDOR_WAIT_SECONDS', ''],
    ['TOKEN_VENDOR_ATTEMPT_TIMEOUT_SECONDS', '8s'],
    ['TOKEN_VENDOR_DEFAULT_MIN_TTL_SECONDS', '1e3'],
    ['TOKEN_VENDOR_TABLE', ''],
    ['TOKEN_VENDOR_SECRET_PREFIX', 'bad prefix!'],
    ['TOKEN_VENDOR_CONNECTORS_DIR', ''],
    ['TOKEN_VENDOR_MAX_ATTEMPTS', '0'],
    ['TOKEN_VENDOR_MAX_ATTEMPTS', 'many'],
  ])('refuses %s=%j and names it', (name, value) => {
    // Act
    const load = () => loadConfig({ [name]: value });

    // Assess
    expect(load).toThrow(new RegExp(`^Invalid setting ${name}:`));
  });
});
