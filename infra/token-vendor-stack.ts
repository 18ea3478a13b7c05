import {
  App,
  type AppProps,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  type StackProps,
  Validations,
} from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as sns from 'aws-cdk-lib/aws-sns';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Construct, Node } from 'constructs';
import { STAGE_NAME, TokenVendor, type TokenVendorLogLevel, type TokenVendorProps } from './token-vendor.ts';

/**
 * The construct's props, from resolved values or from CDK context (`-c key=value` or cdk.json).
 * Context holds names of resources (a key ARN, a topic ARN) rather than the resources themselves.
 */
export interface TokenVendorStackProps extends StackProps {
  /** Props passed to the construct, except `kmsKey` and `alarmTopic`, which the ARNs below import. */
  readonly vendor?: Omit<TokenVendorProps, 'kmsKey' | 'alarmTopic'>;
  /** ARN of an existing customer-managed key. @default - AWS managed keys */
  readonly kmsKeyArn?: string;
  /** ARN of an existing SNS topic for alarm notifications. @default - alarms without actions */
  readonly alarmTopicArn?: string;
}

/** The token vendor as a deployable stack, with its URL and table name as outputs. */
export class TokenVendorStack extends Stack {
  public readonly vendor: TokenVendor;

  constructor(scope: Construct, id: string, props: TokenVendorStackProps = {}) {
    super(scope, id, { description: 'OAuth 2.0 token vendor (IAM-authorized REST API)', ...props });
    this.vendor = new TokenVendor(this, 'TokenVendor', {
      ...props.vendor,
      ...(props.kmsKeyArn === undefined ? {} : { kmsKey: kms.Key.fromKeyArn(this, 'Key', props.kmsKeyArn) }),
      ...(props.alarmTopicArn === undefined
        ? {}
        : { alarmTopic: sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) }),
    });
    new CfnOutput(this, 'ApiUrl', { value: this.vendor.api.url, description: 'Base URL; append tokens/<family>/<id>' });
    new CfnOutput(this, 'InvokeArnPrefix', {
      value: this.formatArn({
        service: 'execute-api',
        resource: this.vendor.api.restApiId,
        resourceName: STAGE_NAME,
      }),
      description: 'execute-api ARN prefix for identity policies; append /GET/tokens/<family>/<id>',
    });
    new CfnOutput(this, 'TableName', { value: this.vendor.table.tableName });
    new CfnOutput(this, 'SecretPrefix', { value: this.vendor.secretPrefix });
  }
}

/** Refused context; the message names the key. */
export class ContextError extends Error {
  constructor(key: string, message: string) {
    super(`Context ${key}: ${message}`);
    this.name = 'ContextError';
  }
}

const REMOVAL_POLICIES: Readonly<Record<string, RemovalPolicy>> = {
  retain: RemovalPolicy.RETAIN,
  destroy: RemovalPolicy.DESTROY,
};

/**
 * Reads the stack props from context. Values given on the command line are strings; values in cdk.json may
 * be JSON types. Every key is optional; each refused value is named.
 *
 * | key | example |
 * |---|---|
 * | `trustedAccountIds` | `111111111111,222222222222` |
 * | `organizationId` | `o-a1b2c3d4e5` |
 * | `secretPrefix` | `token-vendor` |
 * | `rotationSchedule` | `10` (minutes), `rate(10 minutes)`, `cron(0/10 * * * ? *)` |
 * | `logRetentionDays` | `30` (a value CloudWatch Logs offers) |
 * | `kmsKeyArn` | `arn:aws:kms:…:key/…` |
 * | `removalPolicy` | `retain` \| `destroy` |
 * | `tableDeletionProtection` | `true` \| `false` |
 * | `forcedRefreshSeconds` | `5` |
 * | `throttlingRateLimit`, `throttlingBurstLimit` | `50`, `100` |
 * | `tracing` | `true` \| `false` |
 * | `logLevel` | `DEBUG` \| `INFO` \| `WARN` \| `ERROR` |
 * | `metricsNamespace` | `TokenVendor` |
 * | `alarmTopicArn` | `arn:aws:sns:…` |
 * | `signingKeyArns` | `arn:aws:kms:…:key/…,arn:aws:kms:…:key/…` |
 */
