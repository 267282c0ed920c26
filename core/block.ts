/**
 * Server blocks in two steps. `parseBlocks` checks the whole configuration (keys, directive
 * names, every plugin's options) and touches nothing outside; `createBlock` builds one block's
 * plugins, upstreams and chain in its own child container, still without binding or connecting.
 * Both hold each plugin to what its definition declares (core/plugin.ts): `once`, what it
 * provides, requires and uses, its place in the chain.
 */
import { localOnly, unlimited, type AccessPolicy, type RateLimit } from './access.js';
import type { ConfigFile, Directive, ServerBlockConfig } from './config/ast.js';
import { didYouMean } from './config/options.js';
import { parseZoneKey, type ZoneKey } from './config/zones.js';
import { buildChain, UPSTREAM_LINK } from './chain.js';
import type { Clock } from './clock.js';
import { ConfigError } from './errors.js';
import { ListenRequests, type ListenRequest, type TransportRegistry } from './listeners/listener.js';
import type { Logger } from './logger.js';
import { SetupCycleError, setupOrder } from './order.js';
import type { BlockInfo, BlockScope, Next, Plugin, PluginDefinition } from './plugin.js';
import { pluginMetrics } from './plugin-metrics.js';
import type { PluginRegistry } from './registry.js';
import { ErrorReporter, LogErrorReporter } from './report.js';
import { ServerServiceToken, Services, type ServiceContainer, type ServiceToken } from './services.js';
import { createUpstreamStage } from './upstream/stage.js';
import { InOrderPolicy, UpstreamSet, type UpstreamPolicy } from './upstream/upstream.js';

export interface ParsedPlugin {
  definition: PluginDefinition<any>;
  directives: Directive[];
  options: unknown;
  /** Its place in the chain (lower runs first), or -1 when it has none. */
  chainRank: number;
  /** Who provides each service it requires, for the message when none in the block does. */
  providers: ReadonlyMap<ServiceToken<unknown>, readonly string[]>;
}

export interface ParsedBlock {
  info: BlockInfo;
  config: ServerBlockConfig;
  /** In set-up order: providers of a service before the plugins that need it. */
  plugins: ParsedPlugin[];
}

export interface BuiltBlock {
  info: BlockInfo;
  /** The keys as written, joined: `. corp.test:53`; a metrics label. */
  server: string;
  /** Every plugin of the block, in set-up order (started in it, stopped in reverse). */
  plugins: Plugin[];
  /** The plugins that stand in the chain, in the order queries go through them. */
  links: Plugin[];
  chain: Next;
  upstreams: UpstreamSet;
  policy: UpstreamPolicy;
  reporter: ErrorReporter;
  access: AccessPolicy;
  rateLimit: RateLimit;
  listens: ListenRequest[];
  /** The block's services; lookups that find nothing here ask the server's root container. */
  container: ServiceContainer;
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
    const definition = registry.get(name);
    if (!definition) {
      throw new ConfigError(directive.name, `unknown directive "${name}"${didYouMean(name, registry.names)}`);
    }
    const list = byName.get(name) ?? [];
    if (definition.once && list.length === 1) {
      const hint = typeof definition.once === 'string' ? `; ${definition.once}` : '';
      throw new ConfigError(directive.name, `${name} is given twice in this block${hint}`, name);
    }
    list.push(directive);
    byName.set(name, list);
  }
  const used = registry.names
    .filter((name) => byName.has(name))
    .map((name) => {
      const definition = registry.get(name)!;
      return { name, definition, provides: definition.provides, needs: [...(definition.requires ?? []).map((r) => r.service), ...(definition.uses ?? [])] };
    });
  let ordered: typeof used;
  try {
    ordered = setupOrder(used);
  } catch (err) {
    if (!(err instanceof SetupCycleError)) throw err;
    throw new ConfigError(byName.get(err.names[0]!)![0]!.name, err.message);
  }
  const plugins = ordered.map(({ name, definition }): ParsedPlugin => {
    const directives = byName.get(name)!;
    const providers = new Map((definition.requires ?? []).map((r) => [r.service, registry.providersOf(r.service)] as const));
    const options = definition.parse(directives, { block: info, transports: registry.transports });
    return { definition, directives, options, chainRank: registry.chainRank(name), providers };
  });
  return { info, config, plugins };
}

export interface BlockEnvironment {
  /** The server's services: the block's container is made below it. */
  root: ServiceContainer;
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
  const container = env.root.child();
  const upstreams = new UpstreamSet();
  const listens = new ListenRequests();
  container.provide<UpstreamPolicy>(Services.upstreamPolicy, new InOrderPolicy());
  container.provide<ErrorReporter>(Services.errorReporter, new LogErrorReporter(env.logger));
  container.provide<AccessPolicy>(Services.accessPolicy, localOnly);
  container.provide<RateLimit>(Services.rateLimit, unlimited);

