import { z } from 'zod';
import { DEFAULT_TABLE_NAME, SECRET_PREFIX } from '../shared/core/settings.ts';
import { DEFAULT_STATE_DIR } from './instance.ts';

/** Local mode's settings (CONTRACT §4), from its environment. */
const settingsSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  TOKEN_VENDOR_CONNECTORS_DIR: z.string().min(1).optional(),
  TOKEN_VENDOR_SECRET_PREFIX: z.string().regex(SECRET_PREFIX).optional(),
  TOKEN_VENDOR_LOCAL_PRINCIPALS: z.string().min(1).optional(),
  TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: z.coerce.number().min(0).default(60),
  TOKEN_VENDOR_STATE_DIR: z.string().min(1).default(DEFAULT_STATE_DIR),
  TOKEN_VENDOR_LAMBDA: z.enum(['0', '1']).default('0'),
  AWS_REGION: z.string().min(1).default('us-east-1'),
  AWS_ENDPOINT_URL_DYNAMODB: z.string().url().optional(),
  AWS_ENDPOINT_URL_SECRETS_MANAGER: z.string().url().optional(),
  /** The SDK's own variable: a KMS-compatible endpoint for connectors that sign with `signingKey.kmsKeyId`. */
  AWS_ENDPOINT_URL_KMS: z.string().url().optional(),
  TOKEN_VENDOR_TABLE: z.string().min(1).default(DEFAULT_TABLE_NAME),
  TOKEN_VENDOR_DEMO: z.enum(['0', '1']).optional(),
});

/** What each setting must be, said without echoing the value (zod's own wording names types, not settings). */
const SETTING_RULES: Readonly<Record<string, string>> = {
  PORT: 'must be a port number from 0 to 65535 (0: any free port)',
  TOKEN_VENDOR_SECRET_PREFIX: 'must be a secret name prefix: letters, digits and _+=.@- in segments separated by /',
  TOKEN_VENDOR_ROTATE_INTERVAL_SECONDS: 'must be a number of seconds, 0 or more (0 turns the schedule off)',
  TOKEN_VENDOR_LAMBDA: 'must be 0 or 1',
  TOKEN_VENDOR_DEMO: 'must be 0 or 1',
  AWS_ENDPOINT_URL_DYNAMODB: 'must be a URL',
  AWS_ENDPOINT_URL_SECRETS_MANAGER: 'must be a URL',
  AWS_ENDPOINT_URL_KMS: 'must be a URL',
};

/** The settings from the environment, or one line per setting that is wrong. */
export type LocalSettings = z.infer<typeof settingsSchema>;

export function parseSettings(env: Readonly<Record<string, string | undefined>>): LocalSettings {
  const parsed = settingsSchema.safeParse(env);
  if (parsed.success) return parsed.data;
  const names = [...new Set(parsed.error.issues.map((issue) => String(issue.path[0] ?? 'settings')))];
  throw new Error(names.map((name) => `${name} ${SETTING_RULES[name] ?? 'must not be empty'}`).join('; '));
}
