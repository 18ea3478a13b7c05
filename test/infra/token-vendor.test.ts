import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, type CfnElement, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../functions/lambda/config.ts';
import { flattenCfn } from '../../infra/acknowledge.ts';
import { GATEWAY_ERRORS, TokenVendor, type TokenVendorProps, TokenVendorPropsError } from '../../infra/token-vendor.ts';
import { TokenVendorFunction } from '../../infra/token-vendor-function.ts';
import { createTokenVendorApp, stackPropsFromContext } from '../../infra/token-vendor-stack.ts';
import { FAMILIES, type Family } from '../../shared/core/identifiers.ts';

const FAMILY_NAMES = Object.keys(FAMILIES) as Family[];
/** The feature flags `cdk synth` runs with, so that tests see the template the CLI makes. */
const CDK_CONTEXT = (
  JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
    context: Record<string, unknown>;
  }
).context;
/** CDK's own switch: bundle no stack's assets. Every test but one skips esbuild this way. */
const SKIP_BUNDLING = { 'aws:cdk:bundling-stacks': [] };
const KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const secretPattern = (family: Family, prefix = 'token-vendor') =>
  `arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:${prefix}/${family}/*`;

function synthesize(props: TokenVendorProps = {}) {
  const app = new App({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });
  const stack = new Stack(app, 'Test');
  const vendor = new TokenVendor(stack, 'TokenVendor', props);
  return { stack, vendor, template: Template.fromStack(stack) };
}

type Synthesized = ReturnType<typeof synthesize>;

/** The logical ID of a construct's CloudFormation resource. */
const logicalId = (stack: Stack, construct: IConstruct): string =>
  stack.getLogicalId(construct.node.defaultChild as CfnElement);
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

