import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTRACT_ERROR_CODES } from '../../client/errors.ts';
import { toVendRequest } from '../../functions/lambda/api.ts';
import { buildOpenApiDocument } from '../../openapi/document.ts';
import { systemClock } from '../../shared/adapters/system-clock.ts';
import { VendorError } from '../../shared/core/errors.ts';
import { CONNECTOR_ID, FAMILIES } from '../../shared/core/identifiers.ts';
import { parseConnector } from '../../shared/domain/connector.ts';
import type { ConnectorSource } from '../../shared/ports/connector-store.ts';
import { ConnectorDocuments } from '../../shared/use-cases/connector-documents.ts';
import { TokenMemory } from '../../shared/use-cases/token-memory.ts';
import { type VendDeps, vendToken } from '../../shared/use-cases/vend.ts';
import { CapturedLog } from '../support/harness.ts';
import {
  type LocalFixture,
  type LocalMode,
  prepareLocalFixture,
  signedFetch,
  startLocalMode,
} from '../support/local-mode.ts';
import { type OidcServer, startOidcServer } from '../support/oidc.ts';
import { type ScriptedServer, startScriptedServer, tokenAnswer } from '../support/scripted-server.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
// ajv-formats is CommonJS with a default export; under NodeNext its namespace is what gets imported.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

type Json = Record<string, unknown>;

/** The document with every `$ref` replaced by what it points to (siblings kept); it has no cycles. */
function dereference(node: unknown, document: Json): unknown {
  if (Array.isArray(node)) return node.map((item) => dereference(item, document));
  if (typeof node !== 'object' || node === null) return node;
  const { $ref, ...rest } = node as Json;
  const resolved = Object.fromEntries(Object.entries(rest).map(([key, value]) => [key, dereference(value, document)]));
  if (typeof $ref !== 'string') return resolved;
  const target = $ref
    .slice(2)
    .split('/')
    .reduce<unknown>((at, key) => (at as Json)[key], document);
  return { ...(dereference(target, document) as Json), ...resolved };
}

function newAjv(): Ajv2020 {
  // strictRequired would refuse JSON Schema's usual `if`/`then: { required }` for the credentials each grant needs.
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
  addFormats(ajv);
  return ajv;
}

