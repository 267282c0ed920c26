/**
 * `anonymize`: Anonymized DNSCrypt. Routes the block's DNSCrypt upstreams through relays, so
 * that the server never learns the client's address and the relay never learns the question;
 * and brings the `relay://` listener, to be a relay for others.
 *
 *     anonymize {
 *         relay NAME [sdns://…|IP:PORT]   # repeatable; without an address, from the lists
 *         route SERVER via RELAY [RELAY…] # repeatable; SERVER may be *, RELAY may be * or a stamp
 *         skip_incompatible
 *     }
 *
 * It changes nothing in the dnscrypt plugin: it registers the block's router, which dnscrypt
 * upstreams ask for their route each time they fetch a certificate.
 */
import { isIPv4 } from 'node:net';
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, flag, readOptions } from '../../core/config/options.js';
import { AddressError, parseHostPort } from '../../core/net/address.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { SourcesService } from '../../lib/sources/catalog.js';
import { dnscryptRouterService, type RelayAddress } from '../../lib/dnscrypt/route.js';
import { parseStamp, splitAddress, StampError } from '../../lib/stamps.js';
import { relayTransport } from './relay-listener.js';
import { RelayRouter, type RouteRule } from './router.js';
import { loadSodium } from '../../lib/dnscrypt/sodium.js';

const NAME = 'anonymize';

interface RouteLine {
  server: Token;
  /** Addresses, or names of relays the lists give. */
  relays: Array<RelayAddress | string>;
  wildcard: boolean;
  /** The `*` of `via *`, for messages. */
  wildcardToken: Token | null;
}

export interface AnonymizeOptions {
  /** Each relay line: its address, or null when the lists give it. */
  relays: Map<string, RelayAddress | null>;
  routes: RouteLine[];
  skipIncompatible: boolean;
  /** Relay lines without an address (they need lists). */
  listedRelays: Token[];
  /** Servers never relayed: they drop fragmented UDP. */
  fragmentsBlocked: Token[];
}

export const anonymizePlugin: PluginDefinition<AnonymizeOptions> = {
  name: NAME,
  transports: [relayTransport],
  // libsodium: certificates, keys and boxes.
  prepare: loadSodium,
  once: 'put every relay and route in one',
  // The router dnscrypt upstreams ask for their route; its routes are checked against the block's upstreams.
  provides: [dnscryptRouterService],
  uses: [Services.upstreams],
  requires: [{ service: SourcesService, neededBy: (options) => options.listedRelays, because: 'a relay without an address comes from the resolver lists' }],

  parse(directives) {
    const d = directives[0]!;
    expectArgs(NAME, d, 0);
    const relays = new Map<string, RelayAddress | null>();
    const routeLines: Directive[] = [];
    const listedRelays: Token[] = [];
    let skipIncompatible = false;
    const fragmentsBlocked: Token[] = [];
    readOptions(
      NAME,
      d.block,
      {
        relay: (line) => {
          expectNoBlock(NAME, line);
          const [name, address] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
          if (relays.has(name.text)) throw configError(NAME, name, `two relays are named "${name.text}"`);
          if (name.text === '*' || name.text.startsWith('sdns:')) throw configError(NAME, name, 'a relay line is "relay NAME sdns://…|IP:PORT": the name comes first');
          relays.set(name.text, address ? relayAddress(name.text, address) : null);
          if (!address) listedRelays.push(name);
        },
        // Read once every relay is known, whatever the order of the lines.
        route: (line) => routeLines.push(line),
        skip_incompatible: (line) => (skipIncompatible = flag(NAME, line)),
        fragments_blocked: (line) => {
          expectNoBlock(NAME, line);
          fragmentsBlocked.push(...expectArgs(NAME, line, 1, Infinity));
        },
      },
      ['relay', 'route', 'fragments_blocked'],
    );
    const routes = routeLines.map((line) => parseRoute(line, relays));
    const seen = new Set<string>();
    for (const route of routes) {
      if (seen.has(route.server.text)) throw configError(NAME, route.server, `${route.server.text} has two routes`);
      seen.add(route.server.text);
    }
    if (routes.length === 0) throw configError(NAME, d.name, 'no route: add "route SERVER via RELAY…" (or "route * via …" for every DNSCrypt server)');
    return { relays, routes, skipIncompatible, listedRelays, fragmentsBlocked };
  },

  create(options, scope) {
    const catalog = scope.service(SourcesService);
    const servers = scope.upstreams.all.filter((u) => u.protocol === 'dnscrypt');
    const rules = new Map<string, RouteRule>(options.routes.map((r) => [r.server.text, { relays: r.relays, wildcard: r.wildcard }]));
    const router = new RelayRouter(rules, {
      skipIncompatible: options.skipIncompatible,
      catalog,
      fragmentsBlocked: new Set(options.fragmentsBlocked.map((t) => t.text)),
      log: (line) => scope.logger.info(line),
    });
    for (const route of options.routes) {
      // With lists, servers may come later (servers_from): their routes are checked as they come.
      if (catalog) continue;
      if (route.wildcardToken && options.relays.size === 0) throw configError(NAME, route.wildcardToken, '"via *" picks among the relay lines (or the lists\' relays), and there are none');
      if (route.server.text === '*') {
        if (servers.length === 0) throw configError(NAME, route.server, 'route * applies to DNSCrypt servers, and this block has none (add a dnscrypt directive)');
        continue;
      }
      const upstream = scope.upstreams.get(route.server.text);
      if (!upstream || upstream.protocol !== 'dnscrypt') {
        const known = servers.map((s) => s.name).join(', ') || 'none';
        throw configError(NAME, route.server, `no DNSCrypt server named "${route.server.text}" in this block (DNSCrypt servers: ${known}); only DNSCrypt servers can be anonymized`);
      }
    }
    for (const token of catalog ? [] : options.fragmentsBlocked) {
      if (scope.upstreams.get(token.text)?.protocol !== 'dnscrypt') {
        throw configError(NAME, token, `fragments_blocked: no DNSCrypt server named "${token.text}" in this block (DNSCrypt servers: ${servers.map((s) => s.name).join(', ') || 'none'})`);
      }
    }
    // `via *` keeps only relays of the server's family: each routed server must have one. With
    // lists, relays and servers change: a server without a relay is then refused at its refresh.
    for (const server of catalog ? [] : servers) {
      const rule = router.ruleFor(server.name);
      if (!rule) continue;
      const { host } = splitAddress(server.address, 443);
      if (router.candidates({ host }, rule).length === 0) {
        const line = options.routes.find((r) => r.server.text === server.name) ?? options.routes.find((r) => r.server.text === '*')!;
        throw configError(NAME, line.server, `no ${isIPv4(host) ? 'IPv4' : 'IPv6'} relay for ${server.name} (${server.address}) among those of "via *"`);
      }
    }
    scope.provide(dnscryptRouterService, router);
  },
};

