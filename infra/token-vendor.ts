import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { CONNECTOR_ID, FAMILIES, type Family, isFamily } from '../shared/core/identifiers.ts';
import {
  DEFAULT_FORCED_REFRESH_SECONDS,
  DEFAULT_METRICS_NAMESPACE,
  DEFAULT_SECRET_PREFIX,
  ENV,
  SECRET_PREFIX,
  SERVICE_NAME,
} from '../shared/core/settings.ts';
import { DUE_INDEX, DUE_SHARD, familyItemPatterns, TABLE_KEY, TTL_ATTRIBUTE } from '../shared/core/table.ts';

/** The reconciliation lists every secret: every five minutes, or at the rotation's rate when that is slower. */
const reconciliationInterval = (rotation: Duration): Duration =>
  rotation.toSeconds() >= 300 ? rotation : Duration.minutes(5);

/** What the account may do with the token key: administer it, never use it (kms:Decrypt, kms:GenerateDataKey…). */
const KEY_ADMIN_ACTIONS = [
  'kms:Create*',
  'kms:Describe*',
  'kms:Enable*',
  'kms:List*',
  'kms:Put*',
  'kms:Update*',
  'kms:Revoke*',
  'kms:Disable*',
  'kms:Get*',
  'kms:Delete*',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
];

import { acknowledge, wildcardResourceFinding } from './acknowledge.ts';
import { TokenVendorFunction } from './token-vendor-function.ts';

/** Request rate limits of the API stage. */
export interface TokenVendorThrottling {
  /** Steady-state requests per second across all methods. @default 50 */
  readonly rateLimit?: number;
  /** Requests that may arrive at once above the steady rate. @default 100 */
  readonly burstLimit?: number;
}

/**
 * The functions' tuning settings (the `TOKEN_VENDOR_*_SECONDS` variables, README "Settings"); each absent one
 * keeps the service's default.
 */
export interface TokenVendorTuning {
  /** How long a container serves a token from memory after it last read or wrote it in the table. @default 10 */
  readonly memoryStalenessSeconds?: number;
  /** How long a container keeps a connector document before reading it again. @default 30 */
  readonly secretMaxAgeSeconds?: number;
  /** The lease on a connector's token fetch; above `fetchDeadlineSeconds`. @default 15 */
  readonly leaseSeconds?: number;
  /** How long a caller waits for another holder's token; below the functions' 29 s. @default 20 */
  readonly waitSeconds?: number;
  /** One attempt at the token server. @default 5 */
  readonly attemptTimeoutSeconds?: number;
  /** All attempts of one fetch; below `leaseSeconds`. @default 12 */
  readonly fetchDeadlineSeconds?: number;
  /** Attempts per fetch for grants that may be repeated (client credentials, password). @default 3 */
  readonly maxAttempts?: number;
  /** The `minTtl` of a caller that gives none. @default 60 */
  readonly defaultMinTtlSeconds?: number;
  /** A refresh token unused this long is refreshed by the schedule (servers expire idle ones). @default 86400 */
  readonly idleRefreshSeconds?: number;
}

/** Log levels Powertools accepts in `POWERTOOLS_LOG_LEVEL`. */
export type TokenVendorLogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

export interface TokenVendorProps {
  /**
   * Connectors are the Secrets Manager secrets named `<secretPrefix>/<family>/<connectorId>`.
   * @default 'token-vendor'
   */
  readonly secretPrefix?: string;
  /**
   * Accounts (12-digit IDs) whose IAM principals the API's resource policy admits, besides the deploying account.
   * Each caller still needs an identity policy allowing `execute-api:Invoke`, and the connector's
   * `allowedPrincipals` must name it.
   * @default - none: only the deploying account and `organizationId`
   */
  readonly trustedAccountIds?: readonly string[];
  /**
   * An AWS Organizations ID (`o-…`) whose IAM principals the resource policy admits (`aws:PrincipalOrgID`).
   * @default - no organization
   */
  readonly organizationId?: string;
  /**
   * How often the scheduled function refreshes refresh-token and `prewarm` connectors that are due: a whole number
   * of minutes, or any EventBridge Scheduler expression. A run reads only what is due, so every minute is cheap, and
   * refresh margins (at most 90 s) assume it. The reconciliation with the connector secrets runs every five minutes,
   * or at this rate when it is slower.
   * @default Duration.minutes(1)
   */
  readonly rotationSchedule?: Duration | scheduler.ScheduleExpression;
  /**
   * How long the functions' logs and the API's access logs are kept.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * A customer-managed key. The token table is encrypted with it, and the functions may use it (through Secrets
   * Manager only, and only for connector secrets) to read and write connector secrets encrypted with it.
   * @default - the table uses the AWS managed key `aws/dynamodb`; secrets are expected under `aws/secretsmanager`
   */
  readonly kmsKey?: kms.IKey;
  /**
   * What happens to the token table and the log groups when they leave the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Whether the token table refuses deletion, by CloudFormation as by anyone else.
   * @default true
   */
  readonly tableDeletionProtection?: boolean;
  /**
   * Least spacing, in seconds, of forced refreshes (`POST …/refresh`) per connector; `0` means no limit.
   * @default 5
   */
  readonly forcedRefreshSeconds?: number;
  /**
   * Rate limits of the API stage.
   * @default - 50 requests per second, bursts of 100
   */
  readonly throttling?: TokenVendorThrottling;
  /**
   * Active X-Ray tracing of the functions and the API stage.
   * @default false
   */
  readonly tracing?: boolean;
  /**
   * The functions' log level.
   * @default 'INFO'
   */
  readonly logLevel?: TokenVendorLogLevel;
  /**
   * CloudWatch namespace of the functions' metrics, and of the alarms on them.
   * @default 'TokenVendor'
   */
  readonly metricsNamespace?: string;
  /**
   * A topic every alarm notifies when it goes into and out of alarm.
   * @default - alarms without actions
   */
  readonly alarmTopic?: sns.ITopic;
  /**
   * A VPC to run the functions in, to reach token servers on a private network (through `vpcSubnets`' routes).
   * The subnets need a way to DynamoDB, Secrets Manager, KMS and Lambda (NAT or VPC endpoints), and to any public
   * token server.
   * @default - no VPC: the functions reach public token servers only
   */
  readonly vpc?: ec2.IVpc;
  /** Where in `vpc` the functions' network interfaces go. @default - the VPC's private subnets */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /**
   * Security groups of the functions in `vpc`.
   * @default - one group for all the functions, all outbound traffic allowed (see `connections`)
   */
  readonly securityGroups?: readonly ec2.ISecurityGroup[];
  /**
   * Whether connectors' token URLs may resolve to private addresses (RFC 1918, RFC 4193, CGNAT); loopback,
   * link-local and the metadata service stay refused. Needs `vpc`: outside a VPC no private address is reachable.
   * @default false
   */
  readonly allowPrivateNetworks?: boolean;
  /** The functions' tuning settings. @default - the service's defaults */
  readonly tuning?: TokenVendorTuning;
  /**
   * The p99 of the API's latency above which the latency alarm goes off (two of three 5-minute periods).
   * @default Duration.seconds(5)
   */
  readonly latencyAlarmThreshold?: Duration;
  /**
   * An existing token table instead of one of the construct's: partition key `pk` (string), TTL attribute `ttl`,
   * no sort key, and the schedule's global secondary index `due` (partition key `dueShard` string, sort key `dueAt`
   * number, keys only). Its own settings (deletion protection, encryption) stay as they are, so `tableDeletionProtection`
   * may not be given with it.
   * @default - a new table
   */
  readonly table?: dynamodb.ITable;
  /**
   * An existing symmetric KMS key to seal token values with, instead of a new one. A key of this stack gets the
   * per-family grants in its key policy; an imported key gets them in the roles' policies, which its key policy
   * must let the account's IAM policies grant.
   * @default - a new key, rotated yearly
   */
  readonly tokenKey?: kms.IKey;
  /**
   * ARNs of the asymmetric KMS keys (`SIGN_VERIFY`) that connectors name in `signingKey.kmsKeyId` to sign JWT
   * bearer assertions and `private_key_jwt` client assertions. Every vending function and the scheduled one may call
   * `kms:Sign` on exactly these keys, and on no other; the private keys never leave KMS. A connector may name a key
   * by ID, ARN or alias, but the key must be one of these. Key ARNs, not alias ARNs: IAM authorizes `kms:Sign` on the
   * key.
   * @default - none: connectors can sign only with a `privateKeyPem`
   */
  readonly signingKeyArns?: readonly string[];
}

