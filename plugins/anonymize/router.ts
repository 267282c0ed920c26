/**
 * Which relay a DNSCrypt server's packets go through, dnscrypt-proxy's `[anonymized_dns]`
 * semantics: the server's own route, else the `*` route; one relay of the route picked at
 * random each time the server's certificate is fetched (so it is held for a refresh period).
 * With `via *`, only the relays "farthest" from the server count: those of its address family
 * sharing the fewest leading address bits with it (least likely to be run by the same network).
 */
import { randomInt } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { CERT_NAME_PREFIX } from '../../lib/dnscrypt/constants.js';
import { ipToBytes } from '../../lib/dnscrypt/relay-header.js';
import type { DnscryptRoute, DnscryptRouter, DnscryptServerInfo, RelayAddress } from '../../lib/dnscrypt/route.js';
import type { SourceCatalog } from '../../lib/sources/catalog.js';
import { splitAddress } from '../../lib/stamps.js';

export interface RouteRule {
  /** Relays by address, or by name when a resolver list gives their address. */
  relays: Array<RelayAddress | string>;
  /** `via *`: choose among the farthest relays (the listed ones too, when there are lists). */
  wildcard: boolean;
}

export interface RouterOptions {
  skipIncompatible: boolean;
  catalog?: SourceCatalog | null;
  /**
   * Servers known to drop fragmented UDP (dnscrypt-proxy's `fragments_blocked`): the relay's
   * hop to them is UDP, so large queries, and so large answers, never get through.
   */
  fragmentsBlocked?: ReadonlySet<string>;
  /** Says, once per change, which relays a server's route may take. */
  log?: (line: string) => void;
}

export class RelayRouter implements DnscryptRouter {
  private readonly said = new Map<string, string>();

  constructor(
    private readonly routes: ReadonlyMap<string, RouteRule>,
    private readonly options: RouterOptions,
  ) {}

  private get catalog(): SourceCatalog | null {
    return this.options.catalog ?? null;
  }

  /** The rule that applies to a server: its own, else `*`, else none (direct). */
  ruleFor(serverName: string): RouteRule | undefined {
    return this.routes.get(serverName) ?? this.routes.get('*');
  }

  /** The relays a server's relay is picked from, as the lists stand now. */
  candidates(server: { host: string }, rule: RouteRule): RelayAddress[] {
    const relays = rule.relays.flatMap((r) => (typeof r === 'string' ? this.listedRelay(r) : [r]));
    if (rule.wildcard && this.catalog) relays.push(...this.allListedRelays());
    const unique = [...new Map(relays.map((r) => [r.name, r])).values()];
    return rule.wildcard ? farthestRelays(server.host, unique) : unique;
  }

  /**
   * The route for the next certificate period. A routed server with no relay available gets an
   * error, never the direct path: going direct would show it the client's address.
   */
  route(server: DnscryptServerInfo): DnscryptRoute {
    const rule = this.ruleFor(server.name);
    if (!rule) return { relay: null, skipWhenUnreachable: false };
    // dnscrypt-proxy's rule: relays pass only queries for 2.dnscrypt-cert.* provider names, so a
    // server with another name cannot be anonymized (and is never reached directly instead).
    if (!server.providerName.toLowerCase().startsWith(CERT_NAME_PREFIX)) {
      throw new Error(`${server.name} cannot be reached through relays: its provider name ${server.providerName} does not start with ${CERT_NAME_PREFIX}`);
    }
    const candidates = this.candidates(server, rule);
    if (candidates.length === 0) throw new Error(`no relay available for ${server.name} (${describe(rule)})`);
    const line = `${server.name} via ${candidates.map((r) => r.name).join(', ')}`;
    if (this.said.get(server.name) !== line) {
      this.said.set(server.name, line);
      this.options.log?.(line);
    }
    return {
      relay: candidates[randomInt(candidates.length)]!,
      skipWhenUnreachable: this.options.skipIncompatible,
      fragmentsBlocked: this.options.fragmentsBlocked?.has(server.name) ?? false,
    };
  }

  private listedRelay(name: string): RelayAddress[] {
    const stamp = this.catalog?.find(name)?.entry.stamps.find((s) => s.protocol === 'dnscryptRelay');
    return stamp ? [{ name, ...splitAddress(stamp.address, 443) }] : [];
  }

  private allListedRelays(): RelayAddress[] {
    return this.catalog!.all()
      .filter((list) => list.state !== 'unavailable')
      .flatMap((list) => list.entries.flatMap((entry) => entry.stamps.filter((s) => s.protocol === 'dnscryptRelay').map((s) => ({ name: entry.name, ...splitAddress(s.address, 443) }))));
  }
}

function describe(rule: RouteRule): string {
  const names = rule.relays.map((r) => (typeof r === 'string' ? r : r.name));
  return rule.wildcard ? 'via *: none of its address family' : `via ${names.join(', ')}: not in the lists`;
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
