/**
 * `dnscrypt`: DNSCrypt v2 upstreams, and the `dnscrypt://` listener.
 *
 *     dnscrypt [FROM] {
 *         server NAME [sdns://…]   # repeatable; without a stamp, NAME's stamp from the lists
 *         servers_from LIST { names…  disabled…  require nolog|nofilter|dnssec…  ipv4  ipv6 }
 *         cert_refresh DURATION    # default 4h; never longer than the certificate allows
 *         ephemeral_keys           # a fresh client key pair per query
 *         tcp_only
 *     }
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectUniqueNames, expectNoBlock, flag, parseDuration, readOptions } from '../../core/config/options.js';
import { parseZoneKey } from '../../core/config/zones.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { directRouter, dnscryptRouterService } from '../../lib/dnscrypt/route.js';
import { SourcesService } from '../../lib/sources/catalog.js';
import { addServerLines, listedTokens } from '../../lib/sources/server-lines.js';
import { parseServersFrom, type ServersFromOptions } from '../../lib/sources/servers-from.js';
import { parseStampToken } from '../../lib/stamp-config.js';
import { splitAddress, type DnsCryptStamp } from '../../lib/stamps.js';
import { dnscryptTransport } from './listener.js';
import { DnscryptUpstream, type DnscryptClientConfig, type DnscryptServerConfig } from './upstream.js';
import { loadSodium } from '../../lib/dnscrypt/sodium.js';

const NAME = 'dnscrypt';
const DEFAULT_CERT_REFRESH_MS = 4 * 3_600_000;

/** A server line: with its stamp, or only a name whose stamp the lists give. */
type ServerLine = (DnscryptServerConfig & { token: Token; nameToken: Token; listed: false }) | { name: string; token: Token; listed: true };

export interface DnscryptOptions {
  zone: string;
  servers: ServerLine[];
  serversFrom: ServersFromOptions[];
  client: DnscryptClientConfig;
}

export const dnscryptPlugin: PluginDefinition<DnscryptOptions[]> = {
  name: NAME,
  transports: [dnscryptTransport],
  // libsodium: certificates, keys and boxes.
  prepare: loadSodium,
  provides: [Services.upstreams],
  requires: [
    {
      service: SourcesService,
      neededBy: (groups) => groups.flatMap((g) => listedTokens(g.servers, g.serversFrom)),
      because: 'servers without a stamp come from resolver lists',
    },
  ],

  parse(directives) {
    const parsed = directives.map(parseDirective);
    expectUniqueNames(NAME, parsed.flatMap((p) => p.servers));
    return parsed;
  },

  create(groups, scope) {
    // Looked up when certificates are fetched, once every plugin is created: anonymize, set up
    // after this plugin (it checks its routes against these upstreams), provides its router.
    const router = () => scope.service(dnscryptRouterService) ?? directRouter;
    const env = { logger: scope.logger, clock: scope.clock, router };
    // Each line with its directive's zone and client settings.
    const withGroup = <T>(group: DnscryptOptions, line: T) => ({ ...line, zone: group.zone, client: group.client });
    return addServerLines(scope, {
      plugin: NAME,
      protocol: 'dnscrypt',
      stampProtocol: 'dnscrypt',
      servers: groups.flatMap((group) => group.servers.map((server) => withGroup(group, server))),
      serversFrom: groups.flatMap((group) => group.serversFrom.map((from) => withGroup(group, from))),
      upstream: (server) => new DnscryptUpstream(server, server.client, env),
      fromStamp: (server, stamp) => new DnscryptUpstream(serverFromStamp(server.name, stamp), server.client, env),
      serverNamed: (name, from) => ({ name, token: from.token, listed: true as const, zone: from.zone, client: from.client }),
    });
  },
};

function parseDirective(d: Directive): DnscryptOptions {
  const [from] = expectArgs(NAME, d, 0, 1);
  const zone = from ? parseZoneKey(from).zone : '.';
  const servers: DnscryptOptions['servers'] = [];
  const serversFrom: ServersFromOptions[] = [];
  const client: DnscryptClientConfig = { certRefreshMs: DEFAULT_CERT_REFRESH_MS, ephemeralKeys: false, tcpOnly: false };
  readOptions(
    NAME,
    d.block,
    {
      server: (line) => servers.push(parseServer(line)),
      servers_from: (line) => serversFrom.push(parseServersFrom(NAME, line)),
      cert_refresh: (line) => {
        const [value] = expectArgs(NAME, line, 1);
        client.certRefreshMs = parseDuration(NAME, value!, { min: 10_000, max: 7 * 24 * 3_600_000 });
      },
      ephemeral_keys: (line) => (client.ephemeralKeys = flag(NAME, line)),
      tcp_only: (line) => (client.tcpOnly = flag(NAME, line)),
    },
    ['server', 'servers_from'],
  );
  if (servers.length === 0 && serversFrom.length === 0) throw configError(NAME, d.name, 'no server: add "server NAME sdns://…" (or "servers_from LIST") lines in a block');
  return { zone, servers, serversFrom, client };
}

function parseServer(line: Directive): ServerLine {
  expectNoBlock(NAME, line);
  const [name, stampToken] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
  if (name.text.startsWith('sdns:')) throw configError(NAME, name, 'a server line is "server NAME sdns://…": the name comes first');
  if (!stampToken) return { name: name.text, token: name, listed: true };
  const stamp = parseStampToken(NAME, stampToken);
  if (stamp.protocol !== 'dnscrypt') {
    const other = stamp.protocol === 'dnscryptRelay' ? 'a relay stamp: relays go in the anonymize plugin' : `a ${stamp.protocol} stamp, not DNSCrypt`;
    throw configError(NAME, stampToken, `${name.text}: ${other}`);
  }
  return { ...serverFromStamp(name.text, stamp), token: stampToken, nameToken: name, listed: false };
}

function serverFromStamp(name: string, stamp: DnsCryptStamp): DnscryptServerConfig {
  const { host, port } = splitAddress(stamp.address, 443);
  return { name, host, port, providerName: stamp.providerName, providerKey: stamp.providerKey };
}