/** Refused construct props; the message names the prop. */
export class TokenVendorPropsError extends Error {
  constructor(message: string) {
    super(`TokenVendor: ${message}`);
    this.name = 'TokenVendorPropsError';
  }
}

const DEFAULTS = {
  secretPrefix: DEFAULT_SECRET_PREFIX,
  trustedAccountIds: [] as readonly string[],
  signingKeyArns: [] as readonly string[],
  rotationSchedule: Duration.minutes(1),
  logRetention: logs.RetentionDays.ONE_MONTH,
  removalPolicy: RemovalPolicy.RETAIN,
  tableDeletionProtection: true,
  forcedRefreshSeconds: DEFAULT_FORCED_REFRESH_SECONDS,
  throttling: { rateLimit: 50, burstLimit: 100 },
  tracing: false,
  logLevel: 'INFO',
  metricsNamespace: DEFAULT_METRICS_NAMESPACE,
} as const;
/** The API's stage, the first segment of every path. */
export const STAGE_NAME = 'v1';
export const ACCOUNT_ID = /^\d{12}$/;
export const ORGANIZATION_ID = /^o-[a-z0-9]{10,32}$/;
/** A KMS key ARN (not an alias ARN: IAM authorizes `kms:Sign` on the key itself). */
export const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;
const LOG_LEVELS: readonly string[] = ['DEBUG', 'INFO', 'WARN', 'ERROR'];
const FAMILY_NAMES = Object.keys(FAMILIES) as Family[];

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

type OptionalProps =
  | 'organizationId'
  | 'kmsKey'
  | 'alarmTopic'
  | 'vpc'
  | 'vpcSubnets'
  | 'securityGroups'
  | 'table'
  | 'tokenKey'
  | 'tuning'
  | 'allowPrivateNetworks'
  | 'latencyAlarmThreshold';
type Resolved = Required<Omit<TokenVendorProps, OptionalProps | 'throttling'>> &
  Pick<TokenVendorProps, OptionalProps> & {
    readonly throttling: Required<TokenVendorThrottling>;
  };

/** Upper bounds of the tuning settings: what the functions' own limits leave room for. */
const TUNING_LIMITS: Readonly<Record<keyof TokenVendorTuning, number>> = {
  memoryStalenessSeconds: 3600,
  secretMaxAgeSeconds: 3600,
  leaseSeconds: 300,
  // API Gateway and the vend functions give up after 29 s.
  waitSeconds: 28,
  attemptTimeoutSeconds: 60,
  fetchDeadlineSeconds: 299,
  maxAttempts: 10,
  defaultMinTtlSeconds: 86_400,
  idleRefreshSeconds: 30 * 86_400,
};

/** Props that only mean something together with another, or that another makes meaningless. */
function refuseContradictions(props: TokenVendorProps): void {
  if (props.vpc === undefined) {
    for (const name of ['vpcSubnets', 'securityGroups', 'allowPrivateNetworks'] as const) {
      if (props[name] !== undefined && props[name] !== false) {
        throw new TokenVendorPropsError(`${name} needs vpc: outside a VPC the functions reach no private network`);
      }
    }
  }
  if (props.securityGroups?.length === 0) {
    throw new TokenVendorPropsError('securityGroups must not be empty (leave it out for a group of its own)');
  }
  if (props.table !== undefined && props.tableDeletionProtection !== undefined) {
    throw new TokenVendorPropsError(
      'tableDeletionProtection applies to a table the construct creates; the table given keeps its own setting',
    );
  }
  const tuning = props.tuning ?? {};
  for (const [name, value] of Object.entries(tuning) as [keyof TokenVendorTuning, number | undefined][]) {
    if (value === undefined) continue;
    const max = TUNING_LIMITS[name];
    if (!Number.isInteger(value) || value < 1 || value > max) {
      throw new TokenVendorPropsError(`tuning.${name} must be a whole number from 1 to ${max}, not ${value}`);
    }
  }
  const lease = tuning.leaseSeconds ?? 15;
  const deadline = tuning.fetchDeadlineSeconds ?? 12;
  if (deadline >= lease) {
    throw new TokenVendorPropsError(
      `tuning.fetchDeadlineSeconds (${deadline}) must be below tuning.leaseSeconds (${lease}): a fetch ends within its lease`,
    );
  }
}