describe('OpenAPI document (openapi/openapi.json)', () => {
  let document: Json;
  let resolved: Json;

  beforeAll(async () => {
    document = JSON.parse(await readFile(resolve(ROOT, 'openapi', 'openapi.json'), 'utf8')) as Json;
    resolved = dereference(document, document) as Json;
  });

  const operation = (path: string, method: 'get' | 'post') =>
    ((resolved.paths as Record<string, Json>)[path]?.[method] ?? {}) as {
      parameters: { name: string; schema: Json }[];
      responses: Record<string, Json>;
    };

  describe('Document', () => {
    it('is a valid OpenAPI 3.1 document', async () => {
      // Act
      const result = await new Validator().validate(structuredClone(document));

      // Assess
      expect(result.errors).toBeUndefined();
      expect(result.valid).toBe(true);
      expect(document.openapi).toBe('3.1.0');
    });

    it('is what the generator builds from the service definitions (`npm run openapi` rewrites it)', async () => {
      // Prepare
      const { version } = JSON.parse(await readFile(resolve(ROOT, 'package.json'), 'utf8')) as { version: string };

      // Act
      const built = buildOpenApiDocument(version);

      // Assess
      expect(document).toEqual(built);
    });

    it('holds only schemas that compile as strict JSON Schema 2020-12', () => {
      // Prepare
      const schemas = (resolved.components as { schemas: Record<string, Json> }).schemas;

      // Act
      const compiled = Object.entries(schemas).map(([name, schema]) => [name, typeof newAjv().compile(schema)]);

      // Assess
      expect(Object.fromEntries(compiled)).toEqual({
        Token: 'function',
        Error: 'function',
        GatewayError: 'function',
        ConnectorDocument: 'function',
      });
    });

    it("has both routes of every family, each signed with SigV4 and taking the service's connector ID pattern", () => {
      // Act
      const paths = Object.keys(document.paths as Json).sort();

      // Assess
      expect(paths).toEqual(
        Object.keys(FAMILIES)
          .flatMap((family) => [`/tokens/${family}/{connectorId}`, `/tokens/${family}/{connectorId}/refresh`])
          .sort(),
      );
      expect(document.security).toEqual([{ sigv4: [] }]);
      for (const path of paths) {
        const parameter = operation(path, path.endsWith('/refresh') ? 'post' : 'get').parameters.find(
          (candidate) => candidate.name === 'connectorId',
        );
        expect(parameter?.schema.pattern).toBe(CONNECTOR_ID.source);
      }
    });

    it('documents every contract error code under the status the service sends it with', () => {
      // Prepare
      const expected = new Map<string, string[]>();
      for (const code of CONTRACT_ERROR_CODES) {
        const status = String(new VendorError(code, '').status);
        expected.set(status, [...(expected.get(status) ?? []), code]);
      }
      const refresh = operation('/tokens/refresh-token/{connectorId}/refresh', 'post');

      // Act
      const documented = new Map<string, string[]>();
      for (const [status, response] of Object.entries(refresh.responses)) {
        // The vendor's body is Error narrowed to this status's codes, alone or beside API Gateway's own body.
        const schema = (response.content as Record<string, { schema: Json }> | undefined)?.['application/json']?.schema;
        const vendor = ((schema?.oneOf as Json[] | undefined)?.[0] ?? schema) as { allOf?: Json[] } | undefined;
        const narrowed = vendor?.allOf?.[1]?.properties as { error?: { enum: string[] } } | undefined;
        if (narrowed?.error !== undefined) documented.set(status, narrowed.error.enum);
      }

      // Assess
      expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(expected));
      const { schemas } = resolved.components as { schemas: Record<string, { properties: Json }> };
      const errorEnum = schemas.Error?.properties.error as { enum: string[] } | undefined;
      expect(errorEnum?.enum).toEqual([...CONTRACT_ERROR_CODES]);
    });
  });

  describe('Parameters', () => {
    // The service's own validation, in-process: a request it finds well-formed gets to the connector lookup,
    // which finds nothing (access_denied); a malformed one is refused first (invalid_request).
    const nowhere = { read: async () => undefined } as unknown as ConnectorSource;
    const deps = {
      documents: new ConnectorDocuments(nowhere, new CapturedLog()),
      clock: systemClock,
      memory: new TokenMemory(),
      // Nothing cached: every well-formed request goes on to the (missing) connector document.
      store: { readEntry: async () => ({}) },
      settings: { defaultMinTtlSeconds: 60, memoryStalenessMs: 10_000, network: { allowLoopback: false } },
    } as unknown as VendDeps;
    const serviceAccepts = async (connectorId: string, query: Record<string, string>) => {
      const event = {
        httpMethod: 'GET',
        resource: '/tokens/client-credentials/{connectorId}',
        pathParameters: { connectorId },
        queryStringParameters: Object.keys(query).length === 0 ? null : query,
        multiValueQueryStringParameters:
          Object.keys(query).length === 0
            ? null
            : Object.fromEntries(Object.entries(query).map(([name, value]) => [name, [value]])),
        requestContext: { identity: { userArn: 'arn:aws:iam::111122223333:user/x', accountId: '111122223333' } },
      };
      try {
        await vendToken(deps, toVendRequest('client-credentials', event));
        throw new Error('expected a refusal');
      } catch (error) {
        if (error instanceof VendorError && error.code === 'access_denied') return true;
        if (error instanceof VendorError && error.code === 'invalid_request') return false;
        throw error;
      }
    };
    let documentAccepts: (connectorId: string, query: Record<string, string>) => boolean;

    beforeAll(() => {
      const validators = new Map<string, ValidateFunction>(
        operation('/tokens/client-credentials/{connectorId}', 'get').parameters.map((parameter) => [
          parameter.name,
          newAjv().compile(parameter.schema),
        ]),
      );
      documentAccepts = (connectorId, query) =>
        (validators.get('connectorId')?.(connectorId) ?? false) &&
        Object.entries(query).every(([name, value]) => validators.get(name)?.(value) ?? false);
    });

    const from = (chars: string, maxLength: number) =>
      fc.string({ unit: fc.constantFrom(...chars.split('')), maxLength });

    const agree = async (connectorId: string, query: Record<string, string>): Promise<void> => {
      const service = await serviceAccepts(connectorId, query);
      expect(documentAccepts(connectorId, query), JSON.stringify({ connectorId, query })).toBe(service);
    };

    it('accept exactly the connector IDs the service accepts', async () => {
      // Prepare
      const connectorIds = fc.oneof(
        from('aZ09._-/ %é"\\\u0000\n', 12),
        fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/),
        fc.stringMatching(/^[A-Za-z0-9._-]{126,130}$/),
      );

      // Act / Assess
      await fc.assert(
        fc.asyncProperty(connectorIds, (connectorId) => agree(connectorId, {})),
        { numRuns: 300 },
      );
    });

    it('accept exactly the scopes the service accepts', async () => {
      // Prepare
      const token = from('rw:!~#[]', 4);
      const scopes = fc.oneof(
        from('rw: !~#"\\\u007fé\t', 12),
        fc
          .tuple(fc.array(token, { minLength: 1, maxLength: 4 }), fc.constantFrom(' ', '  '))
          .map(([tokens, separator]) => tokens.join(separator)),
      );

      // Act / Assess
      await fc.assert(
        fc.asyncProperty(scopes, (scope) => agree('crm', { scope })),
        { numRuns: 300 },
      );
    });

    it('accept exactly the minTtl values the service accepts', async () => {
      // Prepare
      const minTtls = fc.oneof(
        from('09-+. e', 11),
        fc.stringMatching(/^\d{1,11}$/),
        fc.constantFrom('0', '60', '999999999', '1000000000', ''),
      );

      // Act / Assess
      await fc.assert(
        fc.asyncProperty(minTtls, (minTtl) => agree('crm', { minTtl })),
        { numRuns: 300 },
      );
    });

    it('bound scope where the service bounds the query string', async () => {
      // Prepare
      const longest = `${'r '.repeat(2045)}r`;

      // Act / Assess
      expect(longest.length + 'scope'.length).toBe(4096);
      expect(documentAccepts('crm', { scope: longest })).toBe(true);
      expect(await serviceAccepts('crm', { scope: longest })).toBe(true);
      expect(documentAccepts('crm', { scope: `${longest} ` })).toBe(false);
      expect(await serviceAccepts('crm', { scope: `${longest} ` })).toBe(false);
    });
  });

  describe('Schema: ConnectorDocument', () => {
    it('agrees with parseConnector on what makes a document valid', () => {
      // Prepare
      const validate = newAjv().compile(
        (resolved.components as { schemas: Record<string, Json> }).schemas.ConnectorDocument as Json,
      );
      const base = {
        grantType: 'client_credentials',
        tokenUrl: 'https://idp.example/token',
        clientId: 'c',
        clientSecret: 's',
        allowedPrincipals: ['111122223333'],
      };
      const samples: object[] = [
        base,
        { ...base, scope: 'read write', prewarm: true, additionalHeaders: { 'X-Id': '{{clientId}}' } },
        { ...base, grantType: 'password' },
        { ...base, grantType: 'password', username: 'u', password: 'p' },
        { ...base, grantType: 'refresh_token' },
        { ...base, grantType: 'refresh_token', refreshToken: 'r' },
        { ...base, clientSecrett: 'typo' },
        { ...base, allowedPrincipals: [] },
        { ...base, defaultExpiresIn: 0 },
        { ...base, defaultExpiresIn: 1.5 },
        { ...base, tokenUrl: 'not a url' },
        { ...base, clientAuthentication: 'jwt' },
        { ...base, headerAuthKey: 'Bad Header' },
      ];

      // Act
      const verdicts = samples.map((sample) => {
        let service = true;
        try {
          parseConnector({ family: 'client-credentials', connectorId: 'x' }, JSON.stringify(sample));
        } catch {
          service = false;
        }
        return { sample, service, schema: validate(sample) };
      });

      // Assess
      for (const verdict of verdicts) expect(verdict.schema, JSON.stringify(verdict.sample)).toBe(verdict.service);
      expect(verdicts.filter((verdict) => verdict.service)).toHaveLength(4);
    });
  });

  describe('Live answers of local mode', () => {
    const CALLER = {
      accessKeyId: 'AKIAOPENAPI',
      secretAccessKey: 'openapi-signing-key',
      arn: 'arn:aws:iam::111122223333:user/openapi',
    };
    const STRANGER = {
      accessKeyId: 'AKIAOPENAPISTRANGER',
      secretAccessKey: 'stranger-signing-key',
      arn: 'arn:aws:iam::999988887777:user/stranger',
    };
    let oidc: OidcServer;
    let scripted: ScriptedServer;
    let fixture: LocalFixture;
    let local: LocalMode;
    const ajv = newAjv();

    /** Checks an answer against the document: a documented status, its required headers, its body schema. */
    async function conforms(path: string, method: 'get' | 'post', response: Response): Promise<string[]> {
      const problems: string[] = [];
      const documented = operation(path, method).responses[String(response.status)];
      if (documented === undefined) return [`status ${response.status} is not documented for ${method} ${path}`];
      for (const [name, header] of Object.entries((documented.headers ?? {}) as Record<string, Json>)) {
        const value = response.headers.get(name);
        if (value === null) {
          if (header.required === true) problems.push(`header ${name} is missing`);
          continue;
        }
        const schema = header.schema as Json;
        const typed = schema.type === 'integer' && /^\d+$/.test(value) ? Number(value) : value;
        if (!ajv.validate(schema, typed)) problems.push(`header ${name}: ${ajv.errorsText()}`);
      }
      const content = (documented.content as Record<string, { schema: Json }>)['application/json'];
      if (!(response.headers.get('content-type') ?? '').startsWith('application/json')) {
        problems.push(`content-type ${response.headers.get('content-type')}`);
      }
      if (content !== undefined && !ajv.validate(content.schema, await response.json())) {
        problems.push(`body: ${ajv.errorsText()}`);
      }
      return problems;
    }

    beforeAll(async () => {
      oidc = await startOidcServer({
        clients: [
          {
            client_id: 'openapi-cc',
            client_secret: 'openapi-secret',
            token_endpoint_auth_method: 'client_secret_basic',
            grant_types: ['client_credentials'],
            scope: 'read write',
          },
        ],
      });
      scripted = await startScriptedServer((request) =>
        request.form.get('grant_type') === 'password'
          ? tokenAnswer({ scope: undefined })
          : { status: 400, body: { error: 'invalid_client', error_description: 'unknown client' } },
      );
      const closedPort = await new Promise<number>((done) => {
        const server = createServer().listen(0, '127.0.0.1', () => {
          const { port } = server.address() as { port: number };
          server.close(() => done(port));
        });
      });
      const allowed = { allowedPrincipals: [CALLER.arn] };
      const cc = { grantType: 'client_credentials', clientId: 'openapi-cc', clientSecret: 'openapi-secret' };
      fixture = await prepareLocalFixture(
        {
          'client-credentials/crm': { ...cc, tokenUrl: oidc.tokenUrl, scope: 'read write', ...allowed },
          'client-credentials/broken': { ...cc, tokenUrl: oidc.tokenUrl, clientSecrett: 'typo', ...allowed },
          'client-credentials/rejected': { ...cc, tokenUrl: scripted.url, clientAuthentication: 'basic', ...allowed },
          'client-credentials/down': { ...cc, tokenUrl: `http://127.0.0.1:${closedPort}/token`, ...allowed },
          'password/erp': {
            grantType: 'password',
            tokenUrl: scripted.url,
            clientId: 'erp',
            clientSecret: 'erp-secret',
            username: 'u',
            password: 'p',
            headerAuthKey: 'X-Erp-Token',
            ...allowed,
          },
        },
        { CALLER, STRANGER },
      );
      local = await startLocalMode({ ...fixture.env, TOKEN_VENDOR_MAX_ATTEMPTS: '1' });
    });
    afterAll(async () => {
      await local?.stop();
      await oidc?.close();
      await scripted?.close();
      await fixture?.cleanup();
    });

    const cases: {
      readonly name: string;
      readonly path: string;
      readonly query?: string;
      readonly id: string;
      readonly method?: 'get' | 'post';
      readonly identity?: 'stranger' | 'unsigned';
      readonly status: number;
    }[] = [
      {
        name: 'a token',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'crm',
        query: '?minTtl=30&scope=read',
        status: 200,
      },
      {
        name: 'a password-grant token with its own header',
        path: '/tokens/password/{connectorId}',
        id: 'erp',
        status: 200,
      },
      {
        name: 'a forced refresh',
        path: '/tokens/client-credentials/{connectorId}/refresh',
        id: 'crm',
        method: 'post',
        status: 200,
      },
      {
        name: 'a forced refresh too soon',
        path: '/tokens/client-credentials/{connectorId}/refresh',
        id: 'crm',
        method: 'post',
        status: 429,
      },
      {
        name: 'a scope outside the connector',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'crm',
        query: '?scope=admin',
        status: 400,
      },
      {
        name: 'a malformed minTtl',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'crm',
        query: '?minTtl=soon',
        status: 400,
      },
      {
        name: 'a caller not allowed',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'crm',
        identity: 'stranger',
        status: 403,
      },
      {
        name: 'an unsigned request',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'crm',
        identity: 'unsigned',
        status: 403,
      },
      { name: 'an unknown connector', path: '/tokens/password/{connectorId}', id: 'nothing', status: 403 },
      {
        name: 'an invalid connector document',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'broken',
        status: 500,
      },
      {
        name: 'a grant the token server refuses',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'rejected',
        status: 502,
      },
      {
        name: 'a token server that is down',
        path: '/tokens/client-credentials/{connectorId}',
        id: 'down',
        status: 503,
      },
    ];

    // In order: the 429 needs the forced refresh before it.
    it.each(cases)('match the document: $name ($status)', async (testCase) => {
      // Prepare
      const method = testCase.method ?? 'get';
      const url = `${local.url}${testCase.path.replace('{connectorId}', testCase.id)}${testCase.query ?? ''}`;

      // Act
      const response =
        testCase.identity === 'unsigned'
          ? await fetch(url)
          : await signedFetch(url, testCase.identity === 'stranger' ? STRANGER : CALLER, {
              method: method === 'get' ? 'GET' : 'POST',
            });

      // Assess
      expect(response.status).toBe(testCase.status);
      expect(await conforms(testCase.path, method, response)).toEqual([]);
    });
  });
});
