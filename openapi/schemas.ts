import { z } from 'zod';
import { CONTRACT_ERROR_CODES } from '../client/errors.ts';
import type { ErrorBody } from '../shared/core/errors.ts';
import type { VendResponse } from '../shared/core/vend-response.ts';

/**
 * The answers' bodies as zod schemas, for `z.toJSONSchema`. The service builds them as TypeScript types
 * ({@link VendResponse}, {@link ErrorBody}); the assertions below make the compiler refuse any drift between the two.
 */
export const tokenSchema = z
  .strictObject({
    access_token: z.string().min(1).meta({ description: 'The access token, exactly as the token server issued it.' }),
    token_type: z.string().min(1).meta({ description: 'From the token server; `Bearer` when it said none.' }),
    expires_in: z
      .int()
      .min(0)
      .meta({ description: 'Seconds the token is still valid, counted when the answer was made.' }),
    expires_at: z.string().meta({ format: 'date-time', description: 'When the token expires (ISO 8601, UTC).' }),
    scope: z
      .string()
      .optional()
      .meta({ description: 'The granted scope, when the token server or the connector names one.' }),
    header: z
      .strictObject({
        name: z.string().min(1).meta({ description: "The connector's `headerAuthKey` (default `Authorization`)." }),
        value: z.string().meta({
          description:
            "The connector's `headerAuthValuePattern` filled in (default `{{token_type}} {{access_token}}`).",
        }),
      })
      .meta({ description: 'The header to send to the downstream API.' }),
  })
  .meta({
    title: 'Token',
    description: 'A token valid for at least `minTtl` seconds. A refresh token is never returned.',
    examples: [
      {
        access_token: 'eyJhbGciOi…',
        token_type: 'Bearer',
        expires_in: 3412,
        expires_at: '2026-11-24T14:00:00.000Z',
        scope: 'read write',
        header: { name: 'Authorization', value: 'Bearer eyJhbGciOi…' },
      },
    ],
  });

export const errorSchema = z
  .strictObject({
    error: z.enum(CONTRACT_ERROR_CODES as [ErrorBody['error'], ...ErrorBody['error'][]]).meta({
      description: 'The stable error code (CONTRACT §3).',
    }),
    error_description: z.string().meta({ description: 'For humans; never carries a secret or a token.' }),
    upstream_error: z
      .string()
      .optional()
      .meta({ description: "The token server's OAuth error code (RFC 6749 §5.2), when there is one." }),
  })
  .meta({ title: 'Error', description: "The vendor's error body." });

/** API Gateway's own answers (refused signature, throttling, timeout), before the vendor runs. */
export const gatewayErrorSchema = z.union([z.object({ message: z.string() }), z.object({ Message: z.string() })]).meta({
  title: 'GatewayError',
  description:
    "API Gateway's own answer, sent before the vendor runs: a missing or refused SigV4 signature or an identity " +
    'policy that does not allow `execute-api:Invoke` (403), stage throttling (429), an integration timeout (504).',
});

type MutuallyAssignable<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type SameShape<A, B> = MutuallyAssignable<A, B> extends true ? MutuallyAssignable<keyof A, keyof B> : false;

// Compile-time only: these fail to type-check when the documented bodies and the service's types part ways.
const _tokenAgrees: SameShape<z.infer<typeof tokenSchema>, VendResponse> = true;
const _headerAgrees: SameShape<z.infer<typeof tokenSchema>['header'], VendResponse['header']> = true;
const _errorAgrees: SameShape<z.infer<typeof errorSchema>, ErrorBody> = true;