function relayAddress(name: string, token: Token): RelayAddress {
  try {
    if (token.text.startsWith('sdns:')) {
      const stamp = parseStamp(token.text);
      if (stamp.protocol !== 'dnscryptRelay') throw configError(NAME, token, `${name}: a ${stamp.protocol} stamp, not a DNSCrypt relay stamp (sdns://gQ…)`);
      return { name, ...splitAddress(stamp.address, 443) };
    }
    return { name, ...parseHostPort(token.text, 443) };
  } catch (err) {
    if (err instanceof StampError) throw configError(NAME, token, `bad relay stamp: ${err.message}`);
    if (err instanceof AddressError) throw configError(NAME, token, `${err.message} (a relay is sdns://… or IP:PORT)`);
    throw err;
  }
}

function parseRoute(line: Directive, relays: Map<string, RelayAddress | null>): RouteLine {
  expectNoBlock(NAME, line);
  const [server, via, ...targets] = expectArgs(NAME, line, 3, Infinity) as [Token, Token, ...Token[]];
  if (via.text !== 'via') throw configError(NAME, via, `expected "via" after the server name, got "${via.text}" (route SERVER via RELAY…)`);
  const chosen: Array<RelayAddress | string> = [];
  let wildcard = false;
  let wildcardToken: Token | null = null;
  for (const target of targets) {
    if (target.text === '*') {
      wildcard = true;
      wildcardToken = target;
      for (const [name, relay] of relays) chosen.push(relay ?? name);
    } else if (target.text.startsWith('sdns:')) {
      chosen.push(relayAddress(target.text, target));
    } else {
      if (!relays.has(target.text)) throw configError(NAME, target, `no relay named "${target.text}"${relays.size ? ` (relays: ${[...relays.keys()].join(', ')})` : '; add a "relay NAME sdns://…" (or "relay NAME", from the lists) line'}`);
      chosen.push(relays.get(target.text) ?? target.text);
    }
  }
  return { server, relays: [...new Map(chosen.map((r) => [typeof r === 'string' ? r : r.name, r])).values()], wildcard, wildcardToken };
}
