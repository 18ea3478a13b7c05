import { ArnFormat, type Duration, type RemovalPolicy, Stack } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ENV, SEAL_CONTEXT_FAMILY, SEAL_CONTEXT_ITEM } from '../shared/core/settings.ts';
import { familyItemPatterns } from '../shared/core/table.ts';
import { acknowledge, wildcardResourceFinding } from './acknowledge.ts';

/**
 * Some dependencies are CommonJS and call `require`; an ESM bundle has none, so the banner makes one.
 * @see https://github.com/evanw/esbuild/issues/1921
 */
const ESM_REQUIRE_SHIM = "import { createRequire } from 'module'; const require = createRequire(import.meta.url);";

/** The DynamoDB actions the token store sends (GetCommand, PutCommand, UpdateCommand, DeleteCommand), nothing else. */
export const TOKEN_TABLE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
] as const;

export interface TokenVendorFunctionProps {
  /** Absolute path of the handler module (TypeScript, ESM) that exports `handler`. */
  readonly entry: string;
  /** Absolute path of the lock file; its folder is the project root esbuild bundles from. */
  readonly depsLockFilePath: string;
  /** What the function does, shown in the console. */
  readonly description: string;
  /** Longest run before Lambda stops the function. */
  readonly timeout: Duration;
  /** @default 512 */
  readonly memorySize?: number;
  /** Settings read by `loadConfig` and Powertools (the log level excepted). */
  readonly environment: Readonly<Record<string, string>>;
  /** How long the function's log group keeps its records. */
  readonly logRetention: logs.RetentionDays;
  /** What happens to the log group when it leaves the stack. */
  readonly removalPolicy: RemovalPolicy;
  /** Active X-Ray tracing. */
  readonly tracing: boolean;
  /** Level of the function's own log records (Powertools, and Lambda's filter of them). */
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** The VPC to run in (its ENIs in `vpcSubnets`, with `securityGroups`). @default - no VPC */
  readonly vpc?: ec2.IVpc;
  /** @default - the VPC's private subnets */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** @default - a security group of the function's own */
  readonly securityGroups?: readonly ec2.ISecurityGroup[];
  /**
   * Retries of an asynchronous invocation (the schedule's).
   * @default - Lambda's default (2)
   */
  readonly retryAttempts?: number;
}

/**
 * One Node.js 24 arm64 Lambda function of the token vendor, bundled by the local esbuild into minified ESM, with
 * its own log group and its own role. The role starts with nothing but writing to that log group; every other
 * permission is added through a method that names exactly one table or one secret name prefix.
 *
 * @example
 * const fn = new TokenVendorFunction(this, 'Password', {
 *   entry: '/repo/functions/password.ts',
 *   depsLockFilePath: '/repo/package-lock.json',
 *   description: 'Vends tokens of password-grant connectors',
 *   timeout: Duration.seconds(29),
 *   environment: { TOKEN_VENDOR_TABLE: table.tableName },
 *   logRetention: logs.RetentionDays.ONE_MONTH,
 *   removalPolicy: RemovalPolicy.RETAIN,
 *   tracing: false,
 *   logLevel: 'INFO',
 * });
 * fn.grantTokenTable(table);
 * fn.grantReadSecrets('token-vendor/password/');
 */