export function stackPropsFromContext(node: Node): TokenVendorStackProps {
  const raw = (key: string): unknown => node.tryGetContext(key);
  const text = (key: string): string | undefined => {
    const value = raw(key);
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string' && typeof value !== 'number') throw new ContextError(key, 'must be a string');
    return String(value).trim();
  };
  const number = (key: string): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed)) throw new ContextError(key, `"${value}" is not a number`);
    return parsed;
  };
  const flag = (key: string): boolean | undefined => {
    const value = raw(key);
    if (value === undefined || typeof value === 'boolean') return value;
    if (value === 'true' || value === 'false') return value === 'true';
    throw new ContextError(key, 'must be true or false');
  };
  const list = (key: string): string[] | undefined => {
    const value = raw(key);
    if (value === undefined || value === null || value === '') return undefined;
    const items = Array.isArray(value) ? value.map(String) : typeof value === 'string' ? value.split(',') : undefined;
    if (items === undefined) throw new ContextError(key, 'must be a comma-separated string or a list');
    return items.map((item) => item.trim()).filter((item) => item !== '');
  };

  const vendor: NonNullable<TokenVendorStackProps['vendor']> = {
    trustedAccountIds: list('trustedAccountIds'),
    signingKeyArns: list('signingKeyArns'),
    organizationId: text('organizationId'),
    secretPrefix: text('secretPrefix'),
    rotationSchedule: rotationSchedule(text('rotationSchedule')),
    logRetention: logRetention(number('logRetentionDays')),
    removalPolicy: removalPolicy(text('removalPolicy')),
    tableDeletionProtection: flag('tableDeletionProtection'),
    forcedRefreshSeconds: number('forcedRefreshSeconds'),
    throttling: throttling(number('throttlingRateLimit'), number('throttlingBurstLimit')),
    tracing: flag('tracing'),
    logLevel: text('logLevel')?.toUpperCase() as TokenVendorLogLevel | undefined,
    metricsNamespace: text('metricsNamespace'),
  };
  const kmsKeyArn = text('kmsKeyArn');
  if (kmsKeyArn !== undefined && !/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(kmsKeyArn)) {
    throw new ContextError('kmsKeyArn', `"${kmsKeyArn}" is not a KMS key ARN`);
  }
  const alarmTopicArn = text('alarmTopicArn');
  if (alarmTopicArn !== undefined && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$/.test(alarmTopicArn)) {
    throw new ContextError('alarmTopicArn', `"${alarmTopicArn}" is not an SNS topic ARN`);
  }
  return {
    vendor,
    ...(kmsKeyArn === undefined ? {} : { kmsKeyArn }),
    ...(alarmTopicArn === undefined ? {} : { alarmTopicArn }),
  };
}

function rotationSchedule(value: string | undefined): Duration | scheduler.ScheduleExpression | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value)) return Duration.minutes(Number(value));
  if (/^(rate|cron)\(.+\)$/.test(value)) return scheduler.ScheduleExpression.expression(value);
  throw new ContextError('rotationSchedule', `"${value}" is neither minutes nor a rate(…)/cron(…) expression`);
}

function logRetention(days: number | undefined): logs.RetentionDays | undefined {
  if (days === undefined) return undefined;
  const offered = Object.values(logs.RetentionDays).filter((value): value is number => typeof value === 'number');
  if (!offered.includes(days))
    throw new ContextError('logRetentionDays', `${days} is not one of ${offered.join(', ')}`);
  return days as logs.RetentionDays;
}

function removalPolicy(value: string | undefined): RemovalPolicy | undefined {
  if (value === undefined) return undefined;
  const policy = REMOVAL_POLICIES[value.toLowerCase()];
  if (policy === undefined) throw new ContextError('removalPolicy', `"${value}" is not retain or destroy`);
  return policy;
}

function throttling(rateLimit: number | undefined, burstLimit: number | undefined) {
  if (rateLimit === undefined && burstLimit === undefined) return undefined;
  return { ...(rateLimit === undefined ? {} : { rateLimit }), ...(burstLimit === undefined ? {} : { burstLimit }) };
}

/**
 * The CDK app: the token vendor stack from context, checked at synth by the AwsSolutions rule pack. Synth fails
 * on any finding not acknowledged in code.
 */
export function createTokenVendorApp(props: AppProps = {}): { app: App; stack: TokenVendorStack } {
  const app = new App(props);
  const stackName = app.node.tryGetContext('stackName');
  const stack = new TokenVendorStack(
    app,
    typeof stackName === 'string' && stackName !== '' ? stackName : 'TokenVendor',
    stackPropsFromContext(app.node),
  );
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { writeSuppressionsToCloudFormation: true }));
  return { app, stack };
}
