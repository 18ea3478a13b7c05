import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Acknowledges one cdk-nag finding on one construct (and what it contains), with the reason. Acknowledgements are
 * CDK's own `Validations` metadata, so the construct needs no cdk-nag dependency and any rule pack sees them.
 */
export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id, reason });
}

/** A CloudFormation value as cdk-nag prints it in a finding ID: `{ Ref: X }` is `<X>`, `Fn::GetAtt` is `<A.B>`. */
export function flattenCfn(value: unknown): string {
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const node = value as Readonly<Record<string, unknown>>;
    const join = node['Fn::Join'] as readonly [string, readonly unknown[]] | undefined;
    if (join !== undefined) return join[1].map(flattenCfn).join(join[0]);
    const getAtt = node['Fn::GetAtt'] as readonly [unknown, unknown] | undefined;
    if (getAtt !== undefined) return `<${flattenCfn(getAtt[0])}.${flattenCfn(getAtt[1])}>`;
    if (node.Ref !== undefined) return `<${flattenCfn(node.Ref)}>`;
  }
  return JSON.stringify(value);
}

/**
 * The ID of the AwsSolutions-IAM5 finding that a wildcard in `resource` raises, e.g.
 * `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:p/*]`.
 * Derived from the resolved value, so it stays right for stacks with a concrete account or region.
 */
export function wildcardResourceFinding(scope: IConstruct, resource: string): string {
  return `AwsSolutions-IAM5[Resource::${flattenCfn(Stack.of(scope).resolve(resource))}]`;
}