/** Every statement of every policy attached to `role`. */
function statementsOf({ stack, template }: Synthesized, role: iam.Role): Statement[] {
  const roleId = logicalId(stack, role);
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((policy) => JSON.stringify(policy.Properties.Roles).includes(`"${roleId}"`))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

/** The role's permissions as `action → resources`, references flattened (`<Logical.Arn>`), conditions aside. */
function grantsOf(synthesized: Synthesized, role: iam.Role): Record<string, string[]> {
  const grants: Record<string, string[]> = {};
  for (const statement of statementsOf(synthesized, role)) {
    expect(statement.Effect).toBe('Allow');
    for (const action of asArray(statement.Action)) {
      grants[action] = [...(grants[action] ?? []), ...asArray(statement.Resource).map(flattenCfn)].sort();
    }
  }
  return grants;
}

/** The grants every function has: its own log group and the token table's item actions. */
function baseGrants(synthesized: Synthesized, logGroup: logs.LogGroup): Record<string, string[]> {
  const logs = `<${logicalId(synthesized.stack, logGroup)}.Arn>`;
  const table = `<${logicalId(synthesized.stack, synthesized.vendor.table)}.Arn>`;
  return {
    'logs:CreateLogStream': [logs],
    'logs:PutLogEvents': [logs],
    'dynamodb:GetItem': [table],
    'dynamodb:PutItem': [table],
    'dynamodb:UpdateItem': [table],
    'dynamodb:DeleteItem': [table],
  };
}

describe('Construct: TokenVendor', () => {
  const defaults = synthesize();

  describe('Functions', () => {
    it('runs one function per grant family and the scheduled one, on Node.js 24 and arm64', () => {
      // Assess
      defaults.template.resourceCountIs('AWS::Lambda::Function', FAMILY_NAMES.length + 1);
      defaults.template.resourcePropertiesCountIs(
        'AWS::Lambda::Function',
        { Runtime: 'nodejs24.x', Architectures: ['arm64'], Handler: 'index.handler' },
        FAMILY_NAMES.length + 1,
      );
      for (const family of FAMILY_NAMES) {
        defaults.template.hasResourceProperties('AWS::Lambda::Function', {
          Description: Match.stringLikeRegexp(`${family} connectors`),
          Timeout: 29,
        });
      }
    });

    it('configures the functions for AWS: the table, the secret prefix, Powertools; no connectors folder', () => {
      // Prepare
      const functions = Object.values(defaults.template.findResources('AWS::Lambda::Function'));

      // Act
      const configs = functions.map((fn) => {
        const variables = fn.Properties.Environment.Variables as Record<string, unknown>;
        // References (the table's name, the key's ARN, the refresher's name) are strings once deployed.
        const resolved = Object.fromEntries(
          Object.entries(variables).map(([name, value]) => [
            name,
            typeof value === 'string' ? value : 'from-the-stack',
          ]),
        );
        return { variables, config: loadConfig(resolved) };
      });

      // Assess
      for (const { variables, config } of configs) {
        expect(variables).toMatchObject({
          TOKEN_VENDOR_TABLE: { Ref: logicalId(defaults.stack, defaults.vendor.table) },
          TOKEN_VENDOR_SECRET_PREFIX: 'token-vendor',
          TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '5',
          POWERTOOLS_SERVICE_NAME: 'token-vendor',
          POWERTOOLS_LOG_LEVEL: 'INFO',
          POWERTOOLS_METRICS_NAMESPACE: 'TokenVendor',
          // The key's ARN, not its ID: the Encryption SDK opens values only with a key named by ARN.
          TOKEN_VENDOR_TOKEN_KEY_ID: { 'Fn::GetAtt': [logicalId(defaults.stack, defaults.vendor.tokenKey), 'Arn'] },
        });
        expect(variables).not.toHaveProperty('TOKEN_VENDOR_CONNECTORS_DIR');
        expect(config).toMatchObject({ connectorsDir: undefined, secretPrefix: 'token-vendor' });
      }
      // Every vend function hands due tokens to the rotate function; the rotate function itself to nobody.
      const rotate = { Ref: logicalId(defaults.stack, defaults.vendor.rotateFunction.function) };
      for (const family of FAMILY_NAMES) {
        const fn =
          defaults.template.findResources('AWS::Lambda::Function')[
            logicalId(defaults.stack, defaults.vendor.functions[family].function)
          ];
        expect(fn?.Properties.Environment.Variables.TOKEN_VENDOR_REFRESH_FUNCTION).toEqual(rotate);
      }
      expect(configs.filter(({ variables }) => variables.TOKEN_VENDOR_REFRESH_FUNCTION !== undefined)).toHaveLength(
        FAMILY_NAMES.length,
      );
    });

    it('gives every function its own log group with the retention asked for', () => {
      // Act
      const { template } = synthesize({ logRetention: logs.RetentionDays.ONE_WEEK });

      // Assess
      template.resourceCountIs('AWS::Logs::LogGroup', FAMILY_NAMES.length + 2);
      template.resourcePropertiesCountIs('AWS::Logs::LogGroup', { RetentionInDays: 7 }, FAMILY_NAMES.length + 2);
      const functions = Object.values(template.findResources('AWS::Lambda::Function'));
      const groups = new Set(functions.map((fn) => JSON.stringify(fn.Properties.LoggingConfig.LogGroup)));
      expect(groups.size).toBe(FAMILY_NAMES.length + 1);
    });

    it('lets Lambda pass the Powertools log level through', () => {
      // Act
      const { template } = synthesize({ logLevel: 'DEBUG' });

      // Assess
      template.resourcePropertiesCountIs(
        'AWS::Lambda::Function',
        {
          LoggingConfig: Match.objectLike({ ApplicationLogLevel: 'DEBUG' }),
          Environment: { Variables: Match.objectLike({ POWERTOOLS_LOG_LEVEL: 'DEBUG' }) },
        },
        FAMILY_NAMES.length + 1,
      );
    });
  });

  describe('API', () => {
    it('is a regional REST API with GET and POST …/refresh per family and for any other family, every method AWS_IAM', () => {
      // Assess
      defaults.template.resourceCountIs('AWS::ApiGateway::RestApi', 1);
      defaults.template.hasResourceProperties('AWS::ApiGateway::RestApi', {
        EndpointConfiguration: { Types: ['REGIONAL'] },
      });
      const methods = Object.values(defaults.template.findResources('AWS::ApiGateway::Method'));
      const perRoute = FAMILY_NAMES.length + 1;
      expect(methods.map((method) => method.Properties.HttpMethod).sort()).toEqual([
        ...Array.from({ length: perRoute }, () => 'GET'),
        ...Array.from({ length: perRoute }, () => 'POST'),
      ]);
      for (const method of methods) expect(method.Properties.AuthorizationType).toBe('AWS_IAM');
      const paths = Object.values(defaults.template.findResources('AWS::ApiGateway::Resource')).map(
        (resource) => resource.Properties.PathPart,
      );
      expect(paths.sort()).toEqual(
        [
          'tokens',
          ...FAMILY_NAMES,
          '{family}',
          ...[...FAMILY_NAMES, '{family}'].map(() => '{connectorId}'),
          ...[...FAMILY_NAMES, '{family}'].map(() => 'refresh'),
        ].sort(),
      );
    });

    it('answers an unknown family itself with the contract 400 invalid_request, no function involved', () => {
      // Assess
      const mocks = Object.values(defaults.template.findResources('AWS::ApiGateway::Method')).filter(
        (method) => method.Properties.Integration.Type === 'MOCK',
      );
      expect(mocks).toHaveLength(2);
      for (const mock of mocks) {
        const [answer] = mock.Properties.Integration.IntegrationResponses;
        expect(answer.StatusCode).toBe('400');
        expect(JSON.parse(answer.ResponseTemplates['application/json'])).toEqual({
          error: 'invalid_request',
          error_description: 'Unknown grant family in the path.',
        });
        expect(answer.ResponseParameters['method.response.header.Cache-Control']).toBe("'no-store'");
      }
    });

    it('validates the connector ID path parameter and the optional scope and minTtl', () => {
      // Assess
      defaults.template.hasResourceProperties('AWS::ApiGateway::RequestValidator', {
        ValidateRequestParameters: true,
      });
      defaults.template.resourcePropertiesCountIs(
        'AWS::ApiGateway::Method',
        {
          RequestValidatorId: Match.anyValue(),
          RequestParameters: {
            'method.request.path.connectorId': true,
            'method.request.querystring.scope': false,
            'method.request.querystring.minTtl': false,
          },
        },
        2 * (FAMILY_NAMES.length + 1),
      );
    });

    it('sends each family to its own function', () => {
      // Prepare
      const methods = Object.values(defaults.template.findResources('AWS::ApiGateway::Method'));
      const resources = defaults.template.findResources('AWS::ApiGateway::Resource');

      // Act
      const targets = methods.map((method) => {
        let resourceId = method.Properties.ResourceId.Ref as string;
        if (resources[resourceId]?.Properties.PathPart === 'refresh') {
          resourceId = resources[resourceId]?.Properties.ParentId.Ref;
        }
        const familyId = resources[resourceId]?.Properties.ParentId.Ref as string;
        return [resources[familyId]?.Properties.PathPart, JSON.stringify(method.Properties.Integration.Uri)];
      });

      // Assess
      for (const family of FAMILY_NAMES) {
        const fnId = logicalId(defaults.stack, defaults.vendor.functions[family].function);
        const uris = targets.filter(([path]) => path === family).map(([, uri]) => uri);
        expect(uris).toHaveLength(2);
        for (const uri of uris) expect(uri).toContain(`"${fnId}"`);
      }
    });

    it('admits only the deploying account when no account or organization is trusted', () => {
      // Assess
      defaults.template.hasResourceProperties('AWS::ApiGateway::RestApi', {
        Policy: {
          Statement: [
            {
              Sid: 'TrustedAccounts',
              Effect: 'Allow',
              Action: 'execute-api:Invoke',
              Resource: 'execute-api:/*',
              Principal: {
                AWS: {
                  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::', { Ref: 'AWS::AccountId' }, ':root']],
                },
              },
            },
          ],
        },
      });
    });

    it('admits the trusted accounts and the organization, and no one else', () => {
      // Act
      const { template } = synthesize({
        trustedAccountIds: ['111111111111', '222222222222', '111111111111'],
        organizationId: 'o-a1b2c3d4e5',
      });

      // Assess
      const [api] = Object.values(template.findResources('AWS::ApiGateway::RestApi'));
      const statements = api?.Properties.Policy.Statement as (Statement & { Principal: { AWS: unknown } })[];
      expect(statements).toHaveLength(2);
      const [accounts, organization] = statements;
      expect(asArray(accounts?.Principal.AWS).map(flattenCfn)).toEqual([
        'arn:<AWS::Partition>:iam::<AWS::AccountId>:root',
        'arn:<AWS::Partition>:iam::111111111111:root',
        'arn:<AWS::Partition>:iam::222222222222:root',
      ]);
      expect(organization).toEqual({
        Sid: 'TrustedOrganization',
        Effect: 'Allow',
        Principal: { AWS: '*' },
        Action: 'execute-api:Invoke',
        Resource: 'execute-api:/*',
        Condition: { StringEquals: { 'aws:PrincipalOrgID': 'o-a1b2c3d4e5' } },
      });
      for (const statement of statements) expect(statement.Effect).toBe('Allow');
    });

    it('throttles the stage and writes access logs to its own log group', () => {
      // Act
      const { template, stack, vendor } = synthesize({ throttling: { rateLimit: 20, burstLimit: 40 } });

      // Assess
      const logGroupId = logicalId(stack, vendor.accessLogGroup);
      template.hasResourceProperties('AWS::ApiGateway::Stage', {
        StageName: 'v1',
        MethodSettings: [
          Match.objectLike({ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 }),
        ],
        AccessLogSetting: {
          DestinationArn: Match.anyValue(),
          Format: Match.stringLikeRegexp('"caller":"\\$context.identity.userArn"'),
        },
      });
      const [stage] = Object.values(template.findResources('AWS::ApiGateway::Stage'));
      expect(JSON.stringify(stage?.Properties.AccessLogSetting.DestinationArn)).toContain(`"${logGroupId}"`);
    });

    it('lets only the deployed stage invoke the functions (no test-invoke permission)', () => {
      // Assess
      const permissions = Object.values(defaults.template.findResources('AWS::Lambda::Permission'));
      const fromApi = permissions.filter(
        (permission) => permission.Properties.Principal === 'apigateway.amazonaws.com',
      );
      const others = permissions.filter((permission) => permission.Properties.Principal !== 'apigateway.amazonaws.com');
      expect(fromApi).toHaveLength(2 * FAMILY_NAMES.length);
      for (const permission of fromApi) {
        expect(flattenCfn(permission.Properties.SourceArn)).toMatch(/\/<[A-Za-z0-9]+>\/(GET|POST)\/tokens\//);
      }
      // The one other: the secret-changes rule may invoke the rotate function.
      expect(others.map((permission) => permission.Properties.Principal)).toEqual(['events.amazonaws.com']);
      expect(flattenCfn(others[0]?.Properties.SourceArn)).toMatch(/SecretChanges/);
    });

    it('syncs a connector when Secrets Manager reports a change to a secret under the prefix', () => {
      // Assess
      const rules = Object.values(defaults.template.findResources('AWS::Events::Rule'));
      expect(rules).toHaveLength(1);
      const pattern = rules[0]?.Properties.EventPattern;
      expect(pattern).toMatchObject({
        source: ['aws.secretsmanager'],
        'detail-type': ['AWS API Call via CloudTrail'],
        detail: { eventName: expect.arrayContaining(['PutSecretValue', 'UpdateSecret', 'DeleteSecret']) },
      });
      const prefixes = flattenCfn(pattern.detail.requestParameters.secretId);
      expect(prefixes).toContain('token-vendor/');
      expect(prefixes).toMatch(/:secret:token-vendor\//);
      const schedules = Object.values(defaults.template.findResources('AWS::Scheduler::Schedule'));
      expect(schedules.map((schedule) => schedule.Properties.Target.Input ?? '{}').sort()).toEqual([
        '{"reconcile":{"full":true}}',
        '{"reconcile":{}}',
        '{}',
      ]);
    });
  });

  describe('Gateway responses', () => {
    it("answers API Gateway's own refusals with the contract's error body and no-store", () => {
      // Assess
      const responses = Object.values(defaults.template.findResources('AWS::ApiGateway::GatewayResponse'));
      const byType = new Map(responses.map((response) => [response.Properties.ResponseType, response.Properties]));
      expect(byType.size).toBe(GATEWAY_ERRORS.length);
      for (const type of ['ACCESS_DENIED', 'MISSING_AUTHENTICATION_TOKEN', 'INVALID_SIGNATURE', 'EXPIRED_TOKEN']) {
        expect(byType.get(type)).toMatchObject({
          StatusCode: '403',
          ResponseParameters: {
            'gatewayresponse.header.Cache-Control': "'no-store'",
            'gatewayresponse.header.Content-Type': "'application/json'",
          },
          ResponseTemplates: {
            'application/json': '{"error":"access_denied","error_description":$context.error.messageString}',
          },
        });
      }
      expect(byType.get('THROTTLED')).toMatchObject({ StatusCode: '429' });
      expect(byType.get('BAD_REQUEST_PARAMETERS')).toMatchObject({ StatusCode: '400' });
      expect(byType.get('INTEGRATION_TIMEOUT')).toMatchObject({ StatusCode: '503' });
      expect(byType.get('DEFAULT_4XX')?.StatusCode).toBeUndefined();
      const contractCodes = ['access_denied', 'invalid_request', 'rate_limited', 'upstream_unavailable'];
      for (const { error } of GATEWAY_ERRORS) expect(contractCodes).toContain(error);
    });
  });

  describe('Token table', () => {
    it('is on demand, keyed by pk, with TTL on ttl, KMS-encrypted and protected from deletion', () => {
      // Assess
      defaults.template.hasResource('AWS::DynamoDB::Table', {
        DeletionPolicy: 'Retain',
        Properties: {
          BillingMode: 'PAY_PER_REQUEST',
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
          TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
          SSESpecification: { SSEEnabled: true },
          DeletionProtectionEnabled: true,
        },
      });
    });

    it('uses the customer-managed key given, and deletion protection and removal policy as asked', () => {
      // Prepare
      const props = (stack: Stack): TokenVendorProps => ({
        kmsKey: kms.Key.fromKeyArn(stack, 'Key', KEY_ARN),
        tableDeletionProtection: false,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      const app = new App({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });
      const stack = new Stack(app, 'Test');

      // Act
      new TokenVendor(stack, 'TokenVendor', props(stack));

      // Assess
      Template.fromStack(stack).hasResource('AWS::DynamoDB::Table', {
        DeletionPolicy: 'Delete',
        Properties: {
          SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: KEY_ARN },
          DeletionProtectionEnabled: false,
        },
      });
    });
  });

  describe('Least privilege', () => {
    for (const family of FAMILY_NAMES) {
      it(`gives the ${family} function its log group, the table's item actions and its own family's secrets`, () => {
        // Prepare
        const fn = defaults.vendor.functions[family];

        // Act
        const grants = grantsOf(defaults, fn.role);

        // Assess
        expect(grants).toEqual({
          ...baseGrants(defaults, fn.logGroup),
          'secretsmanager:GetSecretValue': [secretPattern(family)],
          ...(family === 'refresh-token' ? { 'secretsmanager:PutSecretValue': [secretPattern(family)] } : {}),
          'lambda:InvokeFunction': [`<${logicalId(defaults.stack, defaults.vendor.rotateFunction.function)}.Arn>`],
        });
      });
    }

    it("keeps every family function to its own family's table items and sealed values", () => {
      // The items an attacker with one role would go for: another family's state and cached tokens.
      const itemsOf = (family: Family) => [`c#${family}/victim`, `t#${family}/victim#`];
      const matches = (patterns: string[], key: string) =>
        patterns.some((pattern) => new RegExp(`^${pattern.replace(/[.#/]/g, '\\$&').replace(/\*/g, '.*')}$`).test(key));
      const keyStatements = Object.values(defaults.template.findResources('AWS::KMS::Key')).flatMap(
        (key) => key.Properties.KeyPolicy.Statement as (Statement & { Principal: unknown })[],
      );
      for (const family of FAMILY_NAMES) {
        // Prepare
        const role = defaults.vendor.functions[family].role;
        const tableStatements = statementsOf(defaults, role).filter((statement) =>
          asArray(statement.Action).includes('dynamodb:PutItem'),
        );
        const roleKeyStatements = keyStatements.filter((statement) =>
          JSON.stringify(statement.Principal).includes(`"${logicalId(defaults.stack, role)}"`),
        );

        // Act
        const leadingKeys = tableStatements.map(
          (statement) =>
            (
              statement.Condition as { 'ForAllValues:StringLike'?: { 'dynamodb:LeadingKeys'?: string[] } } | undefined
            )?.['ForAllValues:StringLike']?.['dynamodb:LeadingKeys'] ?? [],
        );
        const conditionsOf = (operator: 'StringLike' | 'StringEquals', key: string) =>
          roleKeyStatements.map(
            (statement) =>
              (statement.Condition as Record<string, Record<string, string[]> | undefined> | undefined)?.[operator]?.[
                key
              ],
          );
        // Values sealed before family-scoped data keys: bound to their items.
        const sealedItems = conditionsOf('StringLike', 'kms:EncryptionContext:token-vendor:item').flatMap(
          (patterns) => patterns ?? [],
        );
        const sealedFamilies = conditionsOf('StringEquals', 'kms:EncryptionContext:token-vendor:family');

        // Assess: every table statement is bound to the family's keys, and so is every use of the token key.
        expect(tableStatements.length).toBeGreaterThan(0);
        expect(roleKeyStatements).toHaveLength(2);
        for (const patterns of [...leadingKeys, sealedItems]) {
          for (const other of FAMILY_NAMES) {
            for (const item of itemsOf(other))
              expect(matches(patterns, item), `${family} → ${item}`).toBe(other === family);
          }
        }
        expect(sealedFamilies.filter((families) => families !== undefined)).toEqual([[family]]);
        for (const statement of roleKeyStatements) expect(statement.Condition).toBeDefined();
      }
      // Nobody else in the account may open a sealed value: the account administers the key, it does not use it.
      const accountUse = keyStatements.filter(
        (statement) =>
          JSON.stringify(statement.Principal).includes(':root') &&
          asArray(statement.Action).some((action) => /Decrypt|GenerateDataKey|^kms:\*$/.test(action)),
      );
      expect(accountUse).toEqual([]);
    });

    it("keeps every family function out of the other families' secrets", () => {
      for (const family of FAMILY_NAMES) {
        // Act
        const grants = grantsOf(defaults, defaults.vendor.functions[family].role);
        const secrets = Object.entries(grants)
          .filter(([action]) => action.startsWith('secretsmanager:'))
          .flatMap(([, resources]) => resources);

        // Assess
        expect(secrets.length).toBeGreaterThan(0);
        for (const resource of secrets) expect(resource).toMatch(new RegExp(`:secret:token-vendor/${family}/\\*$`));
        for (const other of FAMILY_NAMES.filter((name) => name !== family)) {
          expect(Object.values(grants).flat().join(' ')).not.toContain(`/${other}/`);
        }
      }
    });

    it('lets the scheduled function list secrets, read every family and write refresh-token ones', () => {
      // Prepare
      const fn = defaults.vendor.rotateFunction;

      // Act
      const grants = grantsOf(defaults, fn.role);

      // Assess
      expect(grants).toEqual({
        ...baseGrants(defaults, fn.logGroup),
        'secretsmanager:ListSecrets': ['*'],
        'secretsmanager:GetSecretValue': FAMILY_NAMES.map((family) => secretPattern(family)).sort(),
        'secretsmanager:PutSecretValue': [secretPattern('refresh-token')],
        // The due index, keys only, for its one partition value.
        'dynamodb:Query': [`<${logicalId(defaults.stack, defaults.vendor.table)}.Arn>/index/due`],
      });
    });

    it('lets exactly two roles write secrets, and only refresh-token ones', () => {
      // Act
      const writers = Object.entries(defaults.template.findResources('AWS::IAM::Policy')).flatMap(([id, policy]) =>
        (policy.Properties.PolicyDocument.Statement as Statement[])
          .filter((statement) => asArray(statement.Action).some((action) => action.startsWith('secretsmanager:Put')))
          .map((statement) => ({ roles: JSON.stringify(policy.Properties.Roles), id, statement })),
      );

      // Assess
      const roleIds = [defaults.vendor.functions['refresh-token'].role, defaults.vendor.rotateFunction.role].map(
        (role) => logicalId(defaults.stack, role),
      );
      expect(writers.map(({ roles }) => roles).sort()).toEqual(
        roleIds.map((id) => JSON.stringify([{ Ref: id }])).sort(),
      );
      for (const { statement } of writers) {
        expect(asArray(statement.Resource).map(flattenCfn)).toEqual([secretPattern('refresh-token')]);
      }
    });

    it('grants no wildcard action and no other wildcard resource than secret prefixes and ListSecrets', () => {
      // Act
      const statements = Object.values(defaults.template.findResources('AWS::IAM::Policy')).flatMap(
        (policy) => policy.Properties.PolicyDocument.Statement as Statement[],
      );

      // Assess
      for (const statement of statements) {
        for (const action of asArray(statement.Action)) expect(action).not.toContain('*');
        for (const resource of asArray(statement.Resource).map(flattenCfn)) {
          if (resource === '*') expect(statement.Action).toBe('secretsmanager:ListSecrets');
          else if (resource.includes('*')) expect(resource).toMatch(/:secret:token-vendor\/[a-z-]+\/\*$|\.Arn>:\*$/);
        }
      }
    });

    it('names secrets under the prefix asked for', () => {
      // Act
      const synthesized = synthesize({ secretPrefix: 'vendor/prod' });

      // Assess
      expect(grantsOf(synthesized, synthesized.vendor.functions.password.role)).toMatchObject({
        'secretsmanager:GetSecretValue': [secretPattern('password', 'vendor/prod')],
      });
      synthesized.template.resourcePropertiesCountIs(
        'AWS::Lambda::Function',
        { Environment: { Variables: Match.objectLike({ TOKEN_VENDOR_SECRET_PREFIX: 'vendor/prod' }) } },
        FAMILY_NAMES.length + 1,
      );
    });

    it('grants no key use without a customer-managed key', () => {
      // Act
      const statements = Object.values(defaults.template.findResources('AWS::IAM::Policy')).flatMap(
        (policy) => policy.Properties.PolicyDocument.Statement as Statement[],
      );

      // Assess
      expect(statements.flatMap((statement) => asArray(statement.Action)).filter((a) => a.startsWith('kms:'))).toEqual(
        [],
      );
    });

    describe('with signing keys (signingKeyArns)', () => {
      const SIGNING_KEYS = [
        'arn:aws:kms:eu-west-1:123456789012:key/0b9d4c3e-2f1a-4e5d-8c7b-6a5f4e3d2c1b',
        'arn:aws:kms:eu-west-1:123456789012:key/7e6d5c4b-3a29-4817-a6f5-e4d3c2b1a098',
      ];
      const signing = synthesize({ signingKeyArns: SIGNING_KEYS });

      it('lets every family function and the scheduled one call kms:Sign on exactly those keys, and nothing else of KMS', () => {
        for (const fn of [...Object.values(signing.vendor.functions), signing.vendor.rotateFunction]) {
          // Act
          const kmsGrants = Object.entries(grantsOf(signing, fn.role)).filter(([action]) => action.startsWith('kms:'));

          // Assess
          expect(kmsGrants).toEqual([['kms:Sign', [...SIGNING_KEYS].sort()]]);
        }
      });

      it('grants kms:Sign nowhere without signing keys', () => {
        // Act
        const actions = Object.values(defaults.template.findResources('AWS::IAM::Policy')).flatMap((policy) =>
          (policy.Properties.PolicyDocument.Statement as Statement[]).flatMap((statement) => asArray(statement.Action)),
        );

        // Assess
        expect(actions).not.toContain('kms:Sign');
      });

      it.each([
        ['an alias ARN', 'arn:aws:kms:eu-west-1:123456789012:alias/signing'],
        ['a key ID', '0b9d4c3e-2f1a-4e5d-8c7b-6a5f4e3d2c1b'],
        ['a wildcard', 'arn:aws:kms:eu-west-1:123456789012:key/*'],
      ])('refuses %s, naming the prop', (_name, keyArn) => {
        // Prepare
        const stack = new Stack(new App({ context: SKIP_BUNDLING }), 'Test');

        // Act & Assess
        expect(() => new TokenVendor(stack, 'TokenVendor', { signingKeyArns: [keyArn] })).toThrow(/signingKeyArns/);
      });
    });

    describe('with a customer-managed key', () => {
      const keyed = (() => {
        const app = new App({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });
        const stack = new Stack(app, 'Test');
        const vendor = new TokenVendor(stack, 'TokenVendor', { kmsKey: kms.Key.fromKeyArn(stack, 'Key', KEY_ARN) });
        return { stack, vendor, template: Template.fromStack(stack) };
      })();
      const keyStatements = (role: iam.Role) =>
        statementsOf(keyed, role)
          .filter((statement) => asArray(statement.Action).some((action) => action.startsWith('kms:')))
          .map((statement) => ({
            actions: asArray(statement.Action).sort(),
            resource: statement.Resource,
            conditions: statement.Condition,
          }));
      const via = (condition: unknown) =>
        flattenCfn((condition as { StringEquals: Record<string, unknown> }).StringEquals['kms:ViaService']);
      const secretArn = (condition: unknown) =>
        flattenCfn(
          (condition as { StringLike?: Record<string, unknown> }).StringLike?.['kms:EncryptionContext:SecretARN'],
        );

      it('lets a family function decrypt only its own secrets, through Secrets Manager', () => {
        for (const family of FAMILY_NAMES.filter((name) => name !== 'refresh-token')) {
          // Act
          const statements = keyStatements(keyed.vendor.functions[family].role);

          // Assess
          const secrets = statements.filter(({ conditions }) => via(conditions).startsWith('secretsmanager.'));
          expect(secrets).toEqual([{ actions: ['kms:Decrypt'], resource: KEY_ARN, conditions: expect.anything() }]);
          expect(secretArn(secrets[0]?.conditions)).toBe(secretPattern(family));
        }
      });

      it('lets only the refresh-token and scheduled functions generate data keys for secrets', () => {
        for (const role of [keyed.vendor.functions['refresh-token'].role, keyed.vendor.rotateFunction.role]) {
          // Act
          const writes = keyStatements(role).filter(
            ({ actions, conditions }) =>
              actions.includes('kms:GenerateDataKey') && via(conditions).startsWith('secretsmanager.'),
          );

          // Assess
          expect(writes).toHaveLength(1);
          expect(secretArn(writes[0]?.conditions)).toBe(secretPattern('refresh-token'));
        }
        for (const family of ['client-credentials', 'password'] as const) {
          const writes = keyStatements(keyed.vendor.functions[family].role).filter(
            ({ actions, conditions }) =>
              actions.includes('kms:GenerateDataKey') && via(conditions).startsWith('secretsmanager.'),
          );
          expect(writes).toEqual([]);
        }
      });

      it('lets every function use the key only through DynamoDB (the table) or Secrets Manager (secrets)', () => {
        for (const fn of [...Object.values(keyed.vendor.functions), keyed.vendor.rotateFunction]) {
          // Act
          const table = keyStatements(fn.role).filter(({ conditions }) => via(conditions).startsWith('dynamodb.'));

          // Assess
          for (const { conditions } of keyStatements(fn.role)) {
            expect(via(conditions)).toMatch(/^(dynamodb|secretsmanager)\.<AWS::Region>\.<AWS::URLSuffix>$/);
          }
          expect(table).toEqual([
            {
              actions: ['kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:GenerateDataKey'],
              resource: KEY_ARN,
              conditions: { StringEquals: { 'kms:ViaService': expect.anything() } },
            },
          ]);
        }
      });
    });
  });

  describe('Schedule', () => {
    it('runs what is due every minute and reconciles every 5 minutes by default, without retries', () => {
      // Assess
      const fnId = logicalId(defaults.stack, defaults.vendor.rotateFunction.function);
      defaults.template.hasResourceProperties('AWS::Scheduler::Schedule', {
        ScheduleExpression: 'rate(5 minutes)',
        Target: Match.objectLike({ Input: '{"reconcile":{}}' }),
      });
      defaults.template.hasResourceProperties('AWS::Scheduler::Schedule', {
        ScheduleExpression: 'rate(1 minute)',
        State: 'ENABLED',
        FlexibleTimeWindow: { Mode: 'OFF' },
        Target: Match.objectLike({
          Arn: { 'Fn::GetAtt': [fnId, 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 },
        }),
      });
    });

    it('lets the schedule role invoke the scheduled function and nothing else', () => {
      // Prepare
      const [schedule] = Object.values(defaults.template.findResources('AWS::Scheduler::Schedule'));
      const roleId = schedule?.Properties.Target.RoleArn['Fn::GetAtt'][0] as string;
      const fnId = logicalId(defaults.stack, defaults.vendor.rotateFunction.function);

      // Act
      const statements = Object.values(defaults.template.findResources('AWS::IAM::Policy'))
        .filter((policy) => JSON.stringify(policy.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
        .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);

      // Assess
      expect(statements.map((s) => [s.Action, asArray(s.Resource).map(flattenCfn)])).toEqual([
        ['lambda:InvokeFunction', [`<${fnId}.Arn>`, `<${fnId}.Arn>:*`]],
      ]);
      defaults.template.hasResourceProperties('AWS::IAM::Role', {
        AssumeRolePolicyDocument: {
          Statement: [
            Match.objectLike({
              Principal: { Service: 'scheduler.amazonaws.com' },
              Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
            }),
          ],
        },
      });
    });

    it('takes a number of minutes or any schedule expression', () => {
      // Act
      const minutes = synthesize({ rotationSchedule: Duration.minutes(15) });
      const cron = synthesize({ rotationSchedule: scheduler.ScheduleExpression.expression('cron(0/10 * * * ? *)') });

      // Assess
      minutes.template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'rate(15 minutes)' });
      cron.template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'cron(0/10 * * * ? *)' });
    });
  });

  describe('Alarms', () => {
    it('alarms on a failed scheduled run, on scheduled refresh failures and on connectors to re-authorize', () => {
      // Assess
      defaults.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [
          { Name: 'FunctionName', Value: { Ref: logicalId(defaults.stack, defaults.vendor.rotateFunction.function) } },
        ],
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      });
      defaults.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'TokenVendor',
        MetricName: 'ScheduledRunFailures',
        Dimensions: [{ Name: 'service', Value: 'token-vendor' }],
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        Threshold: 1,
      });
      defaults.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'TokenVendor',
        MetricName: 'ConnectorsNeedingReauthorization',
        Dimensions: [{ Name: 'service', Value: 'token-vendor' }],
        Statistic: 'Maximum',
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: 0,
      });
    });

    it("alarms on the API's 5xx rate", () => {
      // Assess
      defaults.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Threshold: 0.05,
        ComparisonOperator: 'GreaterThanThreshold',
        Metrics: Match.arrayWith([
          Match.objectLike({ Expression: 'IF(requests >= 10, errors / requests, 0)' }),
          Match.objectLike({
            Id: 'errors',
            MetricStat: Match.objectLike({
              Metric: Match.objectLike({ Namespace: 'AWS/ApiGateway', MetricName: '5XXError' }),
            }),
          }),
          Match.objectLike({
            Id: 'requests',
            MetricStat: Match.objectLike({
              Metric: Match.objectLike({ Namespace: 'AWS/ApiGateway', MetricName: 'Count' }),
            }),
          }),
        ]),
      });
    });

    it("alarms on the API's p99 latency in two of three periods, at the threshold asked for", () => {
      // Act
      const { template } = synthesize({ latencyAlarmThreshold: Duration.seconds(3) });

      // Assess
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/ApiGateway',
        MetricName: 'Latency',
        ExtendedStatistic: 'p99',
        Period: 300,
        Threshold: 3000,
        EvaluationPeriods: 3,
        DatapointsToAlarm: 2,
        ComparisonOperator: 'GreaterThanThreshold',
      });
    });

    it('alarms on a token fetch failure rate above 20% of at least five fetches', () => {
      // Act
      const { template } = synthesize();

      // Assess
      const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter((alarm) =>
        JSON.stringify(alarm).includes('TokenFetchFailures'),
      );
      expect(alarms).toHaveLength(1);
      expect(alarms[0]?.Properties).toMatchObject({ Threshold: 0.2, ComparisonOperator: 'GreaterThanThreshold' });
      const metrics = alarms[0]?.Properties.Metrics as { Expression?: string; MetricStat?: { Metric: unknown } }[];
      expect(metrics.find((metric) => metric.Expression !== undefined)?.Expression).toBe(
        'IF(fetches + failures >= 5, failures / (fetches + failures), 0)',
      );
      expect(metrics.flatMap((metric) => (metric.MetricStat === undefined ? [] : [metric.MetricStat.Metric]))).toEqual([
        {
          Namespace: 'TokenVendor',
          MetricName: 'TokenFetches',
          Dimensions: [{ Name: 'service', Value: 'token-vendor' }],
        },
        {
          Namespace: 'TokenVendor',
          MetricName: 'TokenFetchFailures',
          Dimensions: [{ Name: 'service', Value: 'token-vendor' }],
        },
      ]);
    });

    it('sends every alarm to the topic given, in the namespace given', () => {
      // Prepare
      const app = new App({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });
      const stack = new Stack(app, 'Test');
      const topic = new sns.Topic(stack, 'Ops');

      // Act
      new TokenVendor(stack, 'TokenVendor', { alarmTopic: topic, metricsNamespace: 'Platform/Tokens' });

      // Assess
      const template = Template.fromStack(stack);
      const topicRef = { Ref: logicalId(stack, topic) };
      template.resourcePropertiesCountIs(
        'AWS::CloudWatch::Alarm',
        { AlarmActions: [topicRef], OKActions: [topicRef] },
        6,
      );
      template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { Namespace: 'Platform/Tokens' }, 2);
    });
  });

  describe('Dashboard', () => {
    it('shows vends, latency percentiles, fetches and outcomes, health, throttles, the refresher and the alarms', () => {
      // Prepare
      const { template } = synthesize({ metricsNamespace: 'Platform/Tokens' });

      // Act
      const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
      const body = JSON.stringify(dashboards[0]?.Properties.DashboardBody);

      // Assess
      expect(dashboards).toHaveLength(1);
      // Every metric the functions emit (shared/ports/metrics.ts), under the namespace and dimension they use.
      for (const name of [
        'MemoryHits',
        'TableHits',
        'TokenFetches',
        'TokenFetchFailures',
        'StillValidServed',
        'TokenFetchLatency',
        'ScheduledRefreshes',
        'ScheduledRunFailures',
        'ConnectorsFailing',
        'ConnectorsNeedingReauthorization',
        'HealthStateChanges',
      ]) {
        expect(body).toContain(`[\\"Platform/Tokens\\",\\"${name}\\",\\"service\\",\\"token-vendor\\"`);
      }
      for (const percentile of ['p50', 'p90', 'p99']) expect(body).toContain(`\\"stat\\":\\"${percentile}\\"`);
      expect(body).toContain('\\"Throttles\\"');
      expect(body).toContain('ThrottledRequests');
      expect(body).toContain('\\"Invocations\\"');
      expect(body).toContain('\\"type\\":\\"alarm\\"');
    });
  });

  describe('Props', () => {
    it.each<[string, TokenVendorProps, RegExp]>([
      ['an account ID of 11 digits', { trustedAccountIds: ['12345678901'] }, /trustedAccountIds: "12345678901"/],
      [
        'an account ARN for an account ID',
        { trustedAccountIds: ['arn:aws:iam::123456789012:root'] },
        /trustedAccountIds/,
      ],
      ['an organization ID without o-', { organizationId: 'a1b2c3d4e5' }, /organizationId/],
      ['an organization root ID', { organizationId: 'r-a1b2' }, /organizationId/],
      ['a secret prefix ending in /', { secretPrefix: 'token-vendor/' }, /secretPrefix/],
      ['a secret prefix with a wildcard', { secretPrefix: 'token-*' }, /secretPrefix/],
      ['a rotation of 30 seconds', { rotationSchedule: Duration.seconds(30) }, /rotationSchedule/],
      ['a rotation of 90 seconds', { rotationSchedule: Duration.seconds(90) }, /rotationSchedule/],
      ['a negative forced refresh spacing', { forcedRefreshSeconds: -1 }, /forcedRefreshSeconds/],
      ['no throttling rate', { throttling: { rateLimit: 0 } }, /throttling.rateLimit/],
      ['a fractional burst', { throttling: { burstLimit: 1.5 } }, /throttling.burstLimit/],
      ['an AWS namespace', { metricsNamespace: 'AWS/Lambda' }, /metricsNamespace/],
    ])('refuses %s, naming the prop', (_name, props, message) => {
      // Prepare
      const stack = new Stack(new App({ context: SKIP_BUNDLING }), 'Test');

      // Act & Assess
      expect(() => new TokenVendor(stack, 'TokenVendor', props)).toThrow(TokenVendorPropsError);
      expect(() => new TokenVendor(stack, 'Again', props)).toThrow(message);
    });

    it('takes an explicit undefined as not given', () => {
      // Act
      const { template } = synthesize({ secretPrefix: undefined, forcedRefreshSeconds: undefined });

      // Assess
      template.resourcePropertiesCountIs(
        'AWS::Lambda::Function',
        {
          Environment: {
            Variables: Match.objectLike({
              TOKEN_VENDOR_SECRET_PREFIX: 'token-vendor',
              TOKEN_VENDOR_FORCED_REFRESH_SECONDS: '5',
            }),
          },
        },
        FAMILY_NAMES.length + 1,
      );
    });
  });
});

