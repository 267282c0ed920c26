/** The plugins built into Veil. Their order in the chain is core/order.ts, not this list. */
import type { PluginDefinition } from '../core/plugin.js';
import { PluginRegistry } from '../core/registry.js';
import { dohPlugin } from './doh/index.js';
import { errorsPlugin } from './errors/index.js';
import { forwardPlugin } from './forward/index.js';
import { hostsPlugin } from './hosts/index.js';
import { listenPlugin } from './listen/index.js';
import { logPlugin } from './log/index.js';

export const builtinPlugins: readonly PluginDefinition<any>[] = [listenPlugin, logPlugin, errorsPlugin, hostsPlugin, forwardPlugin, dohPlugin];

/** A registry with core's listeners and every built-in plugin. */
export function createBuiltinRegistry(): PluginRegistry {
  const registry = new PluginRegistry();
  for (const plugin of builtinPlugins) registry.register(plugin);
  return registry;
}
