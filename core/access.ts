/**
 * Who may query a server block, and how often. The door asks the block's access policy before
 * any plugin runs, and answers REFUSED to a client it does not admit. Without an `acl` plugin the
 * policy admits loopback, private (RFC 1918, IPv6 ULA) and link-local addresses only, so that
 * Veil listening on a public address is never an open resolver by accident (nor one open to a
 * carrier's other customers on its NAT network, 100.64/10); `acl` replaces the policy (as
 * `loadbalance` replaces the upstream policy), through the `accessPolicy` service. Then the door
 * takes one of the client's tokens from the block's rate limit (none without `ratelimit`, which
 * provides `rateLimit`).
 */
import { isLinkLocal, isPrivateAddress } from './net/address.js';

export interface AccessPolicy {
  /** True when the client at `address` may query this block. */
  admits(address: string): boolean;
}

export const localOnly: AccessPolicy = {
  // Loopback first, without parsing: it is where most queries come from.
  admits: (address) => address.startsWith('127.') || isPrivateAddress(address) || isLinkLocal(address),
};

/** Queries per client: `ratelimit` installs one through the `rateLimit` service. */
export interface RateLimit {
  /** Takes one query from the budget of the client at `address`; false when it is over. */
  take(address: string): boolean;
}

export const unlimited: RateLimit = { take: () => true };