/** Defaults merged under the caller's values, then every value checked; the first bad one is refused by name. */
function resolveProps(props: TokenVendorProps): Resolved {
  // An explicit `undefined` means "not given", as it does for every optional prop.
  const given = Object.fromEntries(
    Object.entries(props).filter(([, value]) => value !== undefined),
  ) as Partial<TokenVendorProps>;
  refuseContradictions(given);
  const resolved: Resolved = {
    ...DEFAULTS,
    ...given,
    trustedAccountIds: [...new Set(props.trustedAccountIds ?? DEFAULTS.trustedAccountIds)],
    signingKeyArns: [...new Set(props.signingKeyArns ?? DEFAULTS.signingKeyArns)],
    throttling: {
      rateLimit: props.throttling?.rateLimit ?? DEFAULTS.throttling.rateLimit,
      burstLimit: props.throttling?.burstLimit ?? DEFAULTS.throttling.burstLimit,
    },
  };
  if (!SECRET_PREFIX.test(resolved.secretPrefix)) {
    throw new TokenVendorPropsError(
      `secretPrefix "${resolved.secretPrefix}" must be segments of A-Z a-z 0-9 _+=.@- separated by single "/"`,
    );
  }
  for (const accountId of resolved.trustedAccountIds) {
    if (!ACCOUNT_ID.test(accountId)) {
      throw new TokenVendorPropsError(`trustedAccountIds: "${accountId}" is not a 12-digit AWS account ID`);
    }
  }
  for (const keyArn of resolved.signingKeyArns) {
    if (!KMS_KEY_ARN.test(keyArn)) {
      throw new TokenVendorPropsError(`signingKeyArns: "${keyArn}" is not a KMS key ARN (arn:…:kms:…:key/…)`);
    }
  }
  if (resolved.organizationId !== undefined && !ORGANIZATION_ID.test(resolved.organizationId)) {
    throw new TokenVendorPropsError(`organizationId "${resolved.organizationId}" does not match ${ORGANIZATION_ID}`);
  }
  const schedule = resolved.rotationSchedule;
  if (schedule instanceof Duration && (schedule.toSeconds() < 60 || schedule.toSeconds() % 60 !== 0)) {
    throw new TokenVendorPropsError(`rotationSchedule must be a whole number of minutes, not ${schedule}`);
  }
  const spacing = resolved.forcedRefreshSeconds;
  if (!Number.isFinite(spacing) || spacing < 0 || spacing > 3600) {
    throw new TokenVendorPropsError(`forcedRefreshSeconds must be between 0 and 3600, not ${spacing}`);
  }
  const { rateLimit, burstLimit } = resolved.throttling;
  if (!Number.isFinite(rateLimit) || rateLimit <= 0) {
    throw new TokenVendorPropsError(`throttling.rateLimit must be a positive number, not ${rateLimit}`);
  }
  if (!Number.isInteger(burstLimit) || burstLimit < 1) {
    throw new TokenVendorPropsError(`throttling.burstLimit must be a positive integer, not ${burstLimit}`);
  }
  if (!LOG_LEVELS.includes(resolved.logLevel)) {
    throw new TokenVendorPropsError(`logLevel must be one of ${LOG_LEVELS.join(', ')}, not ${resolved.logLevel}`);
  }
  if (!/^[A-Za-z0-9_./#:-]{1,255}$/.test(resolved.metricsNamespace) || resolved.metricsNamespace.startsWith('AWS/')) {
    throw new TokenVendorPropsError(`metricsNamespace "${resolved.metricsNamespace}" is not a custom namespace`);
  }
  return resolved;
}

/**
 * The OAuth 2.0 token vendor: one Lambda function per grant family behind an IAM-authorized REST API that other
 * accounts may call, a scheduled function that keeps refresh-token and `prewarm` connectors fresh, the token
 * table, and alarms. Every role may do only what its function does: read its own family's secrets, write
 * refresh-token secrets (the refresh-token and scheduled functions only), use the token table, and sign with the
 * KMS keys named in `signingKeyArns`.
 *
 * Routes, all `AWS_IAM`: `GET /tokens/<family>/{connectorId}` and `POST /tokens/<family>/{connectorId}/refresh`,
 * so that an identity policy can allow `execute-api:Invoke` on one connector's paths.
 *
 * @example
 * const vendor = new TokenVendor(this, 'TokenVendor', {
 *   trustedAccountIds: ['111111111111'],
 *   organizationId: 'o-a1b2c3d4e5',
 *   rotationSchedule: Duration.minutes(10),
 * });
 * new CfnOutput(this, 'ApiUrl', { value: vendor.api.url });
 */
export class TokenVendor extends Construct {
  /** The REST API. */
  public readonly api: apigateway.RestApi;
  /** The API's access log group. */
  public readonly accessLogGroup: logs.LogGroup;
  /** The token table (cached tokens, leases, rotation state): the construct's, or the one given. */
  public readonly table: dynamodb.ITable;
  /** The customer-managed key that seals every token value in the table: the construct's, or the one given. */
  public readonly tokenKey: kms.IKey;
  /** The vending function of each grant family. */
  public readonly functions: Readonly<Record<Family, TokenVendorFunction>>;
  /** The scheduled function. */
  public readonly rotateFunction: TokenVendorFunction;
  /** The schedule that invokes the scheduled function. */
  public readonly rotationSchedule: scheduler.Schedule;
  /** The schedule that reconciles cached tokens with connector secrets that changed (the listing's dates). */
  public readonly reconciliationSchedule: scheduler.Schedule;
  /** Secret changes (through CloudTrail) that sync their connector at once. */
  public readonly secretChangesRule: events.Rule;
  /** Any error of the scheduled function (a run that failed as a whole). */
  public readonly rotateErrorsAlarm: cloudwatch.Alarm;
  /** Connectors the scheduled run could not refresh (the functions' `ScheduledRunFailures` metric). */
  public readonly scheduledRunFailuresAlarm: cloudwatch.Alarm;
  /** Connectors the token server refused with `invalid_grant` or `invalid_client` (`ConnectorsNeedingReauthorization` > 0). */
  public readonly reauthorizationAlarm: cloudwatch.Alarm;
  /** More than 5% of the API's answers were 5xx over five minutes (with at least 10 requests). */
  public readonly serverErrorRateAlarm: cloudwatch.Alarm;
  /** The API's p99 latency above `latencyAlarmThreshold` in two of three 5-minute periods. */
  public readonly latencyAlarm: cloudwatch.Alarm;
  /** More than 20% of token fetches failed over five minutes (with at least 5 fetches). */
  public readonly fetchFailureAlarm: cloudwatch.Alarm;
  /** Vends, latency, token fetches and their outcomes, connector health, throttles, the refresher and the schedule. */
  public readonly dashboard: cloudwatch.Dashboard;
  /** The secret name prefix, as given or defaulted. */
  public readonly secretPrefix: string;
  readonly #connections: ec2.Connections | undefined;

  constructor(scope: Construct, id: string, props: TokenVendorProps = {}) {
    super(scope, id);
    const config = resolveProps(props);
    this.secretPrefix = config.secretPrefix;
    const familyPrefix = (family: Family) => `${config.secretPrefix}/${family}/`;

    this.table = config.table ?? this.#newTable(config);
    this.tokenKey =
      config.tokenKey ??
      new kms.Key(this, 'TokenKey', {
        description: 'Token vendor: seals every access and refresh token stored in the token table',
        enableKeyRotation: true,
        removalPolicy: config.removalPolicy,
        // Administration for the account; using the key is granted in this policy to the vendor's roles alone, per
        // family through the encryption context, so no IAM policy elsewhere in the account can open a token.
        policy: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              principals: [new iam.AccountRootPrincipal()],
              actions: KEY_ADMIN_ACTIONS,
              resources: ['*'],
            }),
          ],
        }),
      });
    const securityGroups =
      config.vpc === undefined
        ? undefined
        : (config.securityGroups ?? [
            new ec2.SecurityGroup(this, 'FunctionsSecurityGroup', {
              vpc: config.vpc,
              description: 'Token vendor functions: outbound to token servers and AWS APIs, nothing inbound',
              allowAllOutbound: true,
            }),
          ]);
    this.#connections =
      securityGroups === undefined ? undefined : new ec2.Connections({ securityGroups: [...securityGroups] });

    const tuning = Object.entries(config.tuning ?? {}).flatMap(([name, value]) =>
      value === undefined ? [] : [[ENV[name as keyof TokenVendorTuning], String(value)]],
    );
    const environment = {
      [ENV.table]: this.table.tableName,
      [ENV.secretPrefix]: config.secretPrefix,
      [ENV.forcedRefreshSeconds]: String(config.forcedRefreshSeconds),
      ...(config.allowPrivateNetworks === true ? { [ENV.allowPrivateNetworks]: 'true' } : {}),
      ...Object.fromEntries(tuning),
      POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
      POWERTOOLS_METRICS_NAMESPACE: config.metricsNamespace,
    };
    const common = {
      ...(config.vpc === undefined
        ? {}
        : {
            vpc: config.vpc,
            ...(config.vpcSubnets === undefined ? {} : { vpcSubnets: config.vpcSubnets }),
            securityGroups,
          }),
      depsLockFilePath: `${repoRoot}package-lock.json`,
      environment,
      logRetention: config.logRetention,
      removalPolicy: config.removalPolicy,
      tracing: config.tracing,
      logLevel: config.logLevel,
    };

    const schedule = config.rotationSchedule;
    this.rotateFunction = new TokenVendorFunction(this, 'RotateFunction', {
      ...common,
      environment: {
        ...environment,
        // A reconciliation looks back over its interval plus the minutes Secrets Manager's listing may lag.
        ...(schedule instanceof Duration
          ? { [ENV.reconcileWindowSeconds]: String(reconciliationInterval(schedule).toSeconds() + 600) }
          : {}),
      },
      entry: `${repoRoot}functions/rotate.ts`,
      description:
        'Token vendor: refreshes refresh-token and prewarm connectors on a schedule, and due tokens on demand',
      timeout: Duration.minutes(4),
      // The next scheduled run is the retry; an immediate one would only overlap it.
      retryAttempts: 0,
    });
    // The schedule and the refresher work on every family's connectors.
    const everyItem = FAMILY_NAMES.flatMap(familyItemPatterns);
    this.rotateFunction.grantTokenTable(this.table, everyItem);
    this.rotateFunction.grantQueryIndex(this.table, DUE_INDEX.name, DUE_SHARD);
    this.rotateFunction.grantTokenKey(this.tokenKey, FAMILY_NAMES);
    this.rotateFunction.grantListSecrets();
    for (const family of FAMILY_NAMES) this.rotateFunction.grantReadSecrets(familyPrefix(family), config.kmsKey);
    this.rotateFunction.grantWriteSecrets(familyPrefix('refresh-token'), config.kmsKey);
    this.rotateFunction.grantSign(config.signingKeyArns);

    const functions = {} as Record<Family, TokenVendorFunction>;
    for (const family of FAMILY_NAMES) {
      const fn = new TokenVendorFunction(this, `${pascal(family)}Function`, {
        ...common,
        entry: `${repoRoot}functions/${family}.ts`,
        description: `Token vendor: vends tokens of ${family} connectors`,
        // API Gateway gives up on an integration after 29 seconds; running longer serves nobody.
        timeout: Duration.seconds(29),
      });
      fn.grantTokenTable(this.table, familyItemPatterns(family));
      fn.grantTokenKey(this.tokenKey, [family]);
      fn.grantReadSecrets(familyPrefix(family), config.kmsKey);
      // Only a refresh-token connector changes: the server may rotate its refresh token.
      if (family === 'refresh-token') fn.grantWriteSecrets(familyPrefix(family), config.kmsKey);
      // private_key_jwt serves every family, so every family may sign; the JWT bearer family always signs.
      fn.grantSign(config.signingKeyArns);
      // A token past its refresh point is refreshed by an asynchronous invocation of the rotate function, so no
      // caller waits on the token server and nothing runs on in a container after its response.
      fn.grantInvoke(this.rotateFunction, ENV.refreshFunction);
      functions[family] = fn;
    }
    this.functions = functions;

    [this.rotationSchedule, this.reconciliationSchedule] = this.#schedules(config.rotationSchedule);
    this.secretChangesRule = this.#secretChanges(config.secretPrefix);
    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: config.logRetention,
      removalPolicy: config.removalPolicy,
    });
    this.api = this.#api(config);

    const latencyThreshold = config.latencyAlarmThreshold ?? Duration.seconds(5);
    const alarms = this.#alarms(config.metricsNamespace, latencyThreshold);
    this.rotateErrorsAlarm = alarms.rotateErrors;
    this.scheduledRunFailuresAlarm = alarms.scheduledRunFailures;
    this.reauthorizationAlarm = alarms.reauthorization;
    this.serverErrorRateAlarm = alarms.serverErrorRate;
    this.latencyAlarm = alarms.latency;
    this.fetchFailureAlarm = alarms.fetchFailures;
    this.dashboard = this.#dashboard(config.metricsNamespace, Object.values(alarms), latencyThreshold);
    if (config.alarmTopic !== undefined) {
      const action = new cloudwatchActions.SnsAction(config.alarmTopic);
      for (const alarm of Object.values(alarms)) {
        alarm.addAlarmAction(action);
        alarm.addOkAction(action);
      }
    }
  }

  /**
   * Secrets Manager calls that change a connector's secret, as EventBridge receives them from CloudTrail (an
   * account needs a trail for these; delivery is best effort): each one syncs that connector at once. The
   * reconciliation schedule catches what this misses.
   */
  #secretChanges(secretPrefix: string): events.Rule {
    const { partition, region, account } = Stack.of(this);
    return new events.Rule(this, 'SecretChanges', {
      description: 'Token vendor: syncs cached tokens with a connector secret that changed',
      eventPattern: {
        source: ['aws.secretsmanager'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: {
          eventSource: ['secretsmanager.amazonaws.com'],
          eventName: ['PutSecretValue', 'UpdateSecret', 'UpdateSecretVersionStage', 'DeleteSecret', 'RestoreSecret'],
          requestParameters: {
            // A secretId is the secret's name or its ARN.
            secretId: [
              { prefix: `${secretPrefix}/` },
              { prefix: `arn:${partition}:secretsmanager:${region}:${account}:secret:${secretPrefix}/` },
            ],
          },
        },
      },
      targets: [
        new eventsTargets.LambdaFunction(this.rotateFunction.function, {
          retryAttempts: 4,
          maxEventAge: Duration.hours(1),
        }),
      ],
    });
  }

  /**
   * The functions' network connections when they run in a VPC, to let them reach a private token server:
   * `tokenServer.connections.allowFrom(vendor, ec2.Port.tcp(443))`.
   * @throws TokenVendorPropsError without `vpc`
   */
  public get connections(): ec2.Connections {
    if (this.#connections === undefined) throw new TokenVendorPropsError('connections needs vpc');
    return this.#connections;
  }

  /**
   * Lets `grantee` (a workload's role) call the vendor for one connector, as CDK's own `grant*` methods do: an
   * identity policy allowing `execute-api:Invoke` on exactly that connector's two routes (`GET` the token, `POST`
   * its refresh) of this API's stage. The connector's `allowedPrincipals` must still name the caller.
   *
   * @example
   * vendor.grantVend(billingWorker.role, 'client-credentials', 'crm');
   */
  public grantVend(grantee: iam.IGrantable, family: Family, connectorId: string): iam.Grant {
    if (!isFamily(family)) {
      throw new TokenVendorPropsError(`grantVend: unknown family "${family}": one of ${FAMILY_NAMES.join(', ')}`);
    }
    if (!CONNECTOR_ID.test(connectorId)) {
      throw new TokenVendorPropsError(`grantVend: connector ID "${connectorId}" does not match ${CONNECTOR_ID}`);
    }
    const path = `/tokens/${family}/${connectorId}`;
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [
        this.api.arnForExecuteApi('GET', path, STAGE_NAME),
        this.api.arnForExecuteApi('POST', `${path}/refresh`, STAGE_NAME),
      ],
    });
  }

  #newTable(config: Resolved): dynamodb.Table {
    const table = new dynamodb.Table(this, 'Tokens', {
      partitionKey: { name: TABLE_KEY, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: TTL_ATTRIBUTE,
      ...(config.kmsKey === undefined
        ? { encryption: dynamodb.TableEncryption.AWS_MANAGED }
        : { encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED, encryptionKey: config.kmsKey }),
      deletionProtection: config.tableDeletionProtection,
      removalPolicy: config.removalPolicy,
    });
    table.addGlobalSecondaryIndex({
      indexName: DUE_INDEX.name,
      partitionKey: { name: DUE_INDEX.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: DUE_INDEX.sortKey, type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });
    acknowledge(
      table,
      'AwsSolutions-DDB3',
      "The table holds sealed access tokens and each refresh-token connector's live refresh token (sealed under the " +
        'TokenKey), leases and health. A point-in-time restore would bring back refresh tokens the server has ' +
        'already rotated away, and presenting one revokes the grant at servers with reuse detection; the recovery ' +
        'path is the connector secret, which holds the chain at most 10 minutes behind, and access tokens are ' +
        'fetched again.',
    );
    return table;
  }

  /** The rotation schedule and the reconciliation schedule, at the same rate. */
  #schedules(rotation: Duration | scheduler.ScheduleExpression): [scheduler.Schedule, scheduler.Schedule] {
    const role = new iam.Role(this, 'RotationScheduleRole', {
      assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
        // Confused-deputy guard: only schedules of this account may use the role.
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
      description: 'Lets EventBridge Scheduler invoke the token vendor rotate function',
    });
    const target = new schedulerTargets.LambdaInvoke(this.rotateFunction.function, {
      role,
      // A missed run is made up by the next one; retries would only pile up behind it.
      retryAttempts: 0,
      maxEventAge: Duration.minutes(1),
    });
    const expression = rotation instanceof Duration ? scheduler.ScheduleExpression.rate(rotation) : rotation;
    const schedule = new scheduler.Schedule(this, 'RotationSchedule', {
      schedule: expression,
      target,
      description: 'Token vendor: keeps refresh-token and prewarm connectors fresh',
      timeWindow: scheduler.TimeWindow.off(),
    });
    // Its own invocation, so listing every secret never eats into the refreshes' budget.
    const reconciliation = new scheduler.Schedule(this, 'ReconciliationSchedule', {
      schedule:
        rotation instanceof Duration ? scheduler.ScheduleExpression.rate(reconciliationInterval(rotation)) : rotation,
      target: new schedulerTargets.LambdaInvoke(this.rotateFunction.function, {
        role,
        retryAttempts: 0,
        maxEventAge: Duration.minutes(1),
        input: scheduler.ScheduleTargetInput.fromObject({ reconcile: {} }),
      }),
      description: 'Token vendor: syncs cached tokens with connector secrets changed since the last runs',
      timeWindow: scheduler.TimeWindow.off(),
    });
    // Once a day every connector, changed or not: a new deployment's existing connectors, and whatever a missed
    // event and a lagging listing let through.
    new scheduler.Schedule(this, 'FullReconciliationSchedule', {
      schedule: scheduler.ScheduleExpression.rate(Duration.days(1)),
      target: new schedulerTargets.LambdaInvoke(this.rotateFunction.function, {
        role,
        retryAttempts: 2,
        maxEventAge: Duration.hours(1),
        input: scheduler.ScheduleTargetInput.fromObject({ reconcile: { full: true } }),
      }),
      description: 'Token vendor: syncs cached tokens with every connector secret',
      timeWindow: scheduler.TimeWindow.off(),
    });
    acknowledge(
      role,
      wildcardResourceFinding(this, `${this.rotateFunction.function.functionArn}:*`),
      'lambda:InvokeFunction on the rotate function only: LambdaInvoke grants through Function.grantInvoke, whose ' +
        '":*" covers the versions and aliases of that one function.',
    );
    return [schedule, reconciliation];
  }

  #api(config: Resolved): apigateway.RestApi {
    const invoke = ['execute-api:Invoke'];
    const anyMethod = ['execute-api:/*'];
    const statements = [
      new iam.PolicyStatement({
        sid: 'TrustedAccounts',
        principals: [
          new iam.AccountRootPrincipal(),
          ...config.trustedAccountIds.map((accountId) => new iam.AccountPrincipal(accountId)),
        ],
        actions: invoke,
        resources: anyMethod,
      }),
    ];
    if (config.organizationId !== undefined) {
      statements.push(
        new iam.PolicyStatement({
          sid: 'TrustedOrganization',
          principals: [new iam.AnyPrincipal()],
          actions: invoke,
          resources: anyMethod,
          conditions: { StringEquals: { 'aws:PrincipalOrgID': config.organizationId } },
        }),
      );
    }

    const api = new apigateway.RestApi(this, 'Api', {
      restApiName: `${Stack.of(this).stackName}-tokens`,
      description: 'Token vendor: OAuth 2.0 tokens for IAM principals of trusted accounts',
      endpointConfiguration: { types: [apigateway.EndpointType.REGIONAL] },
      policy: new iam.PolicyDocument({ statements }),
      // Execution logging needs the account-wide API Gateway role, which belongs to the account, not this stack.
      cloudWatchRole: false,
      defaultMethodOptions: { authorizationType: apigateway.AuthorizationType.IAM },
      deployOptions: {
        stageName: STAGE_NAME,
        accessLogDestination: new apigateway.LogGroupLogDestination(this.accessLogGroup),
        accessLogFormat: apigateway.AccessLogFormat.custom(
          JSON.stringify({
            requestId: apigateway.AccessLogField.contextRequestId(),
            requestTime: apigateway.AccessLogField.contextRequestTime(),
            caller: apigateway.AccessLogField.contextIdentityUserArn(),
            account: apigateway.AccessLogField.contextIdentityAccountId(),
            sourceIp: apigateway.AccessLogField.contextIdentitySourceIp(),
            httpMethod: apigateway.AccessLogField.contextHttpMethod(),
            path: apigateway.AccessLogField.contextPath(),
            status: apigateway.AccessLogField.contextStatus(),
            error: apigateway.AccessLogField.contextErrorMessage(),
            errorType: apigateway.AccessLogField.contextErrorResponseType(),
            integrationStatus: apigateway.AccessLogField.contextIntegrationStatus(),
            integrationLatency: apigateway.AccessLogField.contextIntegrationLatency(),
            responseLatency: apigateway.AccessLogField.contextResponseLatency(),
          }),
        ),
        throttlingRateLimit: config.throttling.rateLimit,
        throttlingBurstLimit: config.throttling.burstLimit,
        tracingEnabled: config.tracing,
      },
    });

    const validator = api.addRequestValidator('ParameterValidator', {
      requestValidatorName: 'token-vendor-parameters',
      validateRequestParameters: true,
      // No method declares a body model, so this checks nothing today; it applies to any model added later.
      validateRequestBody: true,
    });
    const methodOptions: apigateway.MethodOptions = {
      authorizationType: apigateway.AuthorizationType.IAM,
      requestValidator: validator,
      requestParameters: {
        'method.request.path.connectorId': true,
        'method.request.querystring.scope': false,
        'method.request.querystring.minTtl': false,
      },
    };
    const tokens = api.root.addResource('tokens');
    for (const family of FAMILY_NAMES) {
      // Proxy integration; no test-invoke permission, so only the deployed stage may invoke the function.
      const integration = new apigateway.LambdaIntegration(this.functions[family].function, {
        allowTestInvoke: false,
      });
      const connector = tokens.addResource(family).addResource('{connectorId}');
      const methods = [
        connector.addMethod('GET', integration, methodOptions),
        connector.addResource('refresh').addMethod('POST', integration, methodOptions),
      ];
      for (const method of methods) {
        acknowledge(
          method,
          'AwsSolutions-COG4',
          'Callers are IAM principals of trusted accounts, authorized by SigV4 (AWS_IAM) and the resource policy; ' +
            'there are no Cognito users.',
        );
      }
    }

    // CONTRACT §3: an unknown family is `400 invalid_request`. A catch-all beside the families (API Gateway prefers
    // the static segments) that API Gateway answers itself, after the same SigV4 authorization; no function runs.
    const unknownFamily = new apigateway.MockIntegration({
      requestTemplates: { 'application/json': '{"statusCode": 400}' },
      integrationResponses: [
        {
          statusCode: '400',
          responseParameters: {
            'method.response.header.Cache-Control': "'no-store'",
            'method.response.header.Content-Type': "'application/json'",
          },
          responseTemplates: {
            'application/json': JSON.stringify({
              error: 'invalid_request',
              error_description: 'Unknown grant family in the path.',
            }),
          },
        },
      ],
    });
    const answeredByGateway: apigateway.MethodOptions = {
      ...methodOptions,
      methodResponses: [
        {
          statusCode: '400',
          responseParameters: {
            'method.response.header.Cache-Control': true,
            'method.response.header.Content-Type': true,
          },
        },
      ],
    };
    const anyFamily = tokens.addResource('{family}').addResource('{connectorId}');
    for (const method of [
      anyFamily.addMethod('GET', unknownFamily, answeredByGateway),
      anyFamily.addResource('refresh').addMethod('POST', unknownFamily, answeredByGateway),
    ]) {
      acknowledge(
        method,
        'AwsSolutions-COG4',
        'Callers are IAM principals of trusted accounts, authorized by SigV4 (AWS_IAM) and the resource policy; ' +
          'there are no Cognito users.',
      );
    }

    addContractGatewayResponses(api);

    acknowledge(
      api.deploymentStage,
      'AwsSolutions-APIG3',
      'Every method requires a SigV4 signature of a principal the resource policy admits, so API Gateway refuses ' +
        'anything else before it reaches a function; the stage is throttled. A web ACL adds no caller this lets in.',
    );
    acknowledge(
      api.deploymentStage,
      'AwsSolutions-APIG6',
      'Execution logging needs the account-wide API Gateway CloudWatch role, which is account configuration, not ' +
        "this stack's; access logs record every request, and the functions log their own errors.",
    );
    return api;
  }

  #alarms(namespace: string, latencyThreshold: Duration) {
    const fiveMinutes = Duration.minutes(5);
    const custom = (metricName: string, statistic: string) => serviceMetric(namespace, metricName, statistic);
    const stage = this.api.deploymentStage;
    const base = {
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    };
    return {
      rotateErrors: new cloudwatch.Alarm(this, 'RotateErrorsAlarm', {
        ...base,
        alarmDescription: 'The scheduled token refresh failed as a whole; see the rotate function logs.',
        metric: this.rotateFunction.function.metricErrors({ period: fiveMinutes, statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      scheduledRunFailures: new cloudwatch.Alarm(this, 'ScheduledRunFailuresAlarm', {
        ...base,
        alarmDescription: 'The scheduled run could not refresh one or more connectors.',
        metric: custom('ScheduledRunFailures', 'Sum'),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      }),
      reauthorization: new cloudwatch.Alarm(this, 'ReauthorizationAlarm', {
        ...base,
        alarmDescription:
          'A connector needs re-authorization: the token server refused its grant or client (invalid_grant, ' +
          'invalid_client). Update its secret; the scheduled run logs which connector.',
        metric: custom('ConnectorsNeedingReauthorization', 'Maximum'),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }),
      serverErrorRate: new cloudwatch.Alarm(this, 'ServerErrorRateAlarm', {
        ...base,
        alarmDescription: 'More than 5% of token requests answered 5xx over five minutes.',
        metric: new cloudwatch.MathExpression({
          label: '5xx rate',
          // Below ten requests a single failure is no rate worth waking anyone for.
          expression: 'IF(requests >= 10, errors / requests, 0)',
          usingMetrics: {
            errors: stage.metricServerError({ statistic: 'Sum', period: fiveMinutes }),
            requests: stage.metricCount({ statistic: 'Sum', period: fiveMinutes }),
          },
          period: fiveMinutes,
        }),
        threshold: 0.05,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }),
      latency: new cloudwatch.Alarm(this, 'LatencyAlarm', {
        ...base,
        alarmDescription:
          `The API's p99 latency was above ${latencyThreshold.toSeconds()} s in two of three 5-minute periods: ` +
          'callers wait on token servers (see the fetch latency and failures on the dashboard) or on the table.',
        metric: stage.metricLatency({ statistic: 'p99', period: fiveMinutes }),
        threshold: latencyThreshold.toMilliseconds(),
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }),
      fetchFailures: new cloudwatch.Alarm(this, 'FetchFailuresAlarm', {
        ...base,
        alarmDescription:
          'More than 20% of token fetches failed over five minutes: a token server is down, refusing or slow; ' +
          'the functions log which connector, and token-vendor status shows its health.',
        metric: new cloudwatch.MathExpression({
          label: 'token fetch failure rate',
          // Below five fetches one failure is no rate worth waking anyone for.
          expression: 'IF(fetches + failures >= 5, failures / (fetches + failures), 0)',
          usingMetrics: { fetches: custom('TokenFetches', 'Sum'), failures: custom('TokenFetchFailures', 'Sum') },
          period: fiveMinutes,
        }),
        threshold: 0.2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      }),
    };
  }

  /**
   * One page for the vendor, on the metric names and namespace the functions emit (shared/ports/metrics.ts: Powertools
   * EMF with the `service` dimension) and the API's, functions' and table's own.
   */
  #dashboard(namespace: string, alarms: readonly cloudwatch.Alarm[], latencyThreshold: Duration): cloudwatch.Dashboard {
    const stage = this.api.deploymentStage;
    const custom = (metricName: string, statistic: string, label = metricName) =>
      serviceMetric(namespace, metricName, statistic, label);
    const vendFunctions = FAMILY_NAMES.map((family) => this.functions[family].function);
    const allFunctions = [...vendFunctions, this.rotateFunction.function];
    const width = 8;
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(6) });
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Vends (API requests) and errors',
        width,
        left: [
          stage.metricCount({ statistic: 'Sum', label: 'requests' }),
          stage.metricClientError({ statistic: 'Sum', label: '4xx' }),
          stage.metricServerError({ statistic: 'Sum', label: '5xx' }),
        ],
      }),
      new cloudwatch.GraphWidget({
        title: 'API latency (ms)',
        width,
        left: ['p50', 'p90', 'p99'].map((statistic) => stage.metricLatency({ statistic, label: statistic })),
        leftAnnotations: [{ value: latencyThreshold.toMilliseconds(), label: 'latency alarm' }],
      }),
      new cloudwatch.GraphWidget({
        title: 'How vends were served',
        width,
        stacked: true,
        left: [
          custom('MemoryHits', 'Sum', 'from memory'),
          custom('TableHits', 'Sum', 'from the table'),
          custom('TokenFetches', 'Sum', 'fetched'),
          custom('StillValidServed', 'Sum', 'still-valid token after a failed fetch'),
        ],
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Token fetches and outcomes',
        width,
        left: [custom('TokenFetches', 'Sum', 'succeeded'), custom('TokenFetchFailures', 'Sum', 'failed')],
      }),
      new cloudwatch.GraphWidget({
        title: 'Token fetch latency (ms)',
        width,
        left: ['p50', 'p99', 'Maximum'].map((statistic) => custom('TokenFetchLatency', statistic, statistic)),
      }),
      new cloudwatch.GraphWidget({
        title: 'Connector health (scheduled run)',
        width,
        left: [
          custom('ConnectorsFailing', 'Maximum', 'failing'),
          custom('ConnectorsNeedingReauthorization', 'Maximum', 'needing re-authorization'),
          custom('HealthStateChanges', 'Sum', 'health changes'),
        ],
      }),
    );
    dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Throttles',
        width,
        left: [
          ...allFunctions.map((fn, index) =>
            fn.metricThrottles({ statistic: 'Sum', label: `${[...FAMILY_NAMES, 'rotate'][index]} function` }),
          ),
          stage.metricClientError({ statistic: 'Sum', label: 'API 4xx (throttled requests are 429s among them)' }),
        ],
        right: [
          this.table.metricThrottledRequestsForOperations({
            operations: [
              dynamodb.Operation.GET_ITEM,
              dynamodb.Operation.PUT_ITEM,
              dynamodb.Operation.UPDATE_ITEM,
              dynamodb.Operation.DELETE_ITEM,
            ],
            label: 'token table',
          }),
        ],
      }),
      new cloudwatch.GraphWidget({
        title: 'Refresher: refreshes ahead and scheduled runs',
        width,
        left: [
          this.rotateFunction.function.metricInvocations({
            statistic: 'Sum',
            label: 'invocations (a refresh ahead each, plus the scheduled runs)',
          }),
          this.rotateFunction.function.metricErrors({ statistic: 'Sum', label: 'errors' }),
        ],
        right: [
          custom('RefreshesAhead', 'Sum', 'refreshes ahead started by vends'),
          custom('ScheduledRefreshes', 'Sum', 'refreshed by the schedule'),
          custom('ScheduledRunFailures', 'Sum', 'schedule could not refresh'),
        ],
      }),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', width, alarms: [...alarms] }),
    );
    return dashboard;
  }
}