describe('Construct: TokenVendor as a library (VPC, grants, existing resources, tuning)', () => {
  /** A stack of another app with a VPC in it, and the vendor built in it by `build`. */
  function inConsumerStack(build: (stack: Stack, vpc: ec2.Vpc) => Partial<TokenVendorProps> = () => ({})) {
    const app = new App({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });
    const stack = new Stack(app, 'Consumer');
    const vpc = new ec2.Vpc(stack, 'Network', {
      maxAzs: 2,
      natGateways: 1,
      flowLogs: { all: { trafficType: ec2.FlowLogTrafficType.ALL } },
    });
    const vendor = new TokenVendor(stack, 'TokenVendor', { vpc, ...build(stack, vpc) });
    return { stack, vpc, vendor, template: () => Template.fromStack(stack) };
  }

  it('places every function in the VPC subnets given, with one security group of its own, and lets Lambda attach them', () => {
    // Prepare
    const { stack, vpc, vendor, template } = inConsumerStack(() => ({
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
    }));
    const securityGroup = vendor.connections.securityGroups[0] as ec2.SecurityGroup;

    // Act
    const synthesized = template();

    // Assess
    const subnets = vpc.privateSubnets.map((subnet) => ({ Ref: logicalId(stack, subnet as ec2.Subnet) }));
    synthesized.resourcePropertiesCountIs(
      'AWS::Lambda::Function',
      {
        VpcConfig: {
          SubnetIds: subnets,
          SecurityGroupIds: [{ 'Fn::GetAtt': [logicalId(stack, securityGroup), 'GroupId'] }],
        },
      },
      FAMILY_NAMES.length + 1,
    );
    synthesized.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    for (const fn of [...Object.values(vendor.functions), vendor.rotateFunction]) {
      const actions = statementsOf({ stack, template: synthesized, vendor }, fn.role).flatMap((statement) =>
        asArray(statement.Action),
      );
      expect(actions).toEqual(expect.arrayContaining(['ec2:CreateNetworkInterface', 'ec2:DeleteNetworkInterface']));
    }
  });

  it('uses the security groups given, and passes the private-network allowance and the tuning to every function', () => {
    // Prepare
    let given: ec2.SecurityGroup | undefined;
    const { stack, vendor, template } = inConsumerStack((scope, vpc) => {
      given = new ec2.SecurityGroup(scope, 'Given', { vpc });
      return {
        securityGroups: [given],
        allowPrivateNetworks: true,
        tuning: { leaseSeconds: 20, fetchDeadlineSeconds: 15, maxAttempts: 2, memoryStalenessSeconds: 5 },
      };
    });

    // Act
    const all = template().findResources('AWS::Lambda::Function');
    const functions = [...Object.values(vendor.functions), vendor.rotateFunction].flatMap(
      (fn) => all[logicalId(stack, fn.function)] ?? [],
    );

    // Assess
    expect(functions).toHaveLength(FAMILY_NAMES.length + 1);
    for (const fn of functions) {
      expect(fn.Properties.VpcConfig.SecurityGroupIds).toEqual([
        { 'Fn::GetAtt': [logicalId(stack, given as ec2.SecurityGroup), 'GroupId'] },
      ]);
      const variables = fn.Properties.Environment.Variables as Record<string, unknown>;
      const resolved = Object.fromEntries(
        Object.entries(variables).map(([name, value]) => [name, typeof value === 'string' ? value : 'from-the-stack']),
      );
      // The functions' own configuration reads what the construct wrote.
      expect(loadConfig(resolved)).toMatchObject({
        allowPrivateNetworks: true,
        leaseMs: 20_000,
        fetchDeadlineMs: 15_000,
        maxAttempts: 2,
        memoryStalenessMs: 5_000,
      });
    }
  });

  it('grants a workload role exactly one connector: its GET and its refresh POST on this stage, nothing else', () => {
    // Prepare
    const { stack, vendor, template } = inConsumerStack();
    const worker = new iam.Role(stack, 'Worker', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });

    // Act
    vendor.grantVend(worker, 'client-credentials', 'crm');

    // Assess
    const statements = statementsOf({ stack, template: template(), vendor }, worker);
    const api = logicalId(stack, vendor.api);
    const arn = (route: string) => ({
      'Fn::Join': [
        '',
        [
          'arn:',
          { Ref: 'AWS::Partition' },
          ':execute-api:',
          { Ref: 'AWS::Region' },
          ':',
          { Ref: 'AWS::AccountId' },
          ':',
          { Ref: api },
          `/v1/${route}`,
        ],
      ],
    });
    expect(statements).toEqual([
      {
        Effect: 'Allow',
        Action: 'execute-api:Invoke',
        Resource: [arn('GET/tokens/client-credentials/crm'), arn('POST/tokens/client-credentials/crm/refresh')],
      },
    ]);
  });

  it.each<[string, Family, string]>([
    ['an unknown family', 'implicit' as Family, 'crm'],
    ['a wildcard connector ID', 'client-credentials', '*'],
    ['a path in the connector ID', 'client-credentials', 'crm/../admin'],
  ])('refuses to grant %s', (_name, family, connectorId) => {
    // Prepare
    const { stack, vendor } = inConsumerStack();
    const worker = new iam.Role(stack, 'Worker', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });

    // Act & Assess
    expect(() => vendor.grantVend(worker, family, connectorId)).toThrow(TokenVendorPropsError);
  });

  it('uses an existing table and an existing token key, granting the imported key in the roles instead', () => {
    // Prepare
    const app = new App({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });
    const stack = new Stack(app, 'Consumer');
    const table = dynamodb.Table.fromTableName(stack, 'Existing', 'shared-token-table');
    const key = kms.Key.fromKeyArn(stack, 'ExistingKey', KEY_ARN);

    // Act
    const vendor = new TokenVendor(stack, 'TokenVendor', { table, tokenKey: key });
    const template = Template.fromStack(stack);

    // Assess
    template.resourceCountIs('AWS::DynamoDB::Table', 0);
    template.resourceCountIs('AWS::KMS::Key', 0);
    template.resourcePropertiesCountIs(
      'AWS::Lambda::Function',
      {
        Environment: {
          Variables: Match.objectLike({ TOKEN_VENDOR_TABLE: 'shared-token-table', TOKEN_VENDOR_TOKEN_KEY_ID: KEY_ARN }),
        },
      },
      FAMILY_NAMES.length + 1,
    );
    const sealing = statementsOf({ stack, template, vendor }, vendor.functions.password.role).filter(
      (statement) => statement.Resource === KEY_ARN,
    );
    expect(sealing).toEqual([
      {
        Effect: 'Allow',
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
        Resource: KEY_ARN,
        Condition: { StringEquals: { 'kms:EncryptionContext:token-vendor:family': ['password'] } },
      },
      {
        // Values sealed before family-scoped data keys, bound to their items.
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: KEY_ARN,
        Condition: { StringLike: { 'kms:EncryptionContext:token-vendor:item': ['t#password/*', 'c#password/*'] } },
      },
    ]);
  });

  it.each<[string, (stack: Stack) => TokenVendorProps, RegExp]>([
    [
      'vpcSubnets without a VPC',
      () => ({ vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } }),
      /vpcSubnets needs vpc/,
    ],
    [
      'security groups without a VPC',
      (stack) => ({
        securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-12345678')],
      }),
      /securityGroups needs vpc/,
    ],
    [
      'the private-network allowance without a VPC',
      () => ({ allowPrivateNetworks: true }),
      /allowPrivateNetworks needs vpc/,
    ],
    [
      'deletion protection for a table it does not create',
      (stack) => ({
        table: dynamodb.Table.fromTableName(stack, 'Existing', 'shared'),
        tableDeletionProtection: false,
      }),
      /tableDeletionProtection applies to a table the construct creates/,
    ],
    [
      'a fetch deadline as long as the lease',
      () => ({ tuning: { leaseSeconds: 10, fetchDeadlineSeconds: 10 } }),
      /fetchDeadlineSeconds \(10\) must be below tuning.leaseSeconds \(10\)/,
    ],
    ['a wait longer than API Gateway waits', () => ({ tuning: { waitSeconds: 29 } }), /tuning.waitSeconds/],
    ['a fractional tuning value', () => ({ tuning: { maxAttempts: 1.5 } }), /tuning.maxAttempts/],
  ])('refuses %s with a message naming the props', (_name, props, message) => {
    // Prepare
    const stack = new Stack(new App({ context: SKIP_BUNDLING }), 'Test');

    // Act & Assess
    expect(() => new TokenVendor(stack, 'TokenVendor', props(stack))).toThrow(message);
  });

  it('has no connections outside a VPC', () => {
    // Act & Assess
    expect(() => synthesize().vendor.connections).toThrow(/connections needs vpc/);
  });

  it('finds nothing unacknowledged by cdk-nag in a VPC', () => {
    // Prepare
    const { stack, vendor } = inConsumerStack(() => ({ allowPrivateNetworks: true, tracing: true }));
    vendor.grantVend(
      new iam.Role(stack, 'Worker', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') }),
      'password',
      'erp',
    );

    // Act
    const report = new AwsSolutionsChecks().validateScope(stack);

    // Assess
    expect(
      report.violations.map((violation) => `${violation.ruleName} ${JSON.stringify(violation.violatingResources)}`),
    ).toEqual([]);
  });
});