export class TokenVendorFunction extends Construct {
  /** The Lambda function. */
  public readonly function: nodejs.NodejsFunction;
  /** The function's execution role; its only policies are the ones the grant methods add. */
  public readonly role: iam.Role;
  /** The function's log group. */
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: TokenVendorFunctionProps) {
    super(scope, id);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: props.removalPolicy,
    });
    // An own role instead of the default one: AWSLambdaBasicExecutionRole may write to every log group.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${id}`,
    });
    this.logGroup.grantWrite(this.role);

    this.function = new nodejs.NodejsFunction(this, 'Function', {
      entry: props.entry,
      handler: 'handler',
      depsLockFilePath: props.depsLockFilePath,
      description: props.description,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout,
      role: this.role,
      logGroup: this.logGroup,
      // Lambda filters JSON records by level; it must let through what Powertools writes.
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: lambda.ApplicationLogLevel[props.logLevel],
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
      tracing: props.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      ...(props.retryAttempts === undefined ? {} : { retryAttempts: props.retryAttempts }),
      ...(props.vpc === undefined
        ? {}
        : {
            vpc: props.vpc,
            ...(props.vpcSubnets === undefined ? {} : { vpcSubnets: props.vpcSubnets }),
            ...(props.securityGroups === undefined ? {} : { securityGroups: [...props.securityGroups] }),
          }),
      environment: {
        ...props.environment,
        POWERTOOLS_LOG_LEVEL: props.logLevel,
        // The functions load Powertools Tracer only when this is true (functions/lambda/tracing.ts).
        POWERTOOLS_TRACE_ENABLED: String(props.tracing),
      },
      bundling: {
        forceDockerBundling: false,
        format: nodejs.OutputFormat.ESM,
        target: 'node24',
        minify: true,
        // The source map goes into the asset beside the bundle, for mapping a logged stack trace by hand; it is not
        // loaded at init (--enable-source-maps parses the 1.4 MB map on every cold start, bench scenario 5).
        sourceMap: true,
        sourcesContent: false,
        mainFields: ['module', 'main'],
        banner: ESM_REQUIRE_SHIM,
        // The SDK goes into the bundle so the versions in package-lock.json are the ones that run.
        bundleAwsSDK: true,
      },
    });

    if (props.vpc !== undefined) this.#grantVpcAccess();
    if (props.tracing) {
      acknowledge(
        this.role.node.findChild('DefaultPolicy'),
        'AwsSolutions-IAM5[Resource::*]',
        'Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions.',
      );
    }
  }

  /**
   * What Lambda needs of the role to attach the function to a VPC: the actions of AWS's
   * AWSLambdaVPCAccessExecutionRole (which CDK adds only to roles it creates), in a policy of their own.
   */
  #grantVpcAccess(): void {
    const policy = new iam.Policy(this, 'VpcAccessPolicy', {
      roles: [this.role],
      statements: [
        new iam.PolicyStatement({
          actions: [
            'ec2:CreateNetworkInterface',
            'ec2:DescribeNetworkInterfaces',
            'ec2:DescribeSubnets',
            'ec2:DeleteNetworkInterface',
            'ec2:AssignPrivateIpAddresses',
            'ec2:UnassignPrivateIpAddresses',
          ],
          resources: ['*'],
        }),
      ],
    });
    acknowledge(
      policy,
      'AwsSolutions-IAM5[Resource::*]',
      "Lambda's own VPC attachment: exactly the actions of AWS's AWSLambdaVPCAccessExecutionRole, which Lambda " +
        "uses to manage the function's network interfaces; the Describe actions support no resource-level " +
        'permissions, and Lambda validates the others against "*".',
    );
  }

  /**
   * Lets the function use exactly one token table: the item-level actions of the token store, on that table
   * only. For a table encrypted with a customer-managed key, also the key use DynamoDB makes on the caller's
   * behalf, and only through DynamoDB.
   */
  public grantTokenTable(table: dynamodb.ITable, leadingKeys?: readonly string[]): void {
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: [...TOKEN_TABLE_ACTIONS],
        resources: [table.tableArn],
        // Only the items whose partition key matches: a family's function cannot read or plant another's.
        ...(leadingKeys === undefined
          ? {}
          : { conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [...leadingKeys] } } }),
      }),
    );
    if (table.encryptionKey !== undefined) {
      this.#grantKeyVia(table.encryptionKey, 'dynamodb', [
        'kms:Decrypt',
        'kms:Encrypt',
        'kms:GenerateDataKey',
        'kms:DescribeKey',
      ]);
    }
  }

  /**
   * Lets the function query one index of the table for one partition value: the schedule's due connectors, keys
   * only (what the items hold is read through {@link grantTokenTable}'s item-key conditions).
   */
  public grantQueryIndex(table: dynamodb.ITable, indexName: string, partitionValue: string): void {
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['dynamodb:Query'],
        resources: [`${table.tableArn}/index/${indexName}`],
        conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [partitionValue] } },
      }),
    );
  }

  /**
   * Lets the function seal and open token values with `key`, in the key's policy, only for `families` (the Encryption
   * SDK passes the family as encryption context, which KMS checks; the item is bound inside the sealed value). Values
   * sealed before that carry their item as context: those the function may still open, for its families' items.
   */
  public grantTokenKey(key: kms.IKey, families: readonly string[]): void {
    const grants = [
      {
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        conditions: { StringEquals: { [`kms:EncryptionContext:${SEAL_CONTEXT_FAMILY}`]: [...families] } },
      },
      {
        actions: ['kms:Decrypt'],
        conditions: {
          StringLike: { [`kms:EncryptionContext:${SEAL_CONTEXT_ITEM}`]: families.flatMap(familyItemPatterns) },
        },
      },
    ];
    for (const { actions, conditions } of grants) {
      // In a key policy, "*" is the key itself.
      const { statementAdded } = key.addToResourcePolicy(
        new iam.PolicyStatement({ principals: [this.role], actions, resources: ['*'], conditions }),
      );
      // A key of another stack (imported) keeps its own policy: the role gets the same grant in an identity policy,
      // which works when that key policy lets the account's IAM policies decide.
      if (!statementAdded) {
        this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions, resources: [key.keyArn], conditions }));
      }
    }
    this.function.addEnvironment(ENV.tokenKeyId, key.keyArn);
  }

  /**
   * Lets the function read the secrets whose names start with `namePrefix` (which ends with `/`).
   * @param key the customer-managed key the secrets are encrypted with, if any
   */
  public grantReadSecrets(namePrefix: string, key?: kms.IKey): void {
    const resource = this.secretArnPattern(namePrefix);
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [resource] }),
    );
    this.#acknowledgeSecretWildcard(resource, namePrefix);
    if (key !== undefined) this.#grantKeyVia(key, 'secretsmanager', ['kms:Decrypt'], namePrefix);
  }

  /**
   * Lets the function write new versions of the secrets whose names start with `namePrefix` (which ends with `/`).
   * @param key the customer-managed key the secrets are encrypted with, if any
   * @see https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html PutSecretValue needs
   *   kms:GenerateDataKey
   */
  public grantWriteSecrets(namePrefix: string, key?: kms.IKey): void {
    const resource = this.secretArnPattern(namePrefix);
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['secretsmanager:PutSecretValue'], resources: [resource] }),
    );
    this.#acknowledgeSecretWildcard(resource, namePrefix);
    if (key !== undefined) this.#grantKeyVia(key, 'secretsmanager', ['kms:GenerateDataKey'], namePrefix);
  }

  /**
   * Lets the function sign with exactly the asymmetric KMS keys `keyArns` (`kms:Sign`, nothing else: the public key
   * is registered with the token server once, by the operator). Nothing when the list is empty.
   */
  public grantSign(keyArns: readonly string[]): void {
    if (keyArns.length === 0) return;
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['kms:Sign'], resources: [...keyArns] }));
  }

  /**
   * Lets the function hand work to `target` by invoking it (the vends hand due tokens to the refresher), on that
   * function's unqualified ARN only, and tells the function its name.
   */
  public grantInvoke(target: TokenVendorFunction, variable: string): void {
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [target.function.functionArn] }),
    );
    this.function.addEnvironment(variable, target.function.functionName);
  }

  /**
   * Lets the function list secret names (the scheduled run discovers connectors so). A policy of its own, so
   * that its acknowledged wildcard covers this one action and nothing else.
   */
  public grantListSecrets(): iam.Policy {
    const policy = new iam.Policy(this, 'ListSecretsPolicy', {
      roles: [this.role],
      statements: [new iam.PolicyStatement({ actions: ['secretsmanager:ListSecrets'], resources: ['*'] })],
    });
    acknowledge(
      policy,
      'AwsSolutions-IAM5[Resource::*]',
      'secretsmanager:ListSecrets supports no resource-level permissions; it returns names and metadata, never ' +
        'secret values, which this role may read only under the connector name prefix.',
    );
    return policy;
  }

  /** The ARN pattern of every secret whose name starts with `namePrefix` (Secrets Manager appends `-XXXXXX`). */
  public secretArnPattern(namePrefix: string): string {
    // Without the closing "/", "token-vendor/password" would also grant "token-vendor/password-reset/…".
    if (!namePrefix.endsWith('/') || namePrefix.includes('*')) {
      throw new Error(`A secret name prefix ends with "/" and has no wildcard: "${namePrefix}"`);
    }
    return Stack.of(this).formatArn({
      service: 'secretsmanager',
      resource: 'secret',
      resourceName: `${namePrefix}*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  }

  #acknowledgeSecretWildcard(resource: string, namePrefix: string): void {
    acknowledge(
      this.role,
      wildcardResourceFinding(this, resource),
      `Connectors are secrets that operators add at run time, so they are granted by name: the wildcard covers the ` +
        `names under "${namePrefix}" and the random suffix Secrets Manager appends to every secret ARN.`,
    );
  }

  /**
   * Key use limited to requests a service makes on the function's behalf; for Secrets Manager also to the secrets
   * under the name prefix, through the encryption context Secrets Manager sets.
   */
  #grantKeyVia(key: kms.IKey, service: 'dynamodb' | 'secretsmanager', actions: string[], namePrefix?: string): void {
    const stack = Stack.of(this);
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions,
        resources: [key.keyArn],
        conditions: {
          StringEquals: { 'kms:ViaService': `${service}.${stack.region}.${stack.urlSuffix}` },
          ...(namePrefix === undefined
            ? {}
            : { StringLike: { 'kms:EncryptionContext:SecretARN': this.secretArnPattern(namePrefix) } }),
        },
      }),
    );
  }
}
