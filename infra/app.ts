/**
 * `npx cdk synth` / `npx cdk deploy` entry (cdk.json). Settings come from context, e.g.
 * `npx cdk deploy -c trustedAccountIds=111111111111,222222222222 -c organizationId=o-a1b2c3d4e5`;
 * see stackPropsFromContext for every key.
 */
import { createTokenVendorApp } from './token-vendor-stack.ts';

createTokenVendorApp();
