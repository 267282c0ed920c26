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
 *     }
 *
 *     listen https://IP:PORT/dns-query { cert FILE  key FILE … }
 *     listen http://IP:PORT/dns-query { trusted_proxies CIDR… … }
 */
import type { PluginDefinition } from '../../core/plugin.js';
import { NAME, parseDohDirectives, type DohServer } from './config.js';
import { httpsTransport, httpTransport } from './listener.js';
import { DohUpstream } from './upstream.js';

export const dohPlugin: PluginDefinition<DohServer[]> = {
  name: NAME,
  transports: [httpsTransport, httpTransport],

  parse(directives) {
    return parseDohDirectives(directives);
  },

  create(servers, scope) {
    for (const server of servers) scope.upstreams.add(new DohUpstream(server, scope.logger), server.zone);
    return { name: NAME };
  },
};
