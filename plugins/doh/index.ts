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
import { listedServer, NAME, parseDohDirectives, type DohServer } from './config.js';
import { httpsTransport, httpTransport } from './listener.js';
import { DohUpstream } from './upstream.js';

export const dohPlugin: PluginDefinition<DohServer[]> = {
  name: NAME,
  transports: [httpsTransport, httpTransport],

  parse(directives) {
    return parseDohDirectives(directives);
  },

  create(servers, scope) {
    // `sources` stands first in the order: its catalog is there when it is in the block.
    const catalog = scope.container.isRegistered(SourcesService, true) ? resolveService(scope.container, SourcesService) : null;
    for (const server of servers) {
      if (!server.listed) {
        scope.upstreams.add(new DohUpstream(server, scope.logger), server.zone);
        continue;
      }
      if (!catalog) throw configError(NAME, server.token, 'a server without a URL or stamp comes from the resolver lists, and this block has no sources directive');
      const upstream = new ListedUpstream(server.name, 'doh', 'doh', catalog, (stamp) => new DohUpstream(listedServer(server, stamp), scope.logger), scope.logger);
      scope.upstreams.add(upstream, server.zone);
    }
    return { name: NAME };
  },
};
