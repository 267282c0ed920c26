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
import { addServerLines, listedTokens } from '../../lib/sources/server-lines.js';
import { TlsContextsService } from '../../lib/tls/contexts.js';
import { listedServer, NAME, parseDohDirectives, serverFromList, type DohOptions } from './client/config.js';
import { httpsTransport, httpTransport } from './server/listener.js';
import { DohUpstream } from './client/upstream.js';

export const dohPlugin: PluginDefinition<DohOptions> = {
  name: NAME,
  transports: [httpsTransport, httpTransport],
  provides: [Services.upstreams],
  requires: [
    {
      service: SourcesService,
      neededBy: ({ servers, serversFrom }) => listedTokens(servers, serversFrom),
      because: 'a server without a URL or stamp comes from the resolver lists',
    },
  ],

  parse(directives) {
    return parseDohDirectives(directives);
  },

  create({ servers, serversFrom }, scope) {
    const tls = scope.service(TlsContextsService);
    return addServerLines(scope, {
      plugin: NAME,
      protocol: 'doh',
      stampProtocol: 'doh',
      servers,
      serversFrom,
      upstream: (server) => new DohUpstream(server, scope.logger, tls),
      fromStamp: (server, stamp) => new DohUpstream(listedServer(server, stamp), scope.logger, tls),
      serverNamed: (name, from) => serverFromList(name, from.token, from.zone),
    });
  },
};
