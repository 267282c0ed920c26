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
import type { PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { SourcesService } from '../../lib/sources/catalog.js';
import { ListedUpstream } from '../../lib/sources/listed-upstream.js';
import { TlsContextsService } from '../../lib/tls/contexts.js';
import { ServersFrom, withServersFrom } from '../../lib/sources/servers-from.js';
import { listedServer, NAME, parseDohDirectives, serverFromList, type DohOptions, type DohServer } from './client/config.js';
import { httpsTransport, httpTransport } from './server/listener.js';
import { DohUpstream } from './client/upstream.js';

export const dohPlugin: PluginDefinition<DohOptions> = {
  name: NAME,
  transports: [httpsTransport, httpTransport],
  provides: [Services.upstreams],
  requires: [
    {
      service: SourcesService,
      neededBy: ({ servers, serversFrom }) => [...servers.filter((s) => s.listed).map((s) => s.token), ...serversFrom.map((f) => f.token)],
      because: 'a server without a URL or stamp comes from the resolver lists',
    },
  ],

  parse(directives) {
    return parseDohDirectives(directives);
  },

  create({ servers, serversFrom }, scope) {
    const catalog = scope.service(SourcesService);
    const tls = scope.service(TlsContextsService);
    const listed = (server: DohServer) => new ListedUpstream(server.name, 'doh', 'doh', catalog!, (stamp) => new DohUpstream(listedServer(server, stamp), scope.logger, tls), scope.logger);
    for (const server of servers) scope.upstreams.add(server.listed ? listed(server) : new DohUpstream(server, scope.logger, tls), server.zone);
    const managers = serversFrom.map(
      (from) => new ServersFrom(from, 'doh', catalog!, scope.upstreams, from.zone, (name) => listed(serverFromList(name, from.token, from.zone)), scope.logger),
    );
    return withServersFrom(NAME, managers);
  },
};