  const plugins: Plugin[] = [];
  for (const entry of parsed.plugins) {
    const { definition, directives } = entry;
    checkRequirements(entry, container);
    const scope = blockScope(entry, parsed.info, container, upstreams, listens, env);
    const before = { upstreams: upstreams.size, listens: listens.requests.length };
    let plugin: Plugin;
    try {
      plugin = definition.create(entry.options, scope.scope) ?? { name: definition.name };
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(directives[0]!.name, (err as Error).message, definition.name, { cause: err });
    } finally {
      scope.created();
    }
    checkDeclared(entry, plugin, upstreams.size > before.upstreams, listens.requests.length > before.listens);
    plugins.push(plugin);
  }
  // Read after creation: a plugin (loadbalance, errors, acl, ratelimit) may have replaced the defaults.
  const policy = container.get(Services.upstreamPolicy)!;
  const reporter = container.get(Services.errorReporter)!;
  const access = container.get(Services.accessPolicy)!;
  const rateLimit = container.get(Services.rateLimit)!;
  const links = parsed.plugins
    .map((entry, i) => ({ rank: entry.chainRank, plugin: plugins[i]! }))
    .filter((link) => link.rank >= 0)
    .sort((a, b) => a.rank - b.rank)
    .map((link) => link.plugin);
  const stage = createUpstreamStage(upstreams, policy);
  const chain = buildChain(links, stage.handler, UPSTREAM_LINK, stage.tagged);
  return {
    info: parsed.info,
    server: blockServerName(parsed.info),
    plugins,
    links,
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

/** A missing required service is the user's to fix: a configuration error at the option that needs it. */
function checkRequirements({ definition, options, directives, providers }: ParsedPlugin, container: ServiceContainer): void {
  for (const requirement of (definition.requires ?? []) as NonNullable<PluginDefinition['requires']>) {
    const neededBy = requirement.neededBy ? requirement.neededBy(options) : [directives[0]!.name];
    if (neededBy.length === 0 || container.has(requirement.service)) continue;
    const names = providers.get(requirement.service) ?? [];
    const missing = names.length > 0 ? `this block has no ${names.join(' or ')} directive` : `nothing in this block provides ${requirement.service.description ?? 'it'}`;
    throw new ConfigError(neededBy[0]!, `${requirement.because}, and ${missing}`, definition.name);
  }
}

/**
 * The scope a plugin is created with; block services it may ask for while `create` runs are
 * those it declared (server-wide ones are always there, so any may be asked for).
 */
function blockScope(entry: ParsedPlugin, info: BlockInfo, container: ServiceContainer, upstreams: UpstreamSet, listens: ListenRequests, env: BlockEnvironment) {
  const { definition } = entry;
  const name = definition.name;
  const declared = new Set<ServiceToken<unknown>>([...(definition.requires ?? []).map((r) => r.service), ...(definition.uses ?? [])]);
  let creating = true;
  const scope: BlockScope = {
    block: info,
    logger: env.logger.child(`plugin/${name}`),
    clock: env.clock,
    upstreams,
    listeners: listens,
    transports: env.transports,
    metrics: pluginMetrics(name, blockServerName(info)),
    service<T>(token: ServiceToken<T>): T | null {
      if (creating && !declared.has(token) && !(token instanceof ServerServiceToken)) {
        throw new Error(`plugin "${name}" asked for ${token.description} while it was created, but its definition neither requires nor uses it (so nothing makes sure its provider is set up first)`);
      }
      return container.get(token);
    },
    provide<T>(token: ServiceToken<T>, value: T): void {
      if (!creating) throw new Error(`plugin "${name}" provides ${token.description} after it was created: plugins set up after it have not seen it`);
      if (!definition.provides?.includes(token)) throw new Error(`plugin "${name}" provides ${token.description}, which its definition does not declare in provides`);
      container.provide(token, value);
    },
    keep<T>(key: string, create: () => T): T {
      const id = `${name}\u0000${blockServerName(info)}\u0000${key}`;
      if (!env.kept.has(id)) env.kept.set(id, create());
      return env.kept.get(id) as T;
    },
  };
  return { scope, created: () => void (creating = false) };
}

/** What a plugin did in `create` that its definition must say: serving (a place in the chain), adding upstreams or listeners. */
function checkDeclared({ definition, directives, chainRank }: ParsedPlugin, plugin: Plugin, addedUpstreams: boolean, addedListeners: boolean): void {
  const at = directives[0]!.name;
  if ((plugin.serve || plugin.wrapLink) && chainRank < 0) {
    throw new ConfigError(at, `the plugin ${plugin.serve ? 'serves queries' : 'wraps links'} but has no place in the chain: its definition needs position: { before: NAME } or { after: NAME }`, definition.name);
  }
  if (addedUpstreams && !definition.provides?.includes(Services.upstreams)) {
    throw new ConfigError(at, 'the plugin added upstreams, but its definition does not declare provides: [Services.upstreams]', definition.name);
  }
  if (addedListeners && !definition.provides?.includes(Services.listenRequests)) {
    throw new ConfigError(at, 'the plugin asked for listeners, but its definition does not declare provides: [Services.listenRequests]', definition.name);
  }
}