describe('Construct: TokenVendorFunction', () => {
  it.each(['token-vendor/password', 'token-vendor/*/'])('refuses the secret name prefix %s', (prefix) => {
    // Prepare
    const stack = new Stack(new App({ context: SKIP_BUNDLING }), 'Test');
    const fn = new TokenVendorFunction(stack, 'Fn', {
      entry: fileURLToPath(new URL('../../functions/password.ts', import.meta.url)),
      depsLockFilePath: fileURLToPath(new URL('../../package-lock.json', import.meta.url)),
      description: 'test',
      timeout: Duration.seconds(3),
      environment: {},
      logRetention: logs.RetentionDays.ONE_DAY,
      removalPolicy: RemovalPolicy.DESTROY,
      tracing: false,
      logLevel: 'INFO',
    });

    // Act & Assess
    expect(() => fn.grantReadSecrets(prefix)).toThrow(/ends with "\/" and has no wildcard/);
    expect(() => fn.grantWriteSecrets(prefix)).toThrow(/ends with "\/" and has no wildcard/);
  });
});

describe('Function: stackPropsFromContext', () => {
  const fromContext = (context: Record<string, unknown>) => stackPropsFromContext(new App({ context }).node);

  it('reads comma-separated accounts, the organization and the other settings given on the command line', () => {
    // Act
    const props = fromContext({
      trustedAccountIds: ' 111111111111, 222222222222 ,',
      organizationId: 'o-a1b2c3d4e5',
      secretPrefix: 'vendor',
      rotationSchedule: '10',
      logRetentionDays: '90',
      removalPolicy: 'destroy',
      tableDeletionProtection: 'false',
      forcedRefreshSeconds: '0',
      throttlingRateLimit: '10',
      tracing: 'true',
      logLevel: 'debug',
      kmsKeyArn: KEY_ARN,
      signingKeyArns: `${KEY_ARN},${KEY_ARN.replace('1234abcd', '5678abcd')}`,
    });

    // Assess
    expect(props).toMatchObject({
      vendor: {
        trustedAccountIds: ['111111111111', '222222222222'],
        signingKeyArns: [KEY_ARN, KEY_ARN.replace('1234abcd', '5678abcd')],
        organizationId: 'o-a1b2c3d4e5',
        secretPrefix: 'vendor',
        logRetention: logs.RetentionDays.THREE_MONTHS,
        removalPolicy: RemovalPolicy.DESTROY,
        tableDeletionProtection: false,
        forcedRefreshSeconds: 0,
        throttling: { rateLimit: 10 },
        tracing: true,
        logLevel: 'DEBUG',
      },
      kmsKeyArn: KEY_ARN,
    });
    const schedule = props.vendor?.rotationSchedule;
    expect(schedule).toBeInstanceOf(Duration);
    expect((schedule as Duration).toMinutes()).toBe(10);
  });

  it('reads lists and booleans from cdk.json as they are', () => {
    // Act
    const props = fromContext({ trustedAccountIds: ['111111111111'], tracing: false });

    // Assess
    expect(props.vendor).toMatchObject({ trustedAccountIds: ['111111111111'], tracing: false });
  });

  it('passes schedule expressions through', () => {
    // Act
    const props = fromContext({ rotationSchedule: 'cron(0/10 * * * ? *)' });

    // Assess
    const schedule = props.vendor?.rotationSchedule as scheduler.ScheduleExpression | undefined;
    expect(schedule?.expressionString).toBe('cron(0/10 * * * ? *)');
  });

  it.each([
    ['rotationSchedule', 'every 5 minutes'],
    ['logRetentionDays', '31'],
    ['removalPolicy', 'snapshot'],
    ['tableDeletionProtection', 'yes'],
    ['forcedRefreshSeconds', 'five'],
    ['kmsKeyArn', 'alias/token-vendor'],
    ['alarmTopicArn', 'ops'],
  ])('refuses %s=%s, naming the key', (key, value) => {
    // Act & Assess
    expect(() => fromContext({ [key]: value })).toThrow(`Context ${key}`);
  });
});

