/** Plugins that exist only in tests: they record what they see or misbehave on purpose. */
import type { PluginDefinition } from '../../core/plugin.js';
import { createBuiltinRegistry } from '../../plugins/index.js';
import { PluginRegistry } from '../../core/registry.js';
import { buildReply, errorReply } from '../../core/dns/message.js';
import { QType, Rcode } from '../../core/dns/constants.js';
import { cacheEvent, filterBlocked } from '../../core/events.js';
import type { ConfigError } from '../../core/errors.js';
import { expectConfigError as expectConfigErrorWith } from '../../core/testing/config.js';

/** Records, in `trail`, the order in which plugins saw the query. */
export function tracer(name: string, trail: string[], position: { before: string } | { after: string }): PluginDefinition<null> {
  return {
    name,
    position,
    parse: () => null,
    create: () => ({
      name,
      async serve(ctx, next) {
        trail.push(name);
        return next(ctx);
      },
    }),
  };
}

/** `boom [NAME]`: throws for queries to NAME (default every name). */
export const boomPlugin: PluginDefinition<string | null> = {
  name: 'boom',
  position: { after: 'hosts' },
  parse: (directives) => directives[0]!.args[0]?.text ?? null,
  create: (target) => ({
    name: 'boom',
    async serve(ctx, next) {
      if (target === null || ctx.name === target) throw new Error('kaboom');
      return next(ctx);
    },
  }),
};

/** `big N`: answers TXT queries with N strings of 200 bytes (to exercise truncation). */
export const bigPlugin: PluginDefinition<number> = {
  name: 'big',
  position: { after: 'hosts' },
  parse: (directives) => Number(directives[0]!.args[0]?.text ?? '10'),
  create: (count) => ({
    name: 'big',
    async serve(ctx, next) {
      if (ctx.type !== QType.TXT) return next(ctx);
      const rdata = Buffer.concat(Array.from({ length: count }, () => Buffer.concat([Buffer.from([200]), Buffer.alloc(200, 0x61)])));
      return buildReply(ctx.query, { questionEnd: ctx.question.end, edns: ctx.edns, answers: [{ type: QType.TXT, ttl: 60, rdata }] });
    },
  }),
};

/** `slow MS`: waits, then passes on (answers come back out of order on a stream). */
export const slowPlugin: PluginDefinition<number> = {
  name: 'slow',
  position: { after: 'hosts' },
  parse: (directives) => Number(directives[0]!.args[0]?.text ?? '100'),
  create: (ms) => ({
    name: 'slow',
    async serve(ctx, next) {
      if (ctx.name.startsWith('slow.')) await new Promise((r) => setTimeout(r, ms));
      return next(ctx);
    },
  }),
};

/**
 * `fakecache`, where the cache stands: answers names under cached.test with 192.0.2.99 as a
 * cache hit would (ctx.meta.cacheHit, a `hit` on veil:cache); every other name is a `miss`.
 * Stands in for the cache plugin in tests of what observes it.
 */
export const fakeCachePlugin: PluginDefinition<null> = {
  name: 'fakecache',
  position: { after: 'cache' },
  parse: () => null,
  create: () => {
    let entries = 0;
    return {
      name: 'fakecache',
      async serve(ctx, next) {
        if (!ctx.name.endsWith('cached.test.')) {
          if (cacheEvent.hasSubscribers) cacheEvent.publish({ server: ctx.server, event: 'miss', entries });
          return next(ctx);
        }
        ctx.meta.cacheHit = true;
        if (cacheEvent.hasSubscribers) cacheEvent.publish({ server: ctx.server, event: 'hit', entries: ++entries });
        return buildReply(ctx.query, { questionEnd: ctx.question.end, edns: ctx.edns, answers: [{ type: QType.A, ttl: 60, rdata: Buffer.from([192, 0, 2, 99]) }] });
      },
    };
  },
};

/**
 * `fakefilter`, where the filter stands: names under blocked.test get NXDOMAIN, blocked by the
 * list `test-list` (ctx.meta.blockedBy, veil:filter:blocked). Stands in for the filter plugin.
 */
export const fakeFilterPlugin: PluginDefinition<null> = {
  name: 'fakefilter',
  position: { after: 'filter' },
  parse: () => null,
  create: () => ({
    name: 'fakefilter',
    async serve(ctx, next) {
      if (!ctx.name.endsWith('blocked.test.')) return next(ctx);
      ctx.meta.blockedBy = 'test-list';
      if (filterBlocked.hasSubscribers) filterBlocked.publish({ ctx, list: 'test-list' });
      return errorReply(ctx.query, Rcode.NXDOMAIN, ctx.question.end, ctx.edns);
    },
  }),
};

/** The built-in registry plus the test plugins above. */
export function testRegistry(extra: PluginDefinition<any>[] = []): PluginRegistry {
  const registry = createBuiltinRegistry();
  for (const plugin of [boomPlugin, bigPlugin, slowPlugin, fakeCachePlugin, fakeFilterPlugin, ...extra]) registry.register(plugin);
  return registry;
}

/** The test kit's expectConfigError (core/testing/config.ts), with the registry of these tests. */
export function expectConfigError(text: string, line: number, column: number, pattern: RegExp, registry: PluginRegistry = testRegistry()): Promise<ConfigError> {
  return expectConfigErrorWith(text, line, column, pattern, { registry });
}
