/**
 * Two orders, each data rather than the order of lines in a Corefile.
 *
 * The chain: where each plugin that serves queries (or wraps links) stands, CoreDNS's plugin.cfg
 * idea. Each plugin feels the effects of those after it and must not care about those before
 * it: trace sees everything below it, the log sees the final answer, errors turns failures
 * below it into SERVFAIL, path answers its own names (and watches the rest of the chain resolve
 * one), filter looks before the cache, hosts answers before an upstream is asked (its local
 * data is not validated), dnssec validates what upstreams say (and asks them for keys through
 * the links after it), loadbalance picks the upstream (and may rotate the answer's addresses).
 * Plugins from outside place themselves next to one of these (`position`).
 *
 * The set-up: the order in which a block's plugins are created, and started (stopped in
 * reverse). A plugin that requires or uses a service comes after every plugin that provides it
 * (`provides`, `requires`, `uses` of the definitions: sources' resolver lists before the
 * protocol plugins that name servers from them, the protocol plugins' upstreams before
 * anonymize, which checks its routes against them); otherwise plugins keep the order they were
 * registered in (plugins/index.ts, then plugins from outside). Plugins that serve nothing (the
 * door's acl and ratelimit, metrics and health, listen, sources, the protocol plugins) have a
 * place only there.
 */
export const CHAIN_ORDER: readonly string[] = ['trace', 'log', 'errors', 'path', 'filter', 'cache', 'hosts', 'dnssec', 'loadbalance'];

/** What `setupOrder` needs to know of a plugin. */
export interface SetupNode {
  readonly name: string;
  /** Service tokens (core/services.ts), compared by identity. */
  readonly provides?: readonly object[];
  readonly needs: readonly object[];
}

/** Plugins that each need what another of them provides: none can be set up first. */
export class SetupCycleError extends Error {
  constructor(readonly names: readonly string[]) {
    super(`plugins ${names.join(', ')} need services of each other (provides / requires / uses): none of them can be set up first`);
  }
}

/**
 * The nodes in set-up order: each after the providers of what it needs, otherwise as given.
 * Throws SetupCycleError when two plugins each need what the other provides.
 */
export function setupOrder<T extends SetupNode>(nodes: readonly T[]): T[] {
  const placed: T[] = [];
  const waiting = [...nodes];
  while (waiting.length > 0) {
    const ready = waiting.findIndex((node) => !node.needs.some((token) => waiting.some((other) => other !== node && other.provides?.includes(token))));
    if (ready < 0) throw new SetupCycleError(waiting.map((n) => n.name));
    placed.push(waiting.splice(ready, 1)[0]!);
  }
  return placed;
}
