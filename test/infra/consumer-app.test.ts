import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'consumer-app');

interface Resource {
  readonly Type: string;
  readonly Properties: Record<string, unknown>;
}

describe('App: a CDK app outside infra/ that imports the construct (test/fixtures/consumer-app)', () => {
  let outdir: string;
  let synth: { code: number; stdout: string; stderr: string };
  let resources: Record<string, Resource>;

  beforeAll(async () => {
    outdir = await mkdtemp(join(tmpdir(), 'token-vendor-consumer-'));
    // The CDK CLI as the platform team runs it, from the app's own folder and cdk.json, bundling included. A proxy
    // that refuses every connection keeps it offline: its notices and telemetry are off in cdk.json anyway.
    synth = await new Promise((done) => {
      execFile(
        join(ROOT, 'node_modules', '.bin', 'cdk'),
        ['synth', '--output', outdir, '--quiet'],
        {
          cwd: FIXTURE,
          env: { ...process.env, HTTPS_PROXY: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9' },
          timeout: 240_000,
        },
        (error, stdout, stderr) => done({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }),
      );
    });
    if (synth.code === 0) {
      const template = JSON.parse(await readFile(join(outdir, 'Platform.template.json'), 'utf8')) as {
        Resources: Record<string, Resource>;
      };
      resources = template.Resources;
    }
  }, 300_000);
  afterAll(async () => {
    await rm(outdir, { recursive: true, force: true });
  });

  const ofType = (type: string) => Object.entries(resources).filter(([, resource]) => resource.Type === type);

  it('synthesizes with the CDK CLI, cdk-nag AwsSolutions included, without reaching the internet', () => {
    // Assess
    expect(synth.stderr).not.toMatch(/AwsSolutions-|Could not refresh notices|telemetry/i);
    expect(synth.code).toBe(0);
  });

  it("runs every function of the vendor in the app's VPC, with the private-network allowance and its tuning", () => {
    // Prepare
    const vendorFunctions = ofType('AWS::Lambda::Function').filter(([id]) => id.startsWith('TokenVendor'));

    // Assess
    expect(vendorFunctions).toHaveLength(5);
    for (const [, fn] of vendorFunctions) {
      const { VpcConfig, Environment } = fn.Properties as {
        VpcConfig?: { SubnetIds: unknown[] };
        Environment: { Variables: Record<string, unknown> };
      };
      expect(VpcConfig?.SubnetIds).toHaveLength(2);
      expect(Environment.Variables).toMatchObject({
        TOKEN_VENDOR_ALLOW_PRIVATE_NETWORKS: 'true',
        TOKEN_VENDOR_LEASE_SECONDS: '20',
        TOKEN_VENDOR_FETCH_DEADLINE_SECONDS: '15',
      });
    }
    // The token server's group admits the vendor's on 443.
    const ingress = ofType('AWS::EC2::SecurityGroupIngress').map(([, rule]) => rule.Properties);
    expect(ingress).toContainEqual(expect.objectContaining({ FromPort: 443, ToPort: 443, IpProtocol: 'tcp' }));
  });

  it("grants the workload role one connector's two routes and nothing else", () => {
    // Prepare
    const policies = ofType('AWS::IAM::Policy').filter(([id]) => id.startsWith('BillingWorker'));

    // Assess
    expect(policies).toHaveLength(1);
    const document = JSON.stringify(policies[0]?.[1].Properties.PolicyDocument);
    expect(document.match(/execute-api:Invoke/g)).toHaveLength(1);
    expect(document).toContain('/v1/GET/tokens/client-credentials/crm"');
    expect(document).toContain('/v1/POST/tokens/client-credentials/crm/refresh"');
    expect(document).not.toContain('*');
  });
});