/** A metric the functions emit: Powertools adds the `service` dimension to every one. */
const serviceMetric = (namespace: string, metricName: string, statistic: string, label?: string) =>
  new cloudwatch.Metric({
    namespace,
    metricName,
    dimensionsMap: { service: SERVICE_NAME },
    statistic,
    period: Duration.minutes(5),
    ...(label === undefined ? {} : { label }),
  });

const pascal = (name: string) =>
  name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');

/**
 * What API Gateway answers by itself (a missing or bad signature, a caller the resource policy refuses, a bad
 * parameter, throttling, a function that timed out): by default `{"message": …}`. These give every such answer the
 * contract's error body and `Cache-Control: no-store` (CONTRACT §3), so callers parse one error shape.
 */
export const GATEWAY_ERRORS: readonly {
  readonly type: apigateway.ResponseType;
  /** Absent: API Gateway's own status is kept. */
  readonly statusCode?: string;
  readonly error: string;
}[] = [
  { type: apigateway.ResponseType.ACCESS_DENIED, statusCode: '403', error: 'access_denied' },
  { type: apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN, statusCode: '403', error: 'access_denied' },
  { type: apigateway.ResponseType.INVALID_SIGNATURE, statusCode: '403', error: 'access_denied' },
  { type: apigateway.ResponseType.EXPIRED_TOKEN, statusCode: '403', error: 'access_denied' },
  { type: apigateway.ResponseType.UNAUTHORIZED, statusCode: '403', error: 'access_denied' },
  { type: apigateway.ResponseType.BAD_REQUEST_PARAMETERS, statusCode: '400', error: 'invalid_request' },
  { type: apigateway.ResponseType.BAD_REQUEST_BODY, statusCode: '400', error: 'invalid_request' },
  { type: apigateway.ResponseType.THROTTLED, statusCode: '429', error: 'rate_limited' },
  { type: apigateway.ResponseType.QUOTA_EXCEEDED, statusCode: '429', error: 'rate_limited' },
  { type: apigateway.ResponseType.INTEGRATION_TIMEOUT, statusCode: '503', error: 'upstream_unavailable' },
  { type: apigateway.ResponseType.DEFAULT_4XX, error: 'invalid_request' },
  { type: apigateway.ResponseType.DEFAULT_5XX, error: 'upstream_unavailable' },
];

function addContractGatewayResponses(api: apigateway.RestApi): void {
  for (const { type, statusCode, error } of GATEWAY_ERRORS) {
    api.addGatewayResponse(`Gateway${type.responseType}`, {
      type,
      ...(statusCode === undefined ? {} : { statusCode }),
      responseHeaders: { 'Cache-Control': "'no-store'", 'Content-Type': "'application/json'" },
      // $context.error.messageString is API Gateway's message already quoted as a JSON string.
      templates: {
        'application/json': `{"error":"${error}","error_description":$context.error.messageString}`,
      },
    });
  }
}
