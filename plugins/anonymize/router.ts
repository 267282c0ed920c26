/**
 * Which relay a DNSCrypt server's packets go through, dnscrypt-proxy's `[anonymized_dns]`
 * semantics: the server's own route, else the `*` route; one relay of the route picked at
 * random each time the server's certificate is fetched (so it is held for a refresh period).
 * With `via *`, only the relays "farthest" from the server count: those of its address family
 * sharing the fewest leading address bits with it (least likely to be run by the same network).
 */
import { randomInt } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { ipToBytes } from '../../lib/dnscrypt/relay-header.js';
import type { DnscryptRoute, DnscryptRouter, DnscryptServerInfo, RelayAddress } from '../../lib/dnscrypt/route.js';

export interface RouteRule {
  relays: RelayAddress[];
  /** `via *`: choose among the farthest relays. */
  wildcard: boolean;
}

export class RelayRouter implements DnscryptRouter {
  constructor(
    private readonly routes: ReadonlyMap<string, RouteRule>,
    private readonly skipIncompatible: boolean,
  ) {}

  /** The rule that applies to a server: its own, else `*`, else none (direct). */
  ruleFor(serverName: string): RouteRule | undefined {
    return this.routes.get(serverName) ?? this.routes.get('*');
  }

  /** The relays a server's relay is picked from. */
  candidates(server: { host: string }, rule: RouteRule): RelayAddress[] {
    return rule.wildcard ? farthestRelays(server.host, rule.relays) : rule.relays;
  }

  route(server: DnscryptServerInfo): DnscryptRoute {
    const rule = this.ruleFor(server.name);
    if (!rule) return { relay: null, skipWhenUnreachable: false };
    const candidates = this.candidates(server, rule);
    // The configuration is checked so that every routed server has a candidate.
    return { relay: candidates[randomInt(candidates.length)]!, skipWhenUnreachable: this.skipIncompatible };
  }
}

/** Leading bits two addresses share (IPv4 compared on its 4 bytes). */
function commonPrefixBits(a: Buffer, b: Buffer): number {
  let bits = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]! ^ b[i]!;
    if (x === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(x) - 24;
  }
  return bits;
}

export function farthestRelays(serverHost: string, relays: readonly RelayAddress[]): RelayAddress[] {
  const v4 = isIPv4(serverHost);
  const bytes = (ip: string) => (isIPv4(ip) ? ipToBytes(ip).subarray(12) : ipToBytes(ip));
  const server = bytes(serverHost);
  const sameFamily = relays.filter((r) => isIPv4(r.host) === v4);
  let best = Infinity;
  let farthest: RelayAddress[] = [];
  for (const relay of sameFamily) {
    const shared = commonPrefixBits(server, bytes(relay.host));
    if (shared < best) {
      best = shared;
      farthest = [relay];
    } else if (shared === best) {
      farthest.push(relay);
    }
  }
  return farthest;
}
