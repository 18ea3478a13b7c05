/**
 * The token table's key schema: the CDK construct and local mode create the table with it, the DynamoDB adapter
 * reads and writes it, and IAM conditions name its key prefixes.
 */
export const TABLE_KEY = 'pk';
/** DynamoDB TTL attribute, epoch seconds. */
export const TTL_ATTRIBUTE = 'ttl';

/** One item per cached token (connector and scope set). */
export const tokenItemKey = (tokenKey: string): string => `t#${tokenKey}`;
/** One item per connector: lease, refresh-token chain, remembered auth method, failures. */
export const stateItemKey = (connectorKey: string): string => `c#${connectorKey}`;
/** The connector whose state item has this key, or undefined when it is not a state item's. */
export const connectorKeyOfStateItem = (itemKey: string): string | undefined =>
  itemKey.startsWith('c#') ? itemKey.slice(2) : undefined;

/** The grant family a token or state item belongs to (`t#<family>/…`, `c#<family>/…`). */
export const familyOfItem = (item: string): string => item.slice(2, item.indexOf('/'));

/** Patterns (IAM `StringLike`) of every item of one family: its cached tokens and its connectors' state. */
export const familyItemPatterns = (family: string): string[] => [
  tokenItemKey(`${family}/*`),
  stateItemKey(`${family}/*`),
];

/**
 * The schedule's index on the state items: connectors by when the schedule should next look at them. Sparse: only
 * connectors it keeps fresh (refresh-token and `prewarm`) carry `dueAt`. One partition value, so a Query returns
 * the oldest due first; at one write per refresh it stays far below a partition's 1,000 writes a second.
 */
export const DUE_INDEX = { name: 'due', partitionKey: 'dueShard', sortKey: 'dueAt' } as const;
export const DUE_SHARD = 'due';
