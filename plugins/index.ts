/**
 * The plugins built into Veil. Their order in the chain is core/order.ts; this list is the order
 * they are set up in, wherever what they provide and need (their definitions) does not decide.
 */
import type { PluginDefinition } from '../core/plugin.js';
import { PluginRegistry } from '../core/registry.js';
import { aclPlugin } from './acl/index.js';
import { anonymizePlugin } from './anonymize/index.js';
import { cachePlugin } from './cache/index.js';
import { dnscryptPlugin } from './dnscrypt/index.js';
import { dnssecPlugin } from './dnssec/index.js';
import { dnstapPlugin } from './dnstap/index.js';
import { dohPlugin } from './doh/index.js';
import { dotPlugin } from './dot/index.js';
import { errorsPlugin } from './errors/index.js';
import { filterPlugin } from './filter/index.js';
import { forwardPlugin } from './forward/index.js';
import { healthPlugin } from './health/index.js';
import { hostsPlugin } from './hosts/index.js';
import { listenPlugin } from './listen/index.js';
import { loadbalancePlugin } from './loadbalance/index.js';
import { logPlugin } from './log/index.js';
import { metricsPlugin } from './metrics/index.js';
import { odohPlugin } from './odoh/index.js';
import { pathPlugin } from './path/index.js';
import { ratelimitPlugin } from './ratelimit/index.js';
import { sourcesPlugin } from './sources/index.js';
import { tracePlugin } from './trace/index.js';

export const builtinPlugins: readonly PluginDefinition<any>[] = [
  sourcesPlugin, listenPlugin, metricsPlugin, healthPlugin, tracePlugin, dnstapPlugin, logPlugin, errorsPlugin, aclPlugin, ratelimitPlugin, pathPlugin, filterPlugin, cachePlugin, hostsPlugin,
  dnssecPlugin, loadbalancePlugin, forwardPlugin, dotPlugin, dohPlugin, odohPlugin, dnscryptPlugin, anonymizePlugin,
];

/** A registry with core's listeners and every built-in plugin. */
export function createBuiltinRegistry(): PluginRegistry {
  const registry = new PluginRegistry();
  for (const plugin of builtinPlugins) registry.register(plugin);
  return registry;
}
