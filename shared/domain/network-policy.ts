import { BlockList, isIP } from 'node:net';

/**
 * Where token requests may go (the SSRF guard). Metadata, link-local and unspecified addresses are never allowed;
 * loopback only in local mode; private ranges only where the deployment allows them.
 */
export interface NetworkPolicy {
  /** Local mode: loopback addresses, and `http://` to them. */
  readonly allowLoopback: boolean;
  /** RFC 1918, unique-local IPv6 and carrier-grade NAT ranges. */
  readonly allowPrivate: boolean;
}

export type AddressClass = 'public' | 'private' | 'loopback' | 'forbidden';

function blockList(entries: readonly [string, number, 'ipv4' | 'ipv6'][]): BlockList {
  const list = new BlockList();
  for (const [network, prefix, type] of entries) list.addSubnet(network, prefix, type);
  return list;
}

// Node's BlockList also matches IPv4-mapped IPv6 forms (::ffff:169.254.169.254) against IPv4 rules.
const FORBIDDEN = blockList([
  ['0.0.0.0', 8, 'ipv4'], // "this network", 0.0.0.0 reaches the local host
  ['169.254.0.0', 16, 'ipv4'], // link-local, EC2/ECS/Lambda metadata and credentials endpoints
  ['224.0.0.0', 3, 'ipv4'], // multicast, reserved, broadcast
  ['::', 128, 'ipv6'],
  ['fe80::', 10, 'ipv6'], // link-local
  ['fd00:ec2::254', 128, 'ipv6'], // EC2 metadata over IPv6
  ['ff00::', 8, 'ipv6'], // multicast
]);
const LOOPBACK = blockList([
  ['127.0.0.0', 8, 'ipv4'],
  ['::1', 128, 'ipv6'],
]);
const PRIVATE = blockList([
  ['10.0.0.0', 8, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['fc00::', 7, 'ipv6'],
]);
// NAT64 (64:ff9b::/96) embeds an IPv4 address in its last 32 bits; judge that address.
const NAT64 = /^64:ff9b::([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i;

export function classifyAddress(address: string): AddressClass {
  const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
  const nat64 = NAT64.exec(address);
  if (nat64 !== null) {
    const high = Number.parseInt(nat64[1] ?? '0', 16);
    const low = Number.parseInt(nat64[2] ?? '0', 16);
    return classifyAddress(`${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`);
  }
  if (FORBIDDEN.check(address, type)) return 'forbidden';
  if (LOOPBACK.check(address, type)) return 'loopback';
  if (PRIVATE.check(address, type)) return 'private';
  return 'public';
}

export function isAddressAllowed(address: string, policy: NetworkPolicy): boolean {
  switch (classifyAddress(address)) {
    case 'public':
      return true;
    case 'private':
      return policy.allowPrivate;
    case 'loopback':
      return policy.allowLoopback;
    case 'forbidden':
      return false;
  }
}

/** The literal IP of a URL's host (brackets stripped), or undefined for a name. */
export function literalAddress(url: URL): string | undefined {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return isIP(host) === 0 ? undefined : host;
}

/**
 * Checks a token URL before any connection: scheme (https; http only to loopback in local mode) and, for IP
 * literals (decimal and hex forms are normalised by the URL parser), the address. Names are checked on the
 * addresses they resolve to, at connect time. Returns the reason when refused.
 */
export function refuseUrl(url: URL, policy: NetworkPolicy): string | undefined {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must use https';
  const literal = literalAddress(url);
  if (url.protocol === 'http:') {
    const loopback =
      policy.allowLoopback &&
      (url.hostname === 'localhost' || (literal !== undefined && classifyAddress(literal) === 'loopback'));
    if (!loopback) return policy.allowLoopback ? 'must use https (http only for loopback hosts)' : 'must use https';
  }
  if (literal !== undefined && !isAddressAllowed(literal, policy))
    return 'points to an address the vendor may not call';
  return undefined;
}

/** The token URL's destination is not one the vendor may call (the SSRF guard). */
export class DestinationRefusedError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'DestinationRefusedError';
  }
}

/** Was a request refused by the guard, anywhere in an error's cause chain? */
export function refusedDestination(error: unknown): DestinationRefusedError | undefined {
  for (let current = error; current instanceof Error; current = current.cause) {
    if (current instanceof DestinationRefusedError) return current;
  }
  return undefined;
}
