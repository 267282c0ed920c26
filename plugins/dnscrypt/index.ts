/**
 * `dnscrypt`: DNSCrypt v2 upstreams, and the `dnscrypt://` listener.
 *
 *     dnscrypt [FROM] {
 *         server NAME sdns://…     # repeatable
 *         cert_refresh DURATION    # default 4h; never longer than the certificate allows
 *         ephemeral_keys           # a fresh client key pair per query
 *         tcp_only
 *     }
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectUniqueNames, expectNoBlock, flag, parseDuration, readOptions } from '../../core/config/options.js';
import { parseZoneKey } from '../../core/config/zones.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { resolveService } from '../../core/services.js';
import { directRouter, dnscryptRouterService } from '../../lib/dnscrypt/route.js';
import { parseStamp, splitAddress, StampError } from '../../lib/stamps.js';
import { dnscryptTransport } from './listener.js';
import { DnscryptUpstream, type DnscryptClientConfig, type DnscryptServerConfig } from './upstream.js';

const NAME = 'dnscrypt';
const DEFAULT_CERT_REFRESH_MS = 4 * 3_600_000;

export interface DnscryptOptions {
  zone: string;
  servers: Array<DnscryptServerConfig & { token: Token }>;
  client: DnscryptClientConfig;
}

export const dnscryptPlugin: PluginDefinition<DnscryptOptions[]> = {
  name: NAME,
  transports: [dnscryptTransport],

  parse(directives) {
    const parsed = directives.map(parseDirective);
    expectUniqueNames(NAME, parsed.flatMap((p) => p.servers));
    return parsed;
  },

  create(groups, scope) {
    // Looked up when certificates are fetched: anonymize, created after this plugin, may have
    // registered its router by then.
    const router = () => (scope.container.isRegistered(dnscryptRouterService, true) ? resolveService(scope.container, dnscryptRouterService) : directRouter);
    for (const group of groups) {
      for (const server of group.servers) {
        scope.upstreams.add(new DnscryptUpstream(server, group.client, { logger: scope.logger, clock: scope.clock, router }), group.zone);
      }
    }
    return { name: NAME };
  },
};

function parseDirective(d: Directive): DnscryptOptions {
  const [from] = expectArgs(NAME, d, 0, 1);
  const zone = from ? parseZoneKey(from).zone : '.';
  const servers: DnscryptOptions['servers'] = [];
  const client: DnscryptClientConfig = { certRefreshMs: DEFAULT_CERT_REFRESH_MS, ephemeralKeys: false, tcpOnly: false };
  readOptions(
    NAME,
    d.block,
    {
      server: (line) => servers.push(parseServer(line)),
      cert_refresh: (line) => {
        const [value] = expectArgs(NAME, line, 1);
        client.certRefreshMs = parseDuration(NAME, value!, { min: 10_000, max: 7 * 24 * 3_600_000 });
      },
      ephemeral_keys: (line) => (client.ephemeralKeys = flag(NAME, line)),
      tcp_only: (line) => (client.tcpOnly = flag(NAME, line)),
    },
    ['server'],
  );
  if (servers.length === 0) throw configError(NAME, d.name, 'no server: add "server NAME sdns://…" lines in a block');
  return { zone, servers, client };
}

function parseServer(line: Directive): DnscryptServerConfig & { token: Token } {
  expectNoBlock(NAME, line);
  const [name, stampToken] = expectArgs(NAME, line, 2) as [Token, Token];
  if (name.text.startsWith('sdns:')) throw configError(NAME, name, 'a server line is "server NAME sdns://…": the name comes first');
  let stamp;
  try {
    stamp = parseStamp(stampToken.text);
  } catch (err) {
    if (err instanceof StampError) throw configError(NAME, stampToken, `bad stamp: ${err.message}`);
    throw err;
  }
  if (stamp.protocol !== 'dnscrypt') {
    const other = stamp.protocol === 'dnscryptRelay' ? 'a relay stamp: relays go in the anonymize plugin' : `a ${stamp.protocol} stamp, not DNSCrypt`;
    throw configError(NAME, stampToken, `${name.text}: ${other}`);
  }
  const { host, port } = splitAddress(stamp.address, 443);
  return { name: name.text, host, port, providerName: stamp.providerName, providerKey: stamp.providerKey, token: stampToken };
}
