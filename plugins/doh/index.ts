/**
 * `doh`: DNS-over-HTTPS upstreams, and the `https://` and `http://` listeners.
 *
 *     doh [FROM] {
 *         server NAME https://HOST[:PORT]/PATH [{
 *             bootstrap IP…
 *             ca FILE
 *             pin_sha256 BASE64…
 *             method post|get
 *             pool N
 *             timeout DURATION
 *         }]
 *         server NAME sdns://… [{ … }]
 *         server NAME [{ … }]          # NAME's stamp from the resolver lists
 *         servers_from LIST { … }      # every DoH server of a list that passes the filters
 *     }
 *
 *     listen https://IP:PORT/dns-query { cert FILE  key FILE … }
 *     listen http://IP:PORT/dns-query { trusted_proxies CIDR… … }
 */
import { configError } from '../../core/config/options.js';
import type { PluginDefinition } from '../../core/plugin.js';
import { resolveService } from '../../core/services.js';
import { SourcesService } from '../../lib/sources/catalog.js';
import { ListedUpstream } from '../../lib/sources/listed-upstream.js';
import { ServersFrom, withServersFrom } from '../../lib/sources/servers-from.js';
import { listedServer, NAME, parseDohDirectives, serverFromList, type DohOptions, type DohServer } from './client/config.js';
import { httpsTransport, httpTransport } from './server/listener.js';
import { DohUpstream } from './client/upstream.js';

export const dohPlugin: PluginDefinition<DohOptions> = {
  name: NAME,
  transports: [httpsTransport, httpTransport],

  parse(directives) {
    return parseDohDirectives(directives);
  },

  create({ servers, serversFrom }, scope) {
    // `sources` stands first in the order: its catalog is there when it is in the block.
    const catalog = scope.container.isRegistered(SourcesService, true) ? resolveService(scope.container, SourcesService) : null;
    const needsLists = [...servers.filter((s) => s.listed).map((s) => s.token), ...serversFrom.map((f) => f.token)];
    if (!catalog && needsLists.length > 0) throw configError(NAME, needsLists[0]!, 'a server without a URL or stamp comes from the resolver lists, and this block has no sources directive');
    const listed = (server: DohServer) => new ListedUpstream(server.name, 'doh', 'doh', catalog!, (stamp) => new DohUpstream(listedServer(server, stamp), scope.logger), scope.logger);
    for (const server of servers) scope.upstreams.add(server.listed ? listed(server) : new DohUpstream(server, scope.logger), server.zone);
    const managers = serversFrom.map(
      (from) => new ServersFrom(from, 'doh', catalog!, scope.upstreams, from.zone, (name) => listed(serverFromList(name, from.token, from.zone)), scope.logger),
    );
    return withServersFrom(NAME, managers);
  },
};