describe('App: cdk-nag AwsSolutions', () => {
  const nagReport = (stack: Stack) => new AwsSolutionsChecks().validateScope(stack);

  it.each<[string, Record<string, unknown>]>([
    ['the defaults', {}],
    [
      'every option',
      {
        trustedAccountIds: '111111111111',
        organizationId: 'o-a1b2c3d4e5',
        kmsKeyArn: KEY_ARN,
        tracing: 'true',
        alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:ops',
        rotationSchedule: 'rate(10 minutes)',
        signingKeyArns: `${KEY_ARN},${KEY_ARN.replace('1234abcd', '5678abcd')}`,
      },
    ],
  ])('finds nothing unacknowledged with %s', (_name, context) => {
    // Prepare
    const { stack } = createTokenVendorApp({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING, ...context } });

    // Act
    const report = nagReport(stack);

    // Assess
    expect(report.violations.map((violation) => violation.ruleName)).toEqual([]);
    expect(report.success).toBe(true);
  });

  it('acknowledges findings per resource: nothing on the app, the stack or the construct as a whole', () => {
    // Prepare
    const { app, stack } = createTokenVendorApp({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });

    // Act
    const blanket = [app, stack, stack.vendor].flatMap((scope) =>
      scope.node.metadata.filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY),
    );

    // Assess
    expect(blanket).toEqual([]);
  });

  it('fails synth on a new finding', () => {
    // Prepare
    const { app, stack } = createTokenVendorApp({ context: { ...CDK_CONTEXT, ...SKIP_BUNDLING } });
    stack.vendor.rotateFunction.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['secretsmanager:DeleteSecret'], resources: ['*'] }),
    );

    // Act & Assess
    expect(() => app.synth()).toThrow(/AwsSolutions-IAM5\[Resource::\*\]/);
  });

  it('synthesizes the app as `cdk synth` does, bundling the functions with esbuild into ESM', () => {
    // Prepare
    const outdir = mkdtempSync(join(tmpdir(), 'token-vendor-synth-'));
    onTestFinished(() => rmSync(outdir, { recursive: true, force: true }));
    const { app, stack } = createTokenVendorApp({ outdir, context: CDK_CONTEXT });

    // Act
    const assembly = app.synth();

    // Assess
    const template = assembly.getStackArtifact(stack.artifactId).template as {
      Resources: Record<string, { Type: string; Properties: { Code?: { S3Key?: unknown } } }>;
    };
    const functions = Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    expect(functions).toHaveLength(FAMILY_NAMES.length + 1);
    const assets = readdirSync(outdir).filter((name) => name.startsWith('asset.'));
    expect(assets).toHaveLength(FAMILY_NAMES.length + 1);
    for (const asset of assets) {
      const bundle = readFileSync(join(outdir, asset, 'index.mjs'), 'utf8');
      expect(bundle.startsWith("import { createRequire } from 'module'; const require = createRequire(")).toBe(true);
      expect(bundle).toMatch(/export\s*\{[^}]*\bas handler\b[^}]*\}/);
      // The SDK is inside the bundle, not taken from the runtime.
      expect(bundle).not.toMatch(/from\s*"@aws-sdk\//);
      expect(existsSync(join(outdir, asset, 'index.mjs.map'))).toBe(true);
    }
    const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as {
      pluginReports: unknown[];
    };
    expect(report.pluginReports).toEqual([]);
  });
});

describe('cdk.json', () => {
  it('turns off the CDK CLI telemetry and notices, which would reach the internet on every synth', () => {
    // Prepare
    const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
      notices?: unknown;
      context: Record<string, unknown>;
    };

    // Assess: the settings the CLI itself reads (`notices`; `cli-telemetry` in the context, as `cdk cli-telemetry
    // --disable` writes it).
    expect(cdkJson.notices).toBe(false);
    expect(cdkJson.context['cli-telemetry']).toBe(false);
  });
});
