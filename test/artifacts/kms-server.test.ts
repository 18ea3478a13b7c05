import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { KmsKeyringNode } from '@aws-crypto/client-node';
import { buildEncrypt } from '@aws-crypto/encrypt-node';
import { AlgorithmSuiteIdentifier, CommitmentPolicy } from '@aws-crypto/material-management-node';
import {
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  IncorrectKeyException,
  InvalidCiphertextException,
  KMS,
  NotFoundException,
} from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionSdkSealer, SealError } from '../../shared/adapters/encryption-sdk-sealer.ts';
import { type KmsServer, startKmsServer } from '../support/kms-server.ts';

const KEY_ID = '0b9d4c3e-2f1a-4e5d-8c7b-6a5f4e3d2c1b';
const KEY_ARN = `arn:aws:kms:eu-west-1:444455556666:key/${KEY_ID}`;
const OTHER_ARN = 'arn:aws:kms:eu-west-1:444455556666:key/7e6d5c4b-3a29-4817-a6f5-e4d3c2b1a098';
const CONTEXT = { 'token-vendor:item': 't#password/a#', 'token-vendor:field': 'accessToken' };

/** The exception a call failed with, or a failed expectation when it succeeded. */
async function failure(call: Promise<unknown>): Promise<Error & { $metadata?: { httpStatusCode?: number } }> {
  try {
    await call;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail');
}

describe('Loopback KMS (test/support/kms-server.ts) under the real KMS client', () => {
  let kms: KmsServer;
  let client: KMS;

  beforeAll(async () => {
    kms = await startKmsServer();
    kms.addKey(KEY_ARN);
    kms.addKey(OTHER_ARN);
    // The aggregated client: the keyring calls its methods (generateDataKey, decrypt).
    client = new KMS({
      endpoint: kms.endpoint,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIAKMSSERVERTEST001', secretAccessKey: 'test' },
      maxAttempts: 1,
    });
  });
  afterAll(async () => {
    client?.destroy();
    await kms?.close();
  });

  it('generates a data key that decrypts under the same context, and names the key by its ARN', async () => {
    // Act
    const generated = await client.send(
      new GenerateDataKeyCommand({ KeyId: KEY_ARN, NumberOfBytes: 32, EncryptionContext: CONTEXT }),
    );
    const byKeySpec = await client.send(new GenerateDataKeyCommand({ KeyId: KEY_ID, KeySpec: 'AES_128' }));
    const decrypted = await client.send(
      new DecryptCommand({ CiphertextBlob: generated.CiphertextBlob, EncryptionContext: CONTEXT, KeyId: KEY_ARN }),
    );

    // Assess
    expect(generated.KeyId).toBe(KEY_ARN);
    expect(generated.Plaintext).toHaveLength(32);
    expect(byKeySpec).toMatchObject({ KeyId: KEY_ARN, Plaintext: expect.any(Uint8Array) });
    expect(byKeySpec.Plaintext).toHaveLength(16);
    expect(Buffer.from(generated.CiphertextBlob ?? []).includes(Buffer.from(KEY_ARN))).toBe(true);
    expect(Buffer.from(generated.CiphertextBlob ?? []).includes(Buffer.from(generated.Plaintext ?? []))).toBe(false);
    expect(decrypted).toMatchObject({ KeyId: KEY_ARN, EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' });
    expect(Buffer.from(decrypted.Plaintext ?? []).equals(Buffer.from(generated.Plaintext ?? []))).toBe(true);
    expect(kms.requests.at(-1)).toMatchObject({
      operation: 'Decrypt',
      keyId: KEY_ARN,
      keyArn: KEY_ARN,
      encryptionContext: CONTEXT,
      accessKeyId: 'AKIAKMSSERVERTEST001',
      error: undefined,
    });
  });

  it('encrypts and decrypts without a KeyId in the Decrypt request', async () => {
    // Act
    const encrypted = await client.send(
      new EncryptCommand({ KeyId: KEY_ID, Plaintext: Buffer.from('hello'), EncryptionContext: CONTEXT }),
    );
    const decrypted = await client.send(
      new DecryptCommand({ CiphertextBlob: encrypted.CiphertextBlob, EncryptionContext: CONTEXT }),
    );

    // Assess
    expect(encrypted.KeyId).toBe(KEY_ARN);
    expect(Buffer.from(decrypted.Plaintext ?? []).toString()).toBe('hello');
  });

  it('refuses as the service does: other context, altered blob, other key, unknown key, neither size', async () => {
    // Prepare
    const { CiphertextBlob } = await client.send(
      new GenerateDataKeyCommand({ KeyId: KEY_ARN, NumberOfBytes: 32, EncryptionContext: CONTEXT }),
    );
    const blob = Buffer.from(CiphertextBlob ?? []);
    const altered = Buffer.from(blob);
    altered[altered.length - 1] = (altered.at(-1) ?? 0) ^ 1;
    const calls = kms.calls.get('Decrypt') ?? 0;

    // Act
    const otherContext = await failure(
      client.send(
        new DecryptCommand({
          CiphertextBlob: blob,
          EncryptionContext: { ...CONTEXT, 'token-vendor:item': 't#password/b#' },
        }),
      ),
    );
    const noContext = await failure(client.send(new DecryptCommand({ CiphertextBlob: blob })));
    const alteredBlob = await failure(
      client.send(new DecryptCommand({ CiphertextBlob: altered, EncryptionContext: CONTEXT })),
    );
    const notABlob = await failure(
      client.send(new DecryptCommand({ CiphertextBlob: Buffer.from('junk'), EncryptionContext: CONTEXT })),
    );
    const otherKey = await failure(
      client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: CONTEXT, KeyId: OTHER_ARN })),
    );
    const unknownKey = await failure(
      client.send(new GenerateDataKeyCommand({ KeyId: `${KEY_ARN.slice(0, -1)}0`, NumberOfBytes: 32 })),
    );
    const unknownDecryptKey = await failure(
      client.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: CONTEXT, KeyId: 'alias/other' })),
    );
    const neitherSize = await failure(client.send(new GenerateDataKeyCommand({ KeyId: KEY_ARN })));

    // Assess
    for (const error of [otherContext, noContext, alteredBlob, notABlob]) {
      expect(error).toBeInstanceOf(InvalidCiphertextException);
      expect(error.$metadata?.httpStatusCode).toBe(400);
    }
    expect(otherKey).toBeInstanceOf(IncorrectKeyException);
    expect(unknownKey).toBeInstanceOf(NotFoundException);
    expect(unknownDecryptKey).toBeInstanceOf(NotFoundException);
    // A common AWS error, not one of KMS's modelled exceptions.
    expect(neitherSize.name).toBe('ValidationException');
    expect((kms.calls.get('Decrypt') ?? 0) - calls).toBe(6);
    expect(kms.requests.at(-4)).toMatchObject({ operation: 'Decrypt', error: 'IncorrectKeyException' });
  });

  it("runs the vendor's sealer through the Encryption SDK's KMS keyring: bound to family, item and field", async () => {
    // Prepare
    const sealer = new EncryptionSdkSealer(
      new KmsKeyringNode({ generatorKeyId: KEY_ARN, clientProvider: () => client }),
    );
    const foreign = new EncryptionSdkSealer(
      new KmsKeyringNode({ generatorKeyId: OTHER_ARN, clientProvider: () => client }),
    );
    const context = { item: 't#password/sealed#', field: 'accessToken' };
    const before = kms.requests.length;

    // Act
    const sealed = await sealer.seal('access-token-value', context);
    const reader = new EncryptionSdkSealer(
      new KmsKeyringNode({ generatorKeyId: KEY_ARN, clientProvider: () => client }),
    );
    const opened = await reader.open(sealed, context);
    const otherItem = await failure(reader.open(sealed, { ...context, item: 't#password/other#' }));
    const otherKey = await failure(foreign.open(sealed, context));

    // Assess
    expect(opened).toBe('access-token-value');
    expect(otherItem).toBeInstanceOf(SealError);
    expect(otherKey).toBeInstanceOf(SealError);
    const seen = kms.requests.slice(before);
    expect(seen.map(({ operation, keyArn, error }) => ({ operation, keyArn, error }))).toEqual([
      { operation: 'GenerateDataKey', keyArn: KEY_ARN, error: undefined },
      { operation: 'Decrypt', keyArn: KEY_ARN, error: undefined },
    ]);
    // KMS sees the family and field; the item is sealed with the value, which is why the other item did not open.
    for (const record of seen) {
      expect(record.encryptionContext).toEqual({
        'token-vendor:family': 'password',
        'token-vendor:field': 'accessToken',
      });
    }
  });

  it('opens many tokens of a family sealed under one data key with one KMS Decrypt per reader', async () => {
    // Prepare: a holder seals ten tokens (one data key, cached), a fresh container reads them all.
    const keyring = () => new KmsKeyringNode({ generatorKeyId: KEY_ARN, clientProvider: () => client });
    const holder = new EncryptionSdkSealer(keyring());
    const items = Array.from({ length: 10 }, (_, index) => ({ item: `t#password/c${index}#`, field: 'accessToken' }));
    const sealed: string[] = [];
    for (const [index, context] of items.entries()) sealed.push(await holder.seal(`token-${index}`, context));
    const before = kms.requests.length;

    // Act
    const reader = new EncryptionSdkSealer(keyring());
    const opened: string[] = [];
    for (const [index, context] of items.entries()) opened.push(await reader.open(sealed[index] as string, context));

    // Assess
    expect(opened).toEqual(items.map((_, index) => `token-${index}`));
    expect(kms.requests.slice(before).map(({ operation }) => operation)).toEqual(['Decrypt']);
  });

  it('still opens a value sealed with its item as encryption context (before family-scoped data keys)', async () => {
    // Prepare: sealed as the vendor sealed until now, through the Encryption SDK itself.
    const keyring = new KmsKeyringNode({ generatorKeyId: KEY_ARN, clientProvider: () => client });
    const { encrypt } = buildEncrypt(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
    const context = { item: 'c#refresh-token/kept', field: 'chainToken' };
    const { result } = await encrypt(keyring, 'made-up.refresh.1234', {
      encryptionContext: { 'token-vendor:item': context.item, 'token-vendor:field': context.field },
      suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
    });
    const old = result.toString('base64');
    const reader = new EncryptionSdkSealer(keyring);

    // Act
    const opened = await reader.open(old, context);
    const elsewhere = await failure(reader.open(old, { ...context, item: 'c#refresh-token/other' }));

    // Assess
    expect(opened).toBe('made-up.refresh.1234');
    expect(elsewhere).toBeInstanceOf(SealError);
  });

  it('answers an unknown operation with UnknownOperationException and closes held connections', async () => {
    // Prepare
    const server = await startKmsServer();
    const answer = await new Promise<{ status: number | undefined; body: string }>((resolve, reject) => {
      const call = request(
        `${server.endpoint}/`,
        {
          method: 'POST',
          agent: false,
          headers: { 'x-amz-target': 'TrentService.ListKeys', 'content-type': 'application/x-amz-json-1.1' },
        },
        (response) => {
          let body = '';
          response.setEncoding('utf8').on('data', (chunk: string) => {
            body += chunk;
          });
          response.on('end', () => resolve({ status: response.statusCode, body }));
        },
      );
      call.on('error', reject);
      call.end('{}');
    });
    // A connection that never sends a request.
    const held = await new Promise<Socket>((resolve) => {
      const socket: Socket = connect(Number(new URL(server.endpoint).port), '127.0.0.1', () => resolve(socket));
    });
    const closed = new Promise<void>((resolve) => held.once('close', () => resolve()));

    // Act
    await server.close();

    // Assess
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toEqual({ __type: 'UnknownOperationException' });
    await closed;
  });
});
