import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { createKmsClient } from '../../shared/adapters/aws-clients.ts';
import { KmsSignerAdapter } from '../../shared/adapters/kms-signer.ts';
import { startHarness } from '../../test/support/harness.ts';
import { startKmsServer } from '../../test/support/kms-server.ts';
import { startOidcServer } from '../../test/support/oidc.ts';
import { BENCH_CLIENT, type BenchOptions, mediansOf, ms, percentile, type Row, withCleanup } from '../support.ts';

const EC_ARN = 'arn:aws:kms:us-east-1:111122223333:key/5a1e2d3c-4b5a-4697-8877-665544332211';
const RSA_ARN = 'arn:aws:kms:us-east-1:111122223333:key/6a1e2d3c-4b5a-4697-8877-665544332211';
const ROUNDS = 150;
const WARMUP = 15;
const SCENARIO = '12 signed assertions';

const jwkOf = (key: KeyObject): JWK =>
  (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'jwk' }) as JWK;

/** The variants fetched side by side, round by round: how each client proves itself to the token server. */
const VARIANTS = ['secret', 'kms-es256', 'kms-rs256', 'pem-es256'] as const;
type Variant = (typeof VARIANTS)[number];

/**
 * Scenario 12: what signing an assertion adds to a token fetch. One process, one `oidc-provider`, four
 * client-credentials connectors that differ only in client authentication: a client secret (Basic), and
 * `private_key_jwt` signed by a KMS key (ES256, RS256; the loopback KMS through the real SDK client) or by a PEM key
 * in process (ES256). Each round force-refreshes each of them once, in rotating order, so that all four see the same
 * machine; every forced refresh is one token request.
 */
export async function signedAssertions(options: BenchOptions): Promise<{ rows: Row[]; data: Record<string, unknown> }> {
  return withCleanup(async (defer) => {
    const kms = await startKmsServer();
    defer(() => kms.close());
    const ecPublic = kms.addSigningKey(EC_ARN, 'ECC_NIST_P256');
    const rsaPublic = kms.addSigningKey(RSA_ARN, 'RSA_2048');
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const signed = (client_id: string, key: KeyObject) => ({
      client_id,
      token_endpoint_auth_method: 'private_key_jwt' as const,
      jwks: { keys: [jwkOf(key)] },
      grant_types: ['client_credentials' as const],
      scope: 'read',
    });
    const oidc = await startOidcServer({
      clients: [
        BENCH_CLIENT,
        signed('kms-es256', ecPublic),
        signed('kms-rs256', rsaPublic),
        signed('pem-es256', pem.publicKey),
      ],
    });
    defer(() => oidc.close());
    const harness = await startHarness();
    defer(() => harness.close());
    const client = createKmsClient({
      endpoint: kms.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    });
    defer(() => client.destroy());
    const signer = new KmsSignerAdapter(client);

    const common = {
      grantType: 'client_credentials',
      tokenUrl: oidc.tokenUrl,
      scope: 'read',
      allowedPrincipals: ['*'],
    };
    const documents: Record<Variant, object> = {
      secret: { ...common, clientId: BENCH_CLIENT.client_id, clientSecret: BENCH_CLIENT.client_secret },
      'kms-es256': {
        ...common,
        clientId: 'kms-es256',
        clientAuthentication: 'private_key_jwt',
        signingKey: { kmsKeyId: EC_ARN },
        signingAlgorithm: 'ES256',
      },
      'kms-rs256': {
        ...common,
        clientId: 'kms-rs256',
        clientAuthentication: 'private_key_jwt',
        signingKey: { kmsKeyId: RSA_ARN },
      },
      'pem-es256': {
        ...common,
        clientId: 'pem-es256',
        clientAuthentication: 'private_key_jwt',
        signingKey: { privateKeyPem: pem.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
        signingAlgorithm: 'ES256',
      },
    };
    for (const variant of VARIANTS) await harness.writeConnector('client-credentials', variant, documents[variant]);
    const vendor = harness.vendor({ env: { TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '0' }, kms: signer });
    const fetchOnce = (variant: Variant) => vendor.vend('client-credentials', variant, { force: true });

    const repetitions = [];
    for (let repetition = 0; repetition < options.repetitions; repetition += 1) {
      const samples: Record<Variant, number[]> = { secret: [], 'kms-es256': [], 'kms-rs256': [], 'pem-es256': [] };
      for (let round = 0; round < WARMUP + ROUNDS; round += 1) {
        for (let offset = 0; offset < VARIANTS.length; offset += 1) {
          const variant = VARIANTS[(round + offset) % VARIANTS.length] as Variant;
          const started = performance.now();
          await fetchOnce(variant);
          if (round >= WARMUP) samples[variant].push(performance.now() - started);
        }
      }
      // KMS Sign alone, through the adapter: the part of the difference that is the KMS round trip.
      const signs: number[] = [];
      for (let index = 0; index < ROUNDS; index += 1) {
        const started = performance.now();
        await signer.sign({ keyId: EC_ARN, algorithm: 'ECDSA_SHA_256', message: Uint8Array.of(index) });
        signs.push(performance.now() - started);
      }
      const p = (variant: Variant, q: number) => percentile(samples[variant], q);
      repetitions.push({
        secretP50: p('secret', 50),
        secretP99: p('secret', 99),
        kmsEsP50: p('kms-es256', 50),
        kmsEsP99: p('kms-es256', 99),
        kmsRsP50: p('kms-rs256', 50),
        kmsRsP99: p('kms-rs256', 99),
        pemP50: p('pem-es256', 50),
        pemP99: p('pem-es256', 99),
        addedKmsEsP50: p('kms-es256', 50) - p('secret', 50),
        addedKmsRsP50: p('kms-rs256', 50) - p('secret', 50),
        addedPemP50: p('pem-es256', 50) - p('secret', 50),
        signP50: percentile(signs, 50),
      });
    }
    const m = mediansOf(repetitions);
    const rows: Row[] = [
      {
        scenario: SCENARIO,
        metric: 'fetch with a client secret (Basic) p50 / p99',
        value: `${ms(m.secretP50)} / ${ms(m.secretP99)}`,
      },
      {
        scenario: SCENARIO,
        metric: 'fetch with private_key_jwt, KMS ES256 · KMS RS256 · PEM ES256 in process, p50',
        value: `${ms(m.kmsEsP50)} · ${ms(m.kmsRsP50)} · ${ms(m.pemP50)}`,
      },
      {
        scenario: SCENARIO,
        metric: 'the same, p99',
        value: `${ms(m.kmsEsP99)} · ${ms(m.kmsRsP99)} · ${ms(m.pemP99)}`,
      },
      {
        scenario: SCENARIO,
        metric: 'added over the secret, p50: KMS ES256 · KMS RS256 · PEM ES256',
        value: `+${ms(m.addedKmsEsP50)} · +${ms(m.addedKmsRsP50)} · +${ms(m.addedPemP50)}`,
      },
      { scenario: SCENARIO, metric: 'one KMS Sign (loopback KMS, real SDK client) p50', value: ms(m.signP50) },
    ];
    return { rows, data: { repetitions } };
  });
}
