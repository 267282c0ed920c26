/**
 * `odoh`: Oblivious DNS over HTTPS upstreams (RFC 9230). Queries go, sealed to the target, through
 * an oblivious relay: the relay learns who asks but not what, the target learns what but not who.
 *
 *     odoh [FROM] {
 *         server NAME [sdns://…|https://HOST[:PORT]/PATH] [{   # a target; without a stamp, from the lists
 *             bootstrap IP…
 *             configs relay|direct
 *             ca FILE
 *             pin_sha256 BASE64…
 *             timeout DURATION
 *         }]
 *         relay NAME [sdns://…|https://HOST[:PORT]/PATH] [{ bootstrap IP…  ca FILE  pin_sha256 BASE64… }]
 *         route SERVER|* via RELAY…|*|direct
 *         servers_from LIST { … }
 *     }
 *
 * The relay and target roles are on the `https://` listener (plugins/doh, lib/odoh).
 */
import type { PluginDefinition } from '../../core/plugin.js';
import { configError } from '../../core/config/options.js';
import { Services } from '../../core/services.js';
import { SourcesService } from '../../lib/sources/catalog.js';
import { addServerLines, listedTokens } from '../../lib/sources/server-lines.js';
import { TlsContextsService } from '../../lib/tls/contexts.js';
import { listedTarget, NAME, parseOdohDirectives, serverFromList, type OdohOptions, type TargetSpec } from './config.js';
import { RelayDirectory } from './relays.js';
import { OdohUpstream, type OdohMetrics } from './upstream.js';

export const odohPlugin: PluginDefinition<OdohOptions> = {
  name: NAME,
  provides: [Services.upstreams],
  requires: [
    {
      service: SourcesService,
      neededBy: (o) => [...listedTokens(o.servers, o.serversFrom), ...o.relays.filter((r) => r.listed).map((r) => r.token)],
      because: 'a target or relay without a URL or stamp comes from the resolver lists',
    },
  ],

  parse(directives) {
    return parseOdohDirectives(directives);
  },

  create(options, scope) {
    const catalog = scope.service(SourcesService);
    if (!catalog && options.relays.length === 0 && !options.routes.some((r) => r.via.includes('direct'))) {
      throw configError(NAME, options.token, 'no relay: add "relay NAME sdns://…|https://HOST/PATH" lines (an ODoH query goes through a relay; a route may add "direct" after them)');
    }
    const tls = scope.service(TlsContextsService);
    const relays = new RelayDirectory(options.relays, options.routes, catalog, scope.logger, tls);
    const metrics: OdohMetrics = {
      queries: scope.metrics.counter('queries_total', 'ODoH queries by target, the relay they went through, and how they ended.', ['target', 'relay', 'result']),
      configFetches: scope.metrics.counter('config_fetches_total', 'Fetches of targets\' ODoH configs, by target, the relay (or direct) and result.', ['target', 'via', 'result']),
    };
    const upstreamOf = (target: TargetSpec) => new OdohUpstream(target, relays, scope.logger, metrics, tls);
    const plugin = addServerLines(scope, {
      plugin: NAME,
      protocol: 'odoh',
      stampProtocol: 'odohTarget',
      servers: options.servers,
      serversFrom: options.serversFrom,
      upstream: upstreamOf,
      fromStamp: (target, stamp) => upstreamOf(listedTarget(target, stamp)),
      serverNamed: (name, from) => serverFromList(name, from.token, from.zone),
    });
    return {
      ...plugin,
      async stop() {
        await plugin.stop?.();
        relays.close();
      },
    };
  },
};
