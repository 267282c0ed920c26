/**
 * The plugin contract. A plugin definition parses its directive (every occurrence in one server
 * block at once) into typed options, then creates the plugin for that block. Besides those two
 * steps, the definition says how the plugin extends Veil: whether it stands in the query chain,
 * the services it provides to the block or needs from it, what else it brings (listener
 * schemes, HTTP endpoints, channel subscriptions). The block builder checks each declaration
 * (core/block.ts), so that a plugin cannot do quietly what its definition does not say.
 */
import type { Directive, Token } from './config/ast.js';
import type { ZoneKey } from './config/zones.js';
import type { Clock } from './clock.js';
import type { RequestContext } from './context.js';
import type { ListenRequests, TransportDefinition, TransportRegistry } from './listeners/listener.js';
import type { Logger } from './logger.js';
import type { PluginMetrics } from './plugin-metrics.js';
import type { ServerServiceToken, ServiceToken } from './services.js';
import type { UpstreamSet } from './upstream/upstream.js';

/**
 * Passes the query to the rest of the chain; resolves with its answer (null: send nothing).
 * Call it at most once per context: a second call with the same context is an error (it would
 * send the query down, and upstream, a second time). A query of a plugin's own goes down in a
 * context of its own: `ctx.withQuery(query)`.
 */
export type Next = (ctx: RequestContext) => Promise<Buffer | null>;

export interface Plugin {
  readonly name: string;
  /**
   * Serves one query. Return an answer, or `next(ctx)` (or `next(ctx.withQuery(changed))`). A
   * thrown error makes this query SERVFAIL and is reported with the plugin's name; other
   * queries are unaffected. The returned Buffer becomes the listener's to change (ID,
   * truncation): never return a Buffer you keep (copy a cached one).
   */
  serve?(ctx: RequestContext, next: Next): Promise<Buffer | null>;
  /**
   * Wraps each link of the block's chain that stands after this plugin (every later plugin's
   * serve, then the upstream stage), once, when the chain is built: how `trace` samples queries
   * and gives each plugin a span. `outermost` marks the first of those links, which every query
   * enters first. Cheaper than `serve` for work most queries skip: a wrapper is a plain
   * function, not a link of its own. A block without such a plugin gets the plain chain.
   */
  wrapLink?(name: string, link: Next, outermost: boolean): Next;
  /** After every block is built, before listeners bind; in the order plugins were set up. */
  start?(): Promise<void> | void;
  /** On shutdown, and on reload for the old configuration once the new one serves; in reverse. */
  stop?(): Promise<void> | void;
}

export interface BlockInfo {
  /** The block's keys, parsed. */
  zones: readonly ZoneKey[];
  /** The key tokens, for error locations. */
  keys: readonly Token[];
  /** Position of the block among the configuration's blocks. */
  index: number;
}

/** What a plugin's parse step may look at besides its directives. */
export interface ParseScope {
  readonly block: BlockInfo;
  /** The listener schemes known (for `listen` and plugins that check addresses). */
  readonly transports: TransportRegistry;
}

/** What a plugin gets when it is created for a server block. */
export interface BlockScope {
  readonly block: BlockInfo;
  /** A logger whose lines say `plugin/NAME`. */
  readonly logger: Logger;
  readonly clock: Clock;
  /** The block's upstreams: a plugin that provides `Services.upstreams` adds its own here. */
  readonly upstreams: UpstreamSet;
  readonly listeners: ListenRequests;
  readonly transports: TransportRegistry;
  /** Counters and gauges of this plugin's own, exposed by the metrics plugin (core/plugin-metrics.ts). */
  readonly metrics: PluginMetrics;
  /**
   * A server-wide service (core/services.ts): one per server, across blocks and reloads, made
   * the first time it is asked for; never null, and asked for at any time without a
   * declaration (nothing in a block provides it).
   */
  service<T>(token: ServerServiceToken<T>): T;
  /**
   * A service of the block (or the server), or null when nothing provides it. While `create`
   * runs, only the services the definition `requires` or `uses` may be asked for: those are set
   * up before this plugin. Later (in `start`, or per query) any service may be.
   */
  service<T>(token: ServiceToken<T>): T | null;
  /** Installs a service in the block for core and the plugins set up after this one; only a token the definition `provides`. */
  provide<T>(token: ServiceToken<T>, value: T): void;
  /**
   * State that outlives a reload: the value made by `create` the first time this plugin in this
   * block asks for `key`, and the same value in every configuration after (a cache that should
   * stay warm, counters, connections). It lives as long as the process: `stop()` must not
   * destroy what it keeps here.
   */
  keep<T>(key: string, create: () => T): T;
}

