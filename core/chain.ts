/**
 * Composes a block's plugins into one handler, once, when the block is built: each plugin's
 * `next` is the composed rest of the chain, so serving a query allocates no closures. A failure
 * is tagged with the name of the plugin it came from, once, on its way up; an answer notes the
 * link that produced it (`ctx.meta.answeredBy`), for metrics and the log.
 *
 * Each link notes on the context how deep the query has gone; a plugin that calls `next` a
 * second time with the same context gets an error instead of a second trip down the chain
 * (and a second upstream query). A query of its own goes down in a context of its own
 * (`ctx.withQuery`), which starts at the top of the rest of the chain.
 *
 * Plugins with `wrapLink` (trace) wrap every link after them; without one, the chain is just
 * the plugins' serve functions and these notes.
 */
import { chainDepth, type RequestContext } from './context.js';
import { PluginError } from './errors.js';
import type { Next, Plugin } from './plugin.js';

/** The name the chain gives its last link, the upstream stage (`ctx.meta.answeredBy`, failures). */
export const UPSTREAM_LINK = 'upstream';

/**
 * `taggedTerminal`, when given, is `terminal` doing the chain's notes itself: it sets
 * `ctx.meta.answeredBy` to `terminalName` on its answers and tags its failures with that name,
 * as `tagFailures` would (the upstream stage, core/upstream/stage.ts). With no wrapper around the
 * last link, the chain takes it as it is: no `then` of the chain's own around every forwarded
 * query (a promise, a microtask and the lookup of `then` on the answer less). A wrapper (trace)
 * gets `terminal`, so that it sees the answer before the chain notes who gave it.
 */
export function buildChain(plugins: readonly Plugin[], terminal: Next, terminalName = UPSTREAM_LINK, taggedTerminal?: Next): Next {
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
  // Depths count from the terminal (1) up, so each link knows its own without knowing the caller.
  let depth = 1;
  const last = wrapped(plugins.length, terminalName, terminal);
  let next = enterOnce(depth, taggedTerminal && last === terminal ? taggedTerminal : tagFailures(terminalName, last));
  for (let i = plugins.length - 1; i >= 0; i--) {
    const plugin = plugins[i]!;
    if (!plugin.serve) continue;
    const downstream = next;
    const serve = plugin.serve.bind(plugin);
    next = enterOnce(++depth, tagFailures(plugin.name, wrapped(i, plugin.name, (ctx) => serve(ctx, downstream))));
  }
  return next;
}

/**
 * A context enters each link at most once, going down: links deeper in the chain have smaller
 * depths, so entering a link whose depth is not below the context's last one means the caller
 * called `next` again. The error rises to the caller, whose own link tags it with its name.
 */
function enterOnce(depth: number, link: Next): Next {
  return (ctx) => {
    if (ctx[chainDepth] <= depth) {
      return Promise.reject(new Error('next() was called a second time for the same query; a plugin sends a query of its own down with next(ctx.withQuery(query))'));
    }
    ctx[chainDepth] = depth;
    return link(ctx);
  };
}

function tagFailures(name: string, handler: Next): Next {
  // A `then`, not an async function: a query passes every link of its chain, and an async
  // function's frame was a few hundred bytes of garbage a link (heap sampling of a forwarded miss).
  return (ctx) => {
    let answer: Promise<Buffer | null>;
    try {
      answer = handler(ctx);
    } catch (error) {
      return Promise.reject(failedIn(name, ctx, error));
    }
    return answer.then(
      (response) => {
        // The innermost link to return sets it first; the links above it keep its name.
        ctx.meta.answeredBy ??= name;
        return response;
      },
      (error: unknown) => {
        throw failedIn(name, ctx, error);
      },
    );
  };
}

/** A failure on its way up through the link `name`, tagged with the plugin it came from. */
export function failedIn(name: string, ctx: RequestContext, error: unknown): PluginError {
  // Whatever answered below is not the answer any more: the link that turns this failure into
  // one (errors, or the door) is.
  ctx.meta.answeredBy = undefined;
  return error instanceof PluginError ? error : new PluginError(name, error);
}
