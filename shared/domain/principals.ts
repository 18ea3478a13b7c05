/** Who is calling, as API Gateway's IAM authorization reports it in `requestContext.identity`. */
export interface Caller {
  /** `identity.userArn`: a user ARN, or an `arn:aws:sts::<acct>:assumed-role/<role>/<session>` ARN. */
  readonly arn: string;
  /** `identity.accountId`: the caller's account (never `requestContext.accountId`, the API owner's). */
  readonly accountId: string;
}

const ASSUMED_ROLE = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/[^/]+$/;
const ROLE_ARN = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/;

/**
 * Does one `allowedPrincipals` entry admit the caller? (CONTRACT §2)
 * A role ARN admits every session of that role. An assumed-role ARN carries only the role's name, not its
 * path, so `role/path/name` matches on partition, account and name, as IAM's own `aws:PrincipalArn` would not
 * need to: this is the most the request context tells us.
 */
export function principalMatches(entry: string, caller: Caller): boolean {
  if (entry === '*') return true;
  if (/^\d{12}$/.test(entry)) return entry === caller.accountId && caller.arn.split(':')[4] === entry;
  if (entry === caller.arn) return true;
  const role = ROLE_ARN.exec(entry);
  const session = ASSUMED_ROLE.exec(caller.arn);
  if (role === null || session === null) return false;
  return role[1] === session[1] && role[2] === session[2] && role[3] === session[3];
}

export const isAllowed = (allowedPrincipals: readonly string[], caller: Caller): boolean =>
  allowedPrincipals.some((entry) => principalMatches(entry, caller));
