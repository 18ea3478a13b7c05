/**
 * The token vendor as a CDK library: import the construct into your own app (README "Deploying it into your own
 * CDK app").
 *
 * @example
 * ```ts
 * import { TokenVendor } from '<path to this repository>/infra/index.ts';
 *
 * const vendor = new TokenVendor(stack, 'TokenVendor', { vpc, allowPrivateNetworks: true });
 * vendor.grantVend(workerRole, 'client-credentials', 'crm');
 * ```
 * @module
 */
export {
  GATEWAY_ERRORS,
  STAGE_NAME,
  TokenVendor,
  type TokenVendorLogLevel,
  type TokenVendorProps,
  TokenVendorPropsError,
  type TokenVendorThrottling,
  type TokenVendorTuning,
} from './token-vendor.ts';
export { TokenVendorFunction, type TokenVendorFunctionProps } from './token-vendor-function.ts';
export { TokenVendorStack, type TokenVendorStackProps } from './token-vendor-stack.ts';
