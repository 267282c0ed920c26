/**
 * The plugin contract. A plugin definition parses its directive (every occurrence in one server
 * block at once) into typed options, then creates the plugin for that block. The plugin may
 * serve queries — answer, pass on with `next`, change the query on the way down or the answer
 * on the way up — and may have start/stop hooks. Protocol plugins serve nothing: they add
 * upstreams to the block's set.
 */
import type { DependencyContainer } from 'tsyringe';
import type { Directive, Token } from './config/ast.js';
import type { ZoneKey } from './config/zones.js';
import type { Clock } from './clock.js';
import type { RequestContext } from './context.js';
import type { ListenRequests, TransportDefinition, TransportRegistry } from './listeners/listener.js';
import type { Logger } from './logger.js';
import type { PluginMetrics } from './plugin-metrics.js';
import type { UpstreamSet } from './upstream/upstream.js';

/** Passes the query to the rest of the chain; resolves with its answer (null: send nothing). */
export type Next = (ctx: RequestContext) => Promise<Buffer | null>;

export interface Plugin {
  readonly name: string;
  /**
   * Serves one query. Return an answer, or `next(ctx)` (possibly changed). A thrown error makes
   * this query SERVFAIL and is reported with the plugin's name; other queries are unaffected.
   * The returned Buffer becomes the listener's to change (ID, truncation): never return a
   * Buffer you keep (copy a cached one).
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
  /** After every block is built, before listeners bind. */
  start?(): Promise<void> | void;
  /** On shutdown, and on reload for the old configuration once the new one serves. */
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
  /** The block's child container: resolve services, or register ones other plugins use. */
  readonly container: DependencyContainer;
  /** A logger whose lines say `plugin/NAME`. */
  readonly logger: Logger;
  readonly clock: Clock;
  readonly upstreams: UpstreamSet;
  readonly listeners: ListenRequests;
  readonly transports: TransportRegistry;
  /** Counters and gauges of this plugin's own, exposed by the metrics plugin (core/plugin-metrics.ts). */
  readonly metrics: PluginMetrics;
  /**
   * State that outlives a reload: the value made by `create` the first time this plugin in this
   * block asks for `key`, and the same value in every configuration after (a cache that should
   * stay warm, counters, connections). It lives as long as the process: `stop()` must not
   * destroy what it keeps here.
   */
  keep<T>(key: string, create: () => T): T;
}

export interface PluginDefinition<Options = unknown> {
  readonly name: string;
  /**
   * Directive tokens → options. Runs for `veil check` too, so it opens no socket; it may read
   * files. Errors are ConfigErrors pointing at the token at fault (see config/options.ts).
   */
  parse(directives: Directive[], scope: ParseScope): Options;
  /** Builds the plugin for one block. Binds and connects nothing yet (that is `start`). */
  create(options: Options, scope: BlockScope): Plugin;
  /**
   * Loads what the plugin needs before its directives are parsed, when a configuration uses it
   * (names it, or listens on one of its schemes): a large library that servers without the
   * plugin should not carry. Runs once per configuration loaded; make it cheap the second time.
   */
  prepare?(): Promise<void>;
  /** Listener schemes this plugin brings (`tls`, `https`, …), registered with the plugin. */
  readonly transports?: readonly TransportDefinition<any>[];
  /** For plugins outside the built-in order: where they stand in the chain. */
  readonly position?: { before: string } | { after: string };
}
