/**
 * The token vendor's client library for workloads.
 *
 * @example
 * ```ts
 * import { TokenVendorClient, TokenVendorError } from '@token-vendor/client';
 *
 * const vendor = new TokenVendorClient({ endpoint: 'https://abc123.execute-api.eu-west-1.amazonaws.com/v1' });
 * const { name, value } = await vendor.authorizationHeader('client-credentials', 'crm');
 * ```
 * @module
 */
export type { Family } from '../shared/core/identifiers.ts';
export {
  CONTRACT_ERROR_CODES,
  TokenVendorError,
  type TokenVendorErrorCode,
  type TokenVendorErrorOptions,
} from './errors.ts';
export {
  type Credentials,
  type TokenOptions,
  type TokenResponse,
  TokenVendorClient,
  type TokenVendorClientOptions,
} from './token-vendor-client.ts';
