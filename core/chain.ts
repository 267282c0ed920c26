/**
 * Composes a block's plugins into one handler, once, when the block is built: each plugin's
 * `next` is the composed rest of the chain, so serving a query allocates no closures. A failure
 * is tagged with the name of the plugin it came from, once, on its way up; an answer notes the
 * link that produced it (`ctx.meta.answeredBy`), for metrics and the log.
 *
 * Plugins with `wrapLink` (trace) wrap every link after them; without one, the chain is just
 * the plugins' serve functions and these two notes.
 */
import { PluginError } from './errors.js';
import type { Next, Plugin } from './plugin.js';

export function buildChain(plugins: readonly Plugin[], terminal: Next, terminalName = 'upstream'): Next {
  // The first link after a wrapper is the one every query enters first: wrappers decide there.
  const firstServing = (after: number): number => {
    let i = after + 1;
    while (i < plugins.length && !plugins[i]!.serve) i++;
    return i;
  };
  const wrapped = (position: number, name: string, link: Next): Next => {
    for (let i = position - 1; i >= 0; i--) {
      const wrapper = plugins[i]!;
      if (wrapper.wrapLink) link = wrapper.wrapLink(name, link, firstServing(i) === position);
    }
    return link;
  };
  let next = tagFailures(terminalName, wrapped(plugins.length, terminalName, terminal));
  for (let i = plugins.length - 1; i >= 0; i--) {
    const plugin = plugins[i]!;
    if (!plugin.serve) continue;
    const downstream = next;
    const serve = plugin.serve.bind(plugin);
    next = tagFailures(plugin.name, wrapped(i, plugin.name, (ctx) => serve(ctx, downstream)));
  }
  return next;
}

function tagFailures(name: string, handler: Next): Next {
  return async (ctx) => {
    let response: Buffer | null;
    try {
      response = await handler(ctx);
    } catch (error) {
      // Whatever answered below is not the answer any more: the link that turns this failure
      // into one (errors, or the door) is.
      ctx.meta.answeredBy = undefined;
      throw error instanceof PluginError ? error : new PluginError(name, error);
    }
    // The innermost link to return sets it first; the links above it keep its name.
    ctx.meta.answeredBy ??= name;
    return response;
  };
}
