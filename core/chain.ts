/**
 * Composes a block's plugins into one handler, once, when the block is built: each plugin's
 * `next` is the composed rest of the chain, so serving a query allocates no closures. A failure
 * is tagged with the name of the plugin it came from, once, on its way up.
 */
import { PluginError } from './errors.js';
import type { Next, Plugin } from './plugin.js';

export function buildChain(plugins: readonly Plugin[], terminal: Next, terminalName = 'upstream'): Next {
  let next = tagFailures(terminalName, terminal);
  for (let i = plugins.length - 1; i >= 0; i--) {
    const plugin = plugins[i]!;
    if (!plugin.serve) continue;
    const downstream = next;
    const serve = plugin.serve.bind(plugin);
    next = tagFailures(plugin.name, (ctx) => serve(ctx, downstream));
  }
  return next;
}

function tagFailures(name: string, handler: Next): Next {
  return async (ctx) => {
    try {
      return await handler(ctx);
    } catch (error) {
      throw error instanceof PluginError ? error : new PluginError(name, error);
    }
  };
}