/**
 * A service a plugin cannot do without, with the options it was given. A block without a
 * plugin that provides it is a configuration error at the option that needs it:
 * `Corefile:4:16: dnscrypt: servers without a stamp come from resolver lists, and this block has no sources directive`.
 */
export interface Requirement<Options = unknown> {
  readonly service: ServiceToken<unknown>;
  /**
   * The tokens of the options that need the service: the error points at the first; none means
   * not needed with these options. Without this function the service is always needed (the
   * error then points at the directive).
   */
  readonly neededBy?: (options: Options) => readonly Token[];
  /** What needs it, the first half of the message: `servers without a stamp come from resolver lists`. */
  readonly because: string;
}

/**
 * Ways of extending Veil that neither the chain nor the services show, named so that a reader
 * (and `veil check`) sees them: `http`, the plugin serves HTTP endpoints of its own (health,
 * metrics); `observe`, it subscribes to the diagnostics channels of core/events.ts (metrics,
 * trace).
 */
export type PluginRole = 'http' | 'observe';

export interface PluginDefinition<Options = unknown> {
  readonly name: string;
  /**
   * Directive tokens → options. Runs for `veil check` too, so it opens no socket; it may read
   * files. Errors are ConfigErrors pointing at the token at fault (see config/options.ts).
   */
  parse(directives: Directive[], scope: ParseScope): Options;
  /**
   * Builds the plugin for one block. Binds and connects nothing yet (that is `start`). Returns
   * nothing when there is nothing to serve, wrap, start or stop (the plugin only provides
   * services or adds upstreams).
   */
  create(options: Options, scope: BlockScope): Plugin | void;
  /**
   * Loads what the plugin needs before its directives are parsed, when a configuration uses it
   * (names it, or listens on one of its schemes): a large library that servers without the
   * plugin should not carry. Runs once per configuration loaded; make it cheap the second time.
   */
  prepare?(): Promise<void>;

  // How the plugin extends Veil; each is checked when a block is built.

  /**
   * At most one such directive per server block; a second is a configuration error at its line.
   * A string completes the message (`put every rule in one acl directive`).
   */
  readonly once?: true | string;
  /**
   * Where the plugin stands in the query chain when it serves queries or wraps links and is not
   * one of the built-in chain plugins (core/order.ts): `{ before: 'cache' }`, `{ after: 'hosts' }`.
   * A plugin that returns `serve` or `wrapLink` without a place in the chain is refused.
   */
  readonly position?: { before: string } | { after: string };
  /**
   * Services the plugin may install in its block with `scope.provide`: the access policy at the
   * door (`Services.accessPolicy`: acl), the rate limit (`Services.rateLimit`: ratelimit), the
   * upstream policy (`Services.upstreamPolicy`: loadbalance), the error reporter (errors), a
   * token of its own for other plugins (the resolver lists of sources). `Services.upstreams`
   * here means the plugin adds upstreams to the block's set (forward, dot, doh, odoh, dnscrypt).
   * Plugins that require or use a service are set up after every plugin that provides it.
   */
  readonly provides?: readonly ServiceToken<any>[];
  /** Services the plugin reads in `create` and cannot do without (with some options). */
  readonly requires?: readonly Requirement<Options>[];
  /** Services the plugin reads in `create` when the block has them (`scope.service` is null otherwise). */
  readonly uses?: readonly ServiceToken<any>[];
  /** Listener schemes this plugin brings (`tls`, `https`, …), registered with the plugin. */
  readonly transports?: readonly TransportDefinition<any>[];
  /** What else it does: serves HTTP (`http`), subscribes to diagnostics channels (`observe`). */
  readonly roles?: readonly PluginRole[];
}
