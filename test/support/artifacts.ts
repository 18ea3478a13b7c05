/**
 * Deployment-artifact harness: synthesizes the CDK app as `cdk synth` does (esbuild bundling included), reads every
 * Lambda function of the template (its bundle in the cloud assembly, its settings, the API routes and schedules that
 * invoke it), and runs a bundle the way Lambda would: in a process of its own, with exactly the environment the
 * template gives it (references resolved to local resources) plus what Lambda's runtime sets, against dynalite, a
 * loopback Secrets Manager and a loopback KMS holding the template's keys. Nothing is read from the test's own
 * environment but PATH.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type AttributeDefinition,
  type AttributeValue,
  CreateTableCommand,
  DynamoDBClient,
  type GlobalSecondaryIndex,
  type KeySchemaElement,
  ScanCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { createTokenVendorApp } from '../../infra/token-vendor-stack.ts';
import { type EmbeddedDynamoDB, startEmbeddedDynamoDB } from '../../local/dynamodb.ts';
import type { BootstrapOptions, BootstrapRecord, LambdaError } from '../artifacts/lambda-bootstrap.ts';
import { type KmsServer, startKmsServer } from './kms-server.ts';
import { type SecretsManagerServer, startSecretsManagerServer } from './secrets-manager-server.ts';

const BOOTSTRAP = fileURLToPath(new URL('../artifacts/lambda-bootstrap.ts', import.meta.url));
/** The feature flags `cdk synth` runs with (cdk.json), so that the template is the one the CLI makes. */
const CDK_CONTEXT = (
  JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> }
).context;

// ---------------------------------------------------------------------------------------------------------------
// The template

export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Readonly<Record<string, unknown>>;
}

export interface CfnTemplate {
  readonly Resources: Readonly<Record<string, CfnResource>>;
}

/** Where the stack is taken to be deployed: what pseudo parameters and ARNs resolve to. */
export interface Deployment {
  readonly stackName: string;
  readonly region: string;
  readonly accountId: string;
  readonly partition: string;
  readonly urlSuffix: string;
}

export const DEFAULT_DEPLOYMENT: Omit<Deployment, 'stackName'> = {
  region: 'eu-west-1',
  accountId: '444455556666',
  partition: 'aws',
  urlSuffix: 'amazonaws.com',
};

/** A method of a REST API whose integration is a Lambda proxy to the function. */
export interface ApiRoute {
  readonly httpMethod: string;
  /** API Gateway's resource path, `/tokens/password/{connectorId}`. */
  readonly resourcePath: string;
  readonly stage: string;
  readonly restApiId: string;
}

/** An EventBridge Scheduler schedule whose target is the function. */
export interface ScheduleTarget {
  readonly logicalId: string;
  readonly scheduleName: string;
  /** The target's `Input`, parsed; undefined when the template sets none (Scheduler's default notification). */
  readonly input: unknown;
}

/** One `AWS::Lambda::Function` of the template, with its bundle in the cloud assembly. */
export interface DeployedFunction {
  readonly logicalId: string;
  /** The physical name the harness gives it (`AWS_LAMBDA_FUNCTION_NAME`). */
  readonly name: string;
  readonly arn: string;
  /** The asset folder of the cloud assembly that deployment zips and uploads as the function's code. */
  readonly assetDir: string;
  readonly handler: string;
  readonly runtime: string;
  readonly architectures: readonly string[];
  readonly memorySize: number;
  readonly timeoutSeconds: number;
  readonly logGroupName: string;
  readonly logFormat: string | undefined;
  readonly applicationLogLevel: string | undefined;
  /** `Environment.Variables` exactly as the template gives them, intrinsic functions unresolved. */
  readonly variables: Readonly<Record<string, unknown>>;
  readonly routes: readonly ApiRoute[];
  readonly schedules: readonly ScheduleTarget[];
}

export interface DeployedTable {
  readonly logicalId: string;
  readonly name: string;
  readonly properties: Readonly<Record<string, unknown>>;
}

/** An `AWS::KMS::Key` of the template, as the loopback KMS holds it. */
export interface DeployedKey {
  readonly logicalId: string;
  /** What `Ref` and `Fn::GetAtt …KeyId` give: a UUID derived from the stack name and the logical ID. */
  readonly keyId: string;
  /** What `Fn::GetAtt …Arn` gives: `arn:<partition>:kms:<region>:<account>:key/<keyId>`. */
  readonly arn: string;
}

