/**
 * Server blocks in two steps. `parseBlocks` checks the whole configuration (keys, directive
 * names, every plugin's options) and touches nothing outside; `createBlock` builds one block's
 * plugins, upstreams and chain in its own child container, still without binding or connecting.
 */
import type { DependencyContainer } from 'tsyringe';
import { localOnly, unlimited, type AccessPolicy, type RateLimit } from './access.js';
import type { ConfigFile, Directive, ServerBlockConfig } from './config/ast.js';
import { didYouMean } from './config/options.js';
import { parseZoneKey, type ZoneKey } from './config/zones.js';
import { buildChain } from './chain.js';
import type { Clock } from './clock.js';
import { ConfigError } from './errors.js';
import { ListenRequests, type ListenRequest, type TransportRegistry } from './listeners/listener.js';
import type { Logger } from './logger.js';
import type { BlockInfo, BlockScope, Next, Plugin, PluginDefinition } from './plugin.js';
import { pluginMetrics } from './plugin-metrics.js';
import type { PluginRegistry } from './registry.js';
import { ErrorReporter, LogErrorReporter } from './report.js';
import { provideService, resolveService, Services } from './services.js';
import { createUpstreamStage } from './upstream/stage.js';
import { InOrderPolicy, UpstreamSet, type UpstreamPolicy } from './upstream/upstream.js';

export interface ParsedPlugin {
  definition: PluginDefinition<any>;
  directives: Directive[];
  options: unknown;
}

export interface ParsedBlock {
  info: BlockInfo;
  config: ServerBlockConfig;
  /** In chain order. */
  plugins: ParsedPlugin[];
}

export interface BuiltBlock {
  info: BlockInfo;
  /** The keys as written, joined: `. corp.test:53`; a metrics label. */
  server: string;
  plugins: Plugin[];
  chain: Next;
  upstreams: UpstreamSet;
  policy: UpstreamPolicy;
  reporter: ErrorReporter;
  access: AccessPolicy;
  rateLimit: RateLimit;
  listens: ListenRequest[];
  container: DependencyContainer;
}

export function parseBlocks(config: ConfigFile, registry: PluginRegistry): ParsedBlock[] {
  if (config.blocks.length === 0) throw new ConfigError({ file: config.file, line: 1, column: 1 }, 'no server blocks: write at least one, e.g. ". { … }"');
  return config.blocks.map((block, index) => parseBlock(block, index, registry));
}

function parseBlock(config: ServerBlockConfig, index: number, registry: PluginRegistry): ParsedBlock {
  const zones: ZoneKey[] = config.keys.map(parseZoneKey);
  const seen = new Set<string>();
  for (let i = 0; i < zones.length; i++) {
    const key = `${zones[i]!.zone}:${zones[i]!.port}`;
    if (seen.has(key)) throw new ConfigError(config.keys[i]!, `zone ${zones[i]!.text} is listed twice in this block`);
    seen.add(key);
  }
  const info: BlockInfo = { zones, keys: config.keys, index };
  const byName = new Map<string, Directive[]>();
  for (const directive of config.directives) {
    const name = directive.name.text;
    if (!registry.get(name)) {
      throw new ConfigError(directive.name, `unknown directive "${name}"${didYouMean(name, registry.names)}`);
    }
    const list = byName.get(name) ?? [];
    list.push(directive);
    byName.set(name, list);
  }
  const plugins = [...byName.entries()]
    .sort(([a], [b]) => registry.rank(a) - registry.rank(b))
    .map(([name, directives]) => {
      const definition = registry.get(name)!;
      return { definition, directives, options: definition.parse(directives, { block: info, transports: registry.transports }) };
    });
  return { info, config, plugins };
}

export interface BlockEnvironment {
  root: DependencyContainer;
  logger: Logger;
  clock: Clock;
  transports: TransportRegistry;
  /** What plugins keep across reloads (BlockScope.keep), owned by the server. */
  kept: Map<string, unknown>;
}

/** The keys as written, joined (`. corp.test:53`): `ctx.server`, and the `server` metrics label. */
export function blockServerName(info: BlockInfo): string {
  return info.zones.map((z) => z.text).join(' ');
}

export function createBlock(parsed: ParsedBlock, env: BlockEnvironment): BuiltBlock {
  const container = env.root.createChildContainer();
  const upstreams = new UpstreamSet();
  const listens = new ListenRequests();
  provideService(container, Services.upstreams, upstreams);
  provideService(container, Services.listenRequests, listens);
  provideService<UpstreamPolicy>(container, Services.upstreamPolicy, new InOrderPolicy());
  provideService<ErrorReporter>(container, Services.errorReporter, new LogErrorReporter(env.logger));
  provideService<AccessPolicy>(container, Services.accessPolicy, localOnly);
  provideService<RateLimit>(container, Services.rateLimit, unlimited);

  const plugins: Plugin[] = [];
  for (const { definition, directives, options } of parsed.plugins) {
    const scope: BlockScope = {
      block: parsed.info,
      container,
      logger: env.logger.child(`plugin/${definition.name}`),
      clock: env.clock,
      upstreams,
      listeners: listens,
      transports: env.transports,
      metrics: pluginMetrics(definition.name, blockServerName(parsed.info)),
      keep<T>(key: string, create: () => T): T {
        const id = `${definition.name}\u0000${parsed.info.zones.map((z) => z.text).join(' ')}\u0000${key}`;
        if (!env.kept.has(id)) env.kept.set(id, create());
        return env.kept.get(id) as T;
      },
    };
    try {
      plugins.push(definition.create(options, scope));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(directives[0]!.name, (err as Error).message, definition.name, { cause: err });
    }
  }
  // Read after creation: a plugin (loadbalance, errors, acl, ratelimit) may have replaced the defaults.
  const policy = resolveService(container, Services.upstreamPolicy);
  const reporter = resolveService(container, Services.errorReporter);
  const access = resolveService(container, Services.accessPolicy);
  const rateLimit = resolveService(container, Services.rateLimit);
  const chain = buildChain(plugins, createUpstreamStage(upstreams, policy));
  return {
    info: parsed.info,
    server: blockServerName(parsed.info),
    plugins,
    chain,
    upstreams,
    policy,
    reporter,
    access,
    rateLimit,
    listens: listens.requests,
    container,
  };
}