/** A reference in the template the harness cannot map to a local resource: new ones must be noticed. */
export class UnresolvedReferenceError extends Error {
  constructor(where: string, value: unknown, reason: string) {
    super(`${where}: cannot resolve ${JSON.stringify(value)} (${reason})`);
    this.name = 'UnresolvedReferenceError';
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** The single key of an intrinsic function object (`{ "Ref": … }`, `{ "Fn::Join": … }`), if it is one. */
function intrinsic(value: unknown): [string, unknown] | undefined {
  if (!isRecord(value)) return undefined;
  const keys = Object.keys(value);
  const [key] = keys;
  return keys.length === 1 && key !== undefined && (key === 'Ref' || key.startsWith('Fn::'))
    ? [key, value[key]]
    : undefined;
}

/** `Fn::GetAtt` as `[logicalId, attribute]`, in its list or its dotted string form. */
function getAttArgs(args: unknown): [string, string] | undefined {
  if (Array.isArray(args) && args.length === 2 && typeof args[0] === 'string' && typeof args[1] === 'string') {
    return [args[0], args[1]];
  }
  if (typeof args === 'string' && args.includes('.')) {
    const dot = args.indexOf('.');
    return [args.slice(0, dot), args.slice(dot + 1)];
  }
  return undefined;
}

/** Every `Fn::GetAtt` of `attribute` anywhere inside a value, as logical IDs. */
function getAttsIn(value: unknown, attribute: string): string[] {
  const found: string[] = [];
  const visit = (node: unknown) => {
    const fn = intrinsic(node);
    if (fn?.[0] === 'Fn::GetAtt') {
      const args = getAttArgs(fn[1]);
      if (args?.[1] === attribute) found.push(args[0]);
      return;
    }
    if (Array.isArray(node)) node.forEach(visit);
    else if (isRecord(node)) Object.values(node).forEach(visit);
  };
  visit(value);
  return found;
}

const STACK_UUID = '5f0e4c1a-7b2d-4e8f-9a63-0c1d2e3f4a5b';

const PHYSICAL_NAME_PROPERTY: Readonly<Record<string, string>> = {
  'AWS::DynamoDB::Table': 'TableName',
  'AWS::Lambda::Function': 'FunctionName',
  'AWS::Logs::LogGroup': 'LogGroupName',
};

/** A key ID as KMS makes them (a UUID), derived from the stack and the key's logical ID so every run agrees. */
function keyIdOf(stackName: string, logicalId: string): string {
  const hex = createHash('sha256').update(`${stackName}/${logicalId}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Resolves template values to the strings a deployment would hold. Supported: literals, the pseudo parameters
 * Region, AccountId, Partition, URLSuffix, StackName and StackId, `Fn::Join`, `Fn::Sub`, `Ref` / `Fn::GetAtt …Arn` of a
 * DynamoDB table (its dynalite table), a Lambda function or a log group (the names the harness gives them), and
 * `Ref` / `Fn::GetAtt …KeyId` / `Fn::GetAtt …Arn` of a KMS key (a key of the loopback KMS, see {@link keyIdOf}).
 * Anything else throws {@link UnresolvedReferenceError}, naming where it was met.
 */
export class TemplateResolver {
  readonly #template: CfnTemplate;
  readonly #deployment: Deployment;

  constructor(template: CfnTemplate, deployment: Deployment) {
    this.#template = template;
    this.#deployment = deployment;
  }

  /** The name CloudFormation would give the resource: its name property when the template sets one. */
  physicalName(logicalId: string): string {
    const resource = this.#template.Resources[logicalId];
    const nameProperty = resource === undefined ? undefined : PHYSICAL_NAME_PROPERTY[resource.Type];
    const given = nameProperty === undefined ? undefined : resource?.Properties?.[nameProperty];
    if (typeof given === 'string') return given;
    const generated = `${this.#deployment.stackName}-${logicalId}`;
    return resource?.Type === 'AWS::Lambda::Function' ? generated.slice(0, 64) : generated;
  }

  arn(logicalId: string, where: string): string {
    const { partition, region, accountId } = this.#deployment;
    const resource = this.#template.Resources[logicalId];
    const name = this.physicalName(logicalId);
    switch (resource?.Type) {
      case 'AWS::DynamoDB::Table':
        return `arn:${partition}:dynamodb:${region}:${accountId}:table/${name}`;
      case 'AWS::Lambda::Function':
        return `arn:${partition}:lambda:${region}:${accountId}:function:${name}`;
      case 'AWS::Logs::LogGroup':
        return `arn:${partition}:logs:${region}:${accountId}:log-group:${name}:*`;
      case 'AWS::KMS::Key':
        return `arn:${partition}:kms:${region}:${accountId}:key/${this.keyId(logicalId)}`;
      default:
        throw new UnresolvedReferenceError(where, { 'Fn::GetAtt': [logicalId, 'Arn'] }, this.#what(logicalId));
    }
  }

  /** The key ID of an `AWS::KMS::Key` of the template. */
  keyId(logicalId: string): string {
    return keyIdOf(this.#deployment.stackName, logicalId);
  }

  resolve(value: unknown, where: string): string {
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    const fn = intrinsic(value);
    if (fn === undefined) throw new UnresolvedReferenceError(where, value, 'not a literal or an intrinsic function');
    const [name, args] = fn;
    switch (name) {
      case 'Ref':
        if (typeof args !== 'string') break;
        return this.#ref(args, where);
      case 'Fn::GetAtt': {
        const target = getAttArgs(args);
        if (target === undefined) break;
        return this.#getAtt(target[0], target[1], where);
      }
      case 'Fn::Join': {
        if (!Array.isArray(args) || typeof args[0] !== 'string' || !Array.isArray(args[1])) break;
        const [separator, parts] = args as [string, unknown[]];
        return parts.map((part) => this.resolve(part, where)).join(separator);
      }
      case 'Fn::Sub': {
        const [text, variables] = typeof args === 'string' ? [args, {}] : Array.isArray(args) ? args : [];
        if (typeof text !== 'string' || !isRecord(variables)) break;
        return text.replace(/\$\{([^}!][^}]*)\}/g, (_match, reference: string) => {
          if (Object.hasOwn(variables, reference)) return this.resolve(variables[reference], where);
          const dot = reference.indexOf('.');
          return dot === -1
            ? this.#ref(reference, where)
            : this.#getAtt(reference.slice(0, dot), reference.slice(dot + 1), where);
        });
      }
    }
    throw new UnresolvedReferenceError(where, value, `${name} is not supported by the harness`);
  }

  #ref(target: string, where: string): string {
    const { region, accountId, partition, urlSuffix, stackName } = this.#deployment;
    const pseudo: Readonly<Record<string, string>> = {
      'AWS::Region': region,
      'AWS::AccountId': accountId,
      'AWS::Partition': partition,
      'AWS::URLSuffix': urlSuffix,
      'AWS::StackName': stackName,
      'AWS::StackId': `arn:${partition}:cloudformation:${region}:${accountId}:stack/${stackName}/${STACK_UUID}`,
    };
    const known = pseudo[target];
    if (known !== undefined) return known;
    const type = this.#template.Resources[target]?.Type;
    if (type !== undefined && Object.hasOwn(PHYSICAL_NAME_PROPERTY, type)) return this.physicalName(target);
    // CloudFormation's Ref of a key is its key ID, which the KMS API takes like the ARN.
    if (type === 'AWS::KMS::Key') return this.keyId(target);
    throw new UnresolvedReferenceError(where, { Ref: target }, this.#what(target));
  }

  #getAtt(target: string, attribute: string, where: string): string {
    if (attribute === 'Arn') return this.arn(target, where);
    if (attribute === 'KeyId' && this.#template.Resources[target]?.Type === 'AWS::KMS::Key') return this.keyId(target);
    throw new UnresolvedReferenceError(where, { 'Fn::GetAtt': [target, attribute] }, this.#what(target));
  }

  #what(logicalId: string): string {
    const type = this.#template.Resources[logicalId]?.Type;
    return type === undefined
      ? `${logicalId} is no resource of the template (a parameter or pseudo parameter the harness does not know)`
      : `${logicalId} is an ${type}, which has no local counterpart`;
  }
}

interface AssetManifest {
  readonly files?: Readonly<
    Record<
      string,
      {
        readonly source: { readonly path?: string; readonly packaging?: string };
        readonly destinations: Readonly<Record<string, { readonly objectKey: string }>>;
      }
    >
  >;
}

/**
 * The asset folder deployment uploads for an `S3Key`: the asset manifest's file whose destination has that object
 * key (`<hash>.zip`, from the folder `asset.<hash>`).
 */
function assetFolder(outdir: string, manifest: AssetManifest, s3Key: unknown, where: string): string {
  const matches = Object.values(manifest.files ?? {}).filter((file) =>
    Object.values(file.destinations).some((destination) => destination.objectKey === s3Key),
  );
  const [file] = matches;
  if (matches.length !== 1 || file?.source.path === undefined) {
    throw new Error(`${where}: ${matches.length} assets of the manifest are uploaded as ${JSON.stringify(s3Key)}`);
  }
  if (file.source.packaging !== 'zip') {
    throw new Error(`${where}: its asset is packaged as ${file.source.packaging ?? 'file'}, not a zipped folder`);
  }
  const folder = join(outdir, file.source.path);
  if (!statSync(folder).isDirectory()) throw new Error(`${where}: ${folder} is no folder`);
  return folder;
}

/** The resource path of an `AWS::ApiGateway::Resource` (or the root), walking its parents. */
function resourcePath(template: CfnTemplate, resourceId: unknown, where: string): string {
  const segments: string[] = [];
  let current = resourceId;
  for (;;) {
    const fn = intrinsic(current);
    if (fn?.[0] === 'Fn::GetAtt' && getAttArgs(fn[1])?.[1] === 'RootResourceId') break;
    const id = fn?.[0] === 'Ref' && typeof fn[1] === 'string' ? fn[1] : undefined;
    const resource = id === undefined ? undefined : template.Resources[id];
    if (resource?.Type !== 'AWS::ApiGateway::Resource') {
      throw new UnresolvedReferenceError(where, current, 'not an API Gateway resource or root');
    }
    segments.unshift(String(resource.Properties?.PathPart));
    current = resource.Properties?.ParentId;
  }
  return `/${segments.join('/')}`;
}

function apiRoutes(template: CfnTemplate): Map<string, ApiRoute[]> {
  const routes = new Map<string, ApiRoute[]>();
  const entries = Object.entries(template.Resources);
  for (const [logicalId, method] of entries) {
    if (method.Type !== 'AWS::ApiGateway::Method') continue;
    const integration = method.Properties?.Integration;
    if (!isRecord(integration) || integration.Type !== 'AWS_PROXY') continue;
    const restApi = intrinsic(method.Properties?.RestApiId);
    const restApiLogicalId = restApi?.[0] === 'Ref' ? String(restApi[1]) : '';
    const stage = entries.find(
      ([, resource]) =>
        resource.Type === 'AWS::ApiGateway::Stage' &&
        intrinsic(resource.Properties?.RestApiId)?.[1] === restApiLogicalId,
    )?.[1].Properties?.StageName;
    for (const functionId of getAttsIn(integration.Uri, 'Arn')) {
      const route: ApiRoute = {
        httpMethod: String(method.Properties?.HttpMethod),
        resourcePath: resourcePath(template, method.Properties?.ResourceId, logicalId),
        stage: typeof stage === 'string' ? stage : '$default',
        // API IDs are 10 random characters; this one is derived from the API's logical ID.
        restApiId: createHash('sha256').update(restApiLogicalId).digest('hex').slice(0, 10),
      };
      routes.set(functionId, [...(routes.get(functionId) ?? []), route]);
    }
  }
  return routes;
}

function scheduleTargets(template: CfnTemplate, resolver: TemplateResolver): Map<string, ScheduleTarget[]> {
  const schedules = new Map<string, ScheduleTarget[]>();
  for (const [logicalId, schedule] of Object.entries(template.Resources)) {
    if (schedule.Type !== 'AWS::Scheduler::Schedule') continue;
    const target = schedule.Properties?.Target;
    if (!isRecord(target)) continue;
    const input =
      target.Input === undefined ? undefined : (JSON.parse(resolver.resolve(target.Input, logicalId)) as unknown);
    const name = schedule.Properties?.Name;
    for (const functionId of getAttsIn(target.Arn, 'Arn')) {
      const entry = {
        logicalId,
        scheduleName: typeof name === 'string' ? name : resolver.physicalName(logicalId),
        input,
      };
      schedules.set(functionId, [...(schedules.get(functionId) ?? []), entry]);
    }
  }
  return schedules;
}

export interface SynthesizedStack {
  readonly outdir: string;
  readonly deployment: Deployment;
  readonly template: CfnTemplate;
  readonly resolver: TemplateResolver;
  readonly functions: readonly DeployedFunction[];
  readonly tables: readonly DeployedTable[];
  readonly keys: readonly DeployedKey[];
  /** Removes the cloud assembly. */
  remove(): void;
}

/**
 * Synthesizes the app of `cdk synth` (infra/app.ts, with cdk.json's context) into a temporary cloud assembly,
 * bundling every function with esbuild, and reads every Lambda function, DynamoDB table and KMS key of its stack.
 */
export function synthesizeStack(
  context: Readonly<Record<string, unknown>> = {},
  deployment: Omit<Deployment, 'stackName'> = DEFAULT_DEPLOYMENT,
): SynthesizedStack {
  const outdir = mkdtempSync(join(tmpdir(), 'token-vendor-artifacts-'));
  try {
    const { app, stack } = createTokenVendorApp({ outdir, context: { ...CDK_CONTEXT, ...context } });
    const assembly = app.synth();
    const artifact = assembly.getStackArtifact(stack.artifactId);
    const template = artifact.template as CfnTemplate;
    const manifestPath = join(outdir, `${artifact.id}.assets.json`);
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as AssetManifest;
    const resolved: Deployment = { ...deployment, stackName: artifact.stackName };
    const resolver = new TemplateResolver(template, resolved);
    const routes = apiRoutes(template);
    const schedules = scheduleTargets(template, resolver);

    const functions = Object.entries(template.Resources)
      .filter(([, resource]) => resource.Type === 'AWS::Lambda::Function')
      .map(([logicalId, resource]): DeployedFunction => {
        const properties = resource.Properties ?? {};
        const code = isRecord(properties.Code) ? properties.Code : {};
        if (code.ZipFile !== undefined || code.ImageUri !== undefined) {
          throw new Error(`${logicalId}: its code is inline or an image, not a bundle of the cloud assembly`);
        }
        const logging = isRecord(properties.LoggingConfig) ? properties.LoggingConfig : {};
        const environment = isRecord(properties.Environment) ? properties.Environment : {};
        const name = resolver.physicalName(logicalId);
        return {
          logicalId,
          name,
          arn: resolver.arn(logicalId, logicalId),
          assetDir: assetFolder(outdir, manifest, code.S3Key, logicalId),
          handler: String(properties.Handler),
          runtime: String(properties.Runtime),
          architectures: Array.isArray(properties.Architectures) ? properties.Architectures.map(String) : ['x86_64'],
          // Lambda's defaults when the template leaves them out.
          memorySize: typeof properties.MemorySize === 'number' ? properties.MemorySize : 128,
          timeoutSeconds: typeof properties.Timeout === 'number' ? properties.Timeout : 3,
          logGroupName:
            logging.LogGroup === undefined
              ? `/aws/lambda/${name}`
              : resolver.resolve(logging.LogGroup, `${logicalId} LoggingConfig.LogGroup`),
          logFormat: typeof logging.LogFormat === 'string' ? logging.LogFormat : undefined,
          applicationLogLevel:
            typeof logging.ApplicationLogLevel === 'string' ? logging.ApplicationLogLevel : undefined,
          variables: isRecord(environment.Variables) ? environment.Variables : {},
          routes: routes.get(logicalId) ?? [],
          schedules: schedules.get(logicalId) ?? [],
        };
      });
    const tables = Object.entries(template.Resources)
      .filter(([, resource]) => resource.Type === 'AWS::DynamoDB::Table')
      .map(([logicalId, resource]) => ({
        logicalId,
        name: resolver.physicalName(logicalId),
        properties: resource.Properties ?? {},
      }));
    const keys = Object.entries(template.Resources)
      .filter(([, resource]) => resource.Type === 'AWS::KMS::Key')
      .map(([logicalId]) => ({ logicalId, keyId: resolver.keyId(logicalId), arn: resolver.arn(logicalId, logicalId) }));
    return {
      outdir,
      deployment: resolved,
      template,
      resolver,
      functions,
      tables,
      keys,
      remove: () => rmSync(outdir, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(outdir, { recursive: true, force: true });
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Environment

/** The file Lambda's runtime would import for the `Handler` setting (`index.handler`: `index.mjs`, `.js`, `.cjs`). */
export function handlerFile(fn: DeployedFunction): string | undefined {
  const moduleName = fn.handler.slice(0, fn.handler.lastIndexOf('.'));
  return ['.mjs', '.js', '.cjs'].map((extension) => join(fn.assetDir, `${moduleName}${extension}`)).find(existsSync);
}

/** Names Lambda sets itself and refuses in a function's configuration. */
export const RESERVED_VARIABLES = [
  '_HANDLER',
  '_X_AMZN_TRACE_ID',
  'AWS_DEFAULT_REGION',
  'AWS_REGION',
  'AWS_EXECUTION_ENV',
  'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_LAMBDA_FUNCTION_MEMORY_SIZE',
  'AWS_LAMBDA_FUNCTION_VERSION',
  'AWS_LAMBDA_INITIALIZATION_TYPE',
  'AWS_LAMBDA_LOG_GROUP_NAME',
  'AWS_LAMBDA_LOG_STREAM_NAME',
  'AWS_ACCESS_KEY',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_LAMBDA_RUNTIME_API',
  'LAMBDA_TASK_ROOT',
  'LAMBDA_RUNTIME_DIR',
] as const;

/** The function's `Environment.Variables`, every reference resolved (or an {@link UnresolvedReferenceError}). */
export function resolveVariables(stack: SynthesizedStack, fn: DeployedFunction): Record<string, string> {
  return Object.fromEntries(
    Object.entries(fn.variables).map(([name, value]) => [
      name,
      stack.resolver.resolve(value, `${fn.logicalId} Environment.Variables.${name}`),
    ]),
  );
}

/** The execution role's temporary credentials Lambda hands the function: planted, so logs can be searched for them. */
export const FUNCTION_CREDENTIALS = {
  accessKeyId: 'ASIAARTIFACTHARNESS1',
  secretAccessKey: 'artifact-role-secret-4d9b7c21e0f3a5b6',
  sessionToken: 'artifact-role-session-token-8f2e61c0d7a94b35',
} as const;

export interface LocalEndpoints {
  readonly dynamodb: string;
  readonly secretsManager: string;
  readonly kms: string;
  /** Every other service: the per-run stub that records the call (see {@link AwsStubCalls}). */
  readonly fallback: string;
}

/**
 * What the function's process gets: the template's variables (resolved), what Lambda's runtime sets, the SDK's
 * endpoint variables pointing at the local services, and PATH. Nothing else from the test's environment.
 */
export function lambdaEnvironment(
  stack: SynthesizedStack,
  fn: DeployedFunction,
  endpoints: LocalEndpoints,
): Record<string, string> {
  const variables = resolveVariables(stack, fn);
  const clashes = Object.keys(variables).filter(
    (name) => (RESERVED_VARIABLES as readonly string[]).includes(name) || name.startsWith('AWS_ENDPOINT_URL'),
  );
  if (clashes.length > 0) throw new Error(`${fn.logicalId} sets variables Lambda reserves: ${clashes.join(', ')}`);
  const { region } = stack.deployment;
  return {
    ...variables,
    // Set by Lambda's runtime.
    _HANDLER: fn.handler,
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_EXECUTION_ENV: `AWS_Lambda_${fn.runtime}`,
    AWS_LAMBDA_FUNCTION_NAME: fn.name,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(fn.memorySize),
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    AWS_LAMBDA_LOG_GROUP_NAME: fn.logGroupName,
    AWS_LAMBDA_LOG_STREAM_NAME: `${new Date().toISOString().slice(0, 10).replaceAll('-', '/')}/[$LATEST]artifacts`,
    ...(fn.logFormat === undefined ? {} : { AWS_LAMBDA_LOG_FORMAT: fn.logFormat }),
    ...(fn.logFormat === 'JSON' && fn.applicationLogLevel !== undefined
      ? { AWS_LAMBDA_LOG_LEVEL: fn.applicationLogLevel }
      : {}),
    AWS_ACCESS_KEY_ID: FUNCTION_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: FUNCTION_CREDENTIALS.secretAccessKey,
    AWS_SESSION_TOKEN: FUNCTION_CREDENTIALS.sessionToken,
    LAMBDA_TASK_ROOT: fn.assetDir,
    TZ: ':UTC',
    LANG: 'en_US.UTF-8',
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    // The SDK's own endpoint variables: local services instead of AWS.
    AWS_ENDPOINT_URL: endpoints.fallback,
    AWS_ENDPOINT_URL_DYNAMODB: endpoints.dynamodb,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoints.secretsManager,
    AWS_ENDPOINT_URL_KMS: endpoints.kms,
    // Harness isolation: no profile of the machine running the tests is read.
    AWS_CONFIG_FILE: join(stack.outdir, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(stack.outdir, 'no-aws-credentials'),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Local services

export interface LocalCloud {
  readonly dynamodb: EmbeddedDynamoDB;
  readonly secretsManager: SecretsManagerServer;
  /** Holds every key of the template ({@link SynthesizedStack.keys}). */
  readonly kms: KmsServer;
  close(): Promise<void>;
}

/**
 * dynalite with every table of the template (its key schema and indexes), the loopback Secrets Manager, and the
 * loopback KMS holding every key of the template under the ARN the resolver gives it.
 */
export async function startLocalCloud(stack: SynthesizedStack): Promise<LocalCloud> {
  const dynamodb = await startEmbeddedDynamoDB();
  const secretsManager = await startSecretsManagerServer();
  const kms = await startKmsServer();
  for (const key of stack.keys) kms.addKey(key.arn);
  const client = new DynamoDBClient({
    endpoint: dynamodb.endpoint,
    region: stack.deployment.region,
    credentials: { accessKeyId: 'harness', secretAccessKey: 'harness' },
  });
  try {
    for (const table of stack.tables) {
      const { KeySchema, AttributeDefinitions, GlobalSecondaryIndexes } = table.properties;
      await client.send(
        new CreateTableCommand({
          TableName: table.name,
          KeySchema: KeySchema as KeySchemaElement[],
          AttributeDefinitions: AttributeDefinitions as AttributeDefinition[],
          BillingMode: 'PAY_PER_REQUEST',
          ...(GlobalSecondaryIndexes === undefined
            ? {}
            : { GlobalSecondaryIndexes: GlobalSecondaryIndexes as GlobalSecondaryIndex[] }),
        }),
      );
      await waitUntilTableExists({ client, minDelay: 1, maxDelay: 1, maxWaitTime: 10 }, { TableName: table.name });
    }
  } finally {
    client.destroy();
  }
  return {
    dynamodb,
    secretsManager,
    kms,
    close: async () => {
      await Promise.all([dynamodb.close(), secretsManager.close(), kms.close()]);
    },
  };
}

/** Every item of every table of the template, as a DynamoDB Scan returns them (attribute values, unconverted). */
export async function scanTables(
  stack: SynthesizedStack,
  cloud: LocalCloud,
): Promise<{ table: string; items: Record<string, AttributeValue>[] }[]> {
  const client = new DynamoDBClient({
    endpoint: cloud.dynamodb.endpoint,
    region: stack.deployment.region,
    credentials: { accessKeyId: 'harness', secretAccessKey: 'harness' },
  });
  try {
    const scanned: { table: string; items: Record<string, AttributeValue>[] }[] = [];
    for (const table of stack.tables) {
      const items: Record<string, AttributeValue>[] = [];
      let start: Record<string, AttributeValue> | undefined;
      do {
        const page = await client.send(
          new ScanCommand({
            TableName: table.name,
            ConsistentRead: true,
            ...(start === undefined ? {} : { ExclusiveStartKey: start }),
          }),
        );
        items.push(...(page.Items ?? []));
        start = page.LastEvaluatedKey;
      } while (start !== undefined);
      scanned.push({ table: table.name, items });
    }
    return scanned;
  } finally {
    client.destroy();
  }
}

/** Calls a run made to services the harness does not provide. */
export interface AwsStubCalls {
  /** Lambda `Invoke` calls (the Invoke API of the stub answers them as Lambda queues an `Event` invocation). */
  readonly invocations: { readonly functionName: string; readonly invocationType: string; readonly payload: unknown }[];
  /** Any other call: `<service from the SigV4 scope> <method> <path> <X-Amz-Target>`. */
  readonly unexpected: string[];
}

async function startAwsStub(): Promise<{ endpoint: string; calls: AwsStubCalls; close(): Promise<void> }> {
  const calls: AwsStubCalls = { invocations: [], unexpected: [] };
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const invoke = /^\/2015-03-31\/functions\/([^/]+)\/invocations/.exec(request.url ?? '');
      const invocationType = String(request.headers['x-amz-invocation-type'] ?? 'RequestResponse');
      if (request.method === 'POST' && invoke !== null && invocationType === 'Event') {
        let payload: unknown = body;
        try {
          payload = JSON.parse(body);
        } catch {
          // Recorded as the text it was.
        }
        calls.invocations.push({ functionName: decodeURIComponent(invoke[1] ?? ''), invocationType, payload });
        response.writeHead(202, { 'x-amzn-requestid': 'harness' }).end();
        return;
      }
      const scope = /Credential=[^/]+\/[^/]+\/[^/]+\/([^/]+)\//.exec(String(request.headers.authorization ?? ''));
      calls.unexpected.push(
        [scope?.[1] ?? '?', request.method, request.url, request.headers['x-amz-target'] ?? ''].join(' ').trim(),
      );
      response
        .writeHead(400, { 'content-type': 'application/json', 'x-amzn-errortype': 'UnknownOperationException' })
        .end(JSON.stringify({ __type: 'UnknownOperationException', message: 'not served by the artifact harness' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Running a bundle

export type InvocationOutcome =
  | { readonly requestId: string; readonly result: unknown }
  | { readonly requestId: string; readonly error: LambdaError };

export interface FunctionRun {
  readonly fn: DeployedFunction;
  /** The environment the process had. */
  readonly env: Readonly<Record<string, string>>;
  readonly init:
    | { readonly nodeVersion: string; readonly initMs: number }
    | { readonly error: LambdaError }
    | undefined;
  readonly invocations: readonly InvocationOutcome[];
  /** The JSON lines the function wrote to stdout and stderr (Powertools' log records, EMF metrics). */
  readonly records: readonly Record<string, unknown>[];
  /** stdout without the bootstrap's own lines, and stderr. */
  readonly output: string;
  readonly stderr: string;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly aws: AwsStubCalls;
}

export interface RunOptions {
  /** The run is killed after this long (the function's own timeout may be minutes). @default 20 000 */
  readonly killAfterMs?: number;
}

const MARKER = '\u241eartifact-bootstrap\u241e';

/** Runs bundles as Lambda execution environments; `close()` kills whatever still runs. */
export class LambdaRunner {
  readonly #stack: SynthesizedStack;
  readonly #cloud: LocalCloud;
  readonly #children = new Set<ChildProcessWithoutNullStreams>();

  constructor(stack: SynthesizedStack, cloud: LocalCloud) {
    this.#stack = stack;
    this.#cloud = cloud;
  }

  /** One execution environment: a cold start, then each event in turn, then the process ends. */
  async run(fn: DeployedFunction, events: readonly unknown[], options: RunOptions = {}): Promise<FunctionRun> {
    const stub = await startAwsStub();
    try {
      const env = lambdaEnvironment(this.#stack, fn, {
        dynamodb: this.#cloud.dynamodb.endpoint,
        secretsManager: this.#cloud.secretsManager.endpoint,
        kms: this.#cloud.kms.endpoint,
        fallback: stub.endpoint,
      });
      const bootstrap: BootstrapOptions = {
        handler: fn.handler,
        timeoutMs: fn.timeoutSeconds * 1000,
        functionArn: fn.arn,
        marker: MARKER,
      };
      const child = spawn(process.execPath, [BOOTSTRAP, JSON.stringify(bootstrap)], {
        cwd: fn.assetDir,
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      this.#children.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
      });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
      });
      child.stdin.on('error', () => undefined);
      child.stdin.end(JSON.stringify(events));
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, options.killAfterMs ?? 20_000);
      const exitCode = await new Promise<number | null>((resolve) => {
        child.once('close', (code) => resolve(code));
      });
      clearTimeout(timer);
      this.#children.delete(child);
      return { ...parseOutput(stdout, stderr), fn, env, stderr, exitCode, timedOut, aws: stub.calls };
    } finally {
      await stub.close();
    }
  }

  close(): void {
    for (const child of this.#children) child.kill('SIGKILL');
    this.#children.clear();
  }
}

function jsonLines(text: string): Record<string, unknown>[] {
  const records: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    try {
      const parsed = JSON.parse(line) as unknown;
      if (isRecord(parsed)) records.push(parsed);
    } catch {
      // Not a JSON line: kept in the run's text only.
    }
  }
  return records;
}

function parseOutput(stdout: string, stderr: string): Pick<FunctionRun, 'init' | 'invocations' | 'records' | 'output'> {
  let init: FunctionRun['init'];
  const invocations: InvocationOutcome[] = [];
  const output: string[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith(MARKER)) {
      if (line !== '') output.push(line);
      continue;
    }
    const record = JSON.parse(line.slice(MARKER.length)) as BootstrapRecord;
    if (record.type === 'init') init = { nodeVersion: record.nodeVersion, initMs: record.initMs };
    else if (record.type === 'init-error') init = { error: record.error };
    else if (record.type === 'invocation') invocations.push({ requestId: record.requestId, result: record.result });
    else invocations.push({ requestId: record.requestId, error: record.error });
  }
  // Lambda sends both streams to the function's log group; Powertools writes WARN and ERROR records to stderr.
  return {
    init,
    invocations,
    records: [...jsonLines(output.join('\n')), ...jsonLines(stderr)],
    output: output.join('\n'),
  };
}

/** A run's story for an assertion message: how it ended and its last output. */
export function describeRun(run: FunctionRun): string {
  const tail = (text: string) => text.split('\n').slice(-15).join('\n');
  return [
    `${run.fn.logicalId}: exit ${String(run.exitCode)}${run.timedOut ? ' (killed: took too long)' : ''}`,
    `init: ${JSON.stringify(run.init)}`,
    `stdout:\n${tail(run.output)}`,
    `stderr:\n${tail(run.stderr)}`,
  ].join('\n');
}

/** Powertools' EMF blobs among a run's records. */
export function metricBlobs(run: FunctionRun): Record<string, unknown>[] {
  return run.records.filter((record) => isRecord(record._aws));
}

/** One metric an EMF blob published: its identity in CloudWatch (namespace, name, dimension set) and its values. */
export interface EmittedMetric {
  readonly namespace: string;
  readonly name: string;
  readonly dimensions: Readonly<Record<string, string>>;
  readonly values: readonly number[];
}

/** Every metric of every EMF blob of a run, as CloudWatch would take them in. */
export function emittedMetrics(run: FunctionRun): EmittedMetric[] {
  return metricBlobs(run).flatMap((blob) => {
    const directives = (blob._aws as { CloudWatchMetrics?: unknown }).CloudWatchMetrics;
    return (Array.isArray(directives) ? directives : []).flatMap((directive: Record<string, unknown>) => {
      const dimensionSets = Array.isArray(directive.Dimensions) ? (directive.Dimensions as string[][]) : [[]];
      const metrics = Array.isArray(directive.Metrics) ? (directive.Metrics as { Name: string }[]) : [];
      return dimensionSets.flatMap((set) =>
        metrics.map(({ Name }) => {
          const value = blob[Name];
          return {
            namespace: String(directive.Namespace),
            name: Name,
            dimensions: Object.fromEntries(set.map((dimension) => [dimension, String(blob[dimension])])),
            values: (Array.isArray(value) ? value : [value]).map(Number),
          };
        }),
      );
    });
  });
}

/** Powertools' log records (`level`, `message`) among a run's records. */
export function logRecords(run: FunctionRun): Record<string, unknown>[] {
  return run.records.filter((record) => typeof record.level === 'string' && typeof record.message === 'string');
}

// ---------------------------------------------------------------------------------------------------------------
// Events

/** An IAM principal as API Gateway's IAM authorization reports it in `requestContext.identity`. */
export interface ApiCaller {
  readonly arn: string;
  readonly accountId: string;
  readonly accessKeyId: string;
  readonly sessionToken: string;
}

/**
 * A REST API (v1) Lambda proxy event for a route, as API Gateway sends it for a SigV4-signed request: path
 * parameters substituted into the path, the caller in `requestContext.identity`.
 */
export function restApiEvent(
  deployment: Deployment,
  route: ApiRoute,
  request: {
    readonly pathParameters: Readonly<Record<string, string>>;
    readonly caller: ApiCaller;
    readonly query?: Readonly<Record<string, string>>;
  },
): APIGatewayProxyEvent {
  const path = route.resourcePath.replace(/\{([^}]+)\}/g, (_match, name: string) =>
    encodeURIComponent(request.pathParameters[name] ?? ''),
  );
  const now = new Date();
  const amzDate = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const host = `${route.restApiId}.execute-api.${deployment.region}.${deployment.urlSuffix}`;
  const sessionName = request.caller.arn.split('/').at(-1) ?? 'session';
  const headers: Record<string, string> = {
    Accept: '*/*',
    Authorization:
      `AWS4-HMAC-SHA256 Credential=${request.caller.accessKeyId}/${amzDate.slice(0, 8)}/${deployment.region}/` +
      'execute-api/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=' +
      '0'.repeat(64),
    Host: host,
    'User-Agent': 'aws-sdk-js/3 token-vendor-client',
    'X-Amz-Date': amzDate,
    'X-Amz-Security-Token': request.caller.sessionToken,
    'X-Amzn-Trace-Id': `Root=1-${Math.floor(now.getTime() / 1000).toString(16)}-${'a'.repeat(24)}`,
    'X-Forwarded-For': '198.51.100.7',
    'X-Forwarded-Port': '443',
    'X-Forwarded-Proto': 'https',
  };
  const query = request.query === undefined || Object.keys(request.query).length === 0 ? null : request.query;
  const requestId = randomUUID();
  return {
    resource: route.resourcePath,
    path,
    httpMethod: route.httpMethod,
    headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name, [value]])),
    queryStringParameters: query === null ? null : { ...query },
    multiValueQueryStringParameters:
      query === null ? null : Object.fromEntries(Object.entries(query).map(([name, value]) => [name, [value]])),
    pathParameters: { ...request.pathParameters },
    stageVariables: null,
    requestContext: {
      resourceId: 'abc123',
      resourcePath: route.resourcePath,
      httpMethod: route.httpMethod,
      extendedRequestId: 'Ab1CdEfGhIjKlMn=',
      requestTime: now.toUTCString(),
      path: `/${route.stage}${path}`,
      accountId: deployment.accountId,
      protocol: 'HTTP/1.1',
      stage: route.stage,
      domainPrefix: route.restApiId,
      requestTimeEpoch: now.getTime(),
      requestId,
      identity: {
        cognitoIdentityPoolId: null,
        accountId: request.caller.accountId,
        cognitoIdentityId: null,
        caller: `AROAHARNESSROLE00000:${sessionName}`,
        sourceIp: '198.51.100.7',
        principalOrgId: null,
        accessKey: request.caller.accessKeyId,
        cognitoAuthenticationType: null,
        cognitoAuthenticationProvider: null,
        userArn: request.caller.arn,
        userAgent: headers['User-Agent'] ?? null,
        user: `AROAHARNESSROLE00000:${sessionName}`,
        apiKey: null,
        apiKeyId: null,
        clientCert: null,
      },
      domainName: host,
      apiId: route.restApiId,
      authorizer: null,
    },
    body: null,
    isBase64Encoded: false,
  };
}

/**
 * What EventBridge Scheduler delivers to a Lambda target: the target's `Input` when the template sets one, else
 * an empty object.
 */
export function schedulerEvent(schedule: ScheduleTarget): unknown {
  return schedule.input ?? {};
}
