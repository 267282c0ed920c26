/**
 * The running server: builds a configuration completely (every block, plugin, upstream and the
 * listener plan) before anything binds; serves it; on reload builds the new one beside the old,
 * swaps listeners' handlers only once everything new is up, and keeps the old one serving when
 * anything in the new one fails.
 */
import { createBlock, parseBlocks, type BuiltBlock } from './block.js';
import type { ConfigFile } from './config/ast.js';
import { parseGlobalOptions, type GlobalOptions } from './config/global.js';
import { DEFAULT_MAX_CONCURRENT, QueryAdmission } from './admission.js';
import { DEFAULT_DNS_PORT } from './config/zones.js';
import type { Clock } from './clock.js';
import { createDispatcher, QUERY_TIMEOUT_MS, type ListenerLabel, type ZoneRoute } from './dispatch.js';
import { ConfigError, type Location } from './errors.js';
import { loadPlugins } from './external.js';
import type { Listener, ListenerEnvironment, TransportDefinition } from './listeners/listener.js';
import type { Logger } from './logger.js';
import { parseEndpoint, type Endpoint } from './net/address.js';
import type { PluginRegistry } from './registry.js';
import { ServiceContainer, Services, type ServerServiceToken } from './services.js';
import { ServerState } from './state.js';

export interface ServerEnvironment {
  registry: PluginRegistry;
  logger: Logger;
  clock: Clock;
  /** How long in-flight queries may take to finish on stop and reload (default 5 s). */
  graceMs?: number;
  /** Each query's deadline (default QUERY_TIMEOUT_MS). */
  queryTimeoutMs?: number;
  /** Bind listeners with SO_REUSEPORT (set in worker processes). */
  reusePort?: boolean;
}

export interface PlannedListener {
  endpoint: Endpoint;
  transport: TransportDefinition;
  options: unknown;
  routes: ZoneRoute[];
}

export interface BuiltConfig {
  global: GlobalOptions;
  blocks: BuiltBlock[];
  listeners: Map<string, PlannedListener>;
}

/**
 * Parses and builds a configuration without binding or connecting anything. `root` holds the
 * server's services (a running server passes its own, kept across reloads; `veil check` and
 * the test kit get a new one).
 */
export function buildConfig(config: ConfigFile, env: ServerEnvironment, kept = new Map<string, unknown>(), root = ServiceContainer.root()): BuiltConfig {
  const global = parseGlobalOptions(config);
  const parsed = parseBlocks(config, env.registry);
  const blocks = parsed.map((block) =>
    createBlock(block, { root, logger: env.logger, clock: env.clock, transports: env.registry.transports, kept }),
  );
  return { global, blocks, listeners: planListeners(blocks, env) };
}

/**
 * Which listeners serve which zones. A block with `listen` is served there. Without it, a zone
 * key with a port gets UDP and TCP on that port (all IPv4 interfaces, CoreDNS-style); a zone
 * key without a port joins every listener the other blocks declared, or port 53 when there are
 * none. On each listener the longest matching zone wins.
 */
function planListeners(blocks: BuiltBlock[], env: ServerEnvironment): Map<string, PlannedListener> {
  const plan = new Map<string, PlannedListener>();
  const requested = blocks.some((b) => b.listens.length > 0);

  const attach = (endpoint: Endpoint, options: unknown, location: Location | null, zone: string, block: BuiltBlock, keyIndex: number): void => {
    const transport = env.registry.transports.get(endpoint.scheme);
    if (!transport) throw new ConfigError(location, `no listener for scheme "${endpoint.scheme}"`, 'listen');
    let entry = plan.get(endpoint.text);
    if (!entry) {
      entry = { endpoint, transport, options, routes: [] };
      plan.set(endpoint.text, entry);
    } else if (location && JSON.stringify(entry.options) !== JSON.stringify(options)) {
      throw new ConfigError(location, `${endpoint.text} is declared twice with different options`, 'listen');
    }
    if (entry.routes.some((r) => r.zone === zone)) {
      throw new ConfigError(block.info.keys[keyIndex]!, `zone ${zone} is served twice on ${endpoint.text}`);
    }
    entry.routes.push({ zone, block });
  };

  const defaults = (port: number): Endpoint[] =>
    ['udp', 'tcp'].map((scheme) => parseEndpoint(`${scheme}://0.0.0.0:${port}`, null));

  const defaultOptions = (endpoint: Endpoint, location: Location): unknown =>
    env.registry.transports.get(endpoint.scheme)!.parseOptions(endpoint, [], location);

  // Blocks that declare listeners first, so the others can join them.
  for (const block of blocks) {
    for (const request of block.listens) {
      block.info.zones.forEach((zone, i) => attach(request.endpoint, request.options, request.location, zone.zone, block, i));
    }
  }
  const declared = [...plan.values()];
  for (const block of blocks) {
    if (block.listens.length > 0) continue;
    block.info.zones.forEach((zone, i) => {
      const location = block.info.keys[i]!;
      if (zone.port === null && requested) {
        for (const listener of declared) attach(listener.endpoint, listener.options, null, zone.zone, block, i);
        return;
      }
      for (const endpoint of defaults(zone.port ?? DEFAULT_DNS_PORT)) {
        attach(endpoint, defaultOptions(endpoint, location), null, zone.zone, block, i);
      }
    });
  }
  return plan;
}

export class VeilServer {
  private active: BuiltConfig | null = null;
  private readonly listeners = new Map<string, Listener>();
  /** Old configurations still finishing their queries after a reload, and their timers. */
  private readonly retiring = new Map<BuiltConfig, NodeJS.Timeout>();
  private readonly graceMs: number;
  private readonly queryTimeoutMs: number;
  /** What plugins keep across reloads. */
  private readonly kept = new Map<string, unknown>();
  /** For readiness checks; plugins find it in the root container. */
  readonly state = new ServerState();
  /**
   * The server's root container: its state, and the server-wide services (HTTP endpoints, TLS
   * contexts, the metrics hub, …), kept across reloads so that a reload's configuration finds
   * the same ones. Provide a service here before `start` to replace it (a worker process's
   * HTTP endpoints, a test's fake).
   */
  readonly services = ServiceContainer.root();
  /** `max_concurrent`, shared by every listener's dispatcher and kept across reloads. */
  readonly admission: QueryAdmission;

  constructor(private readonly env: ServerEnvironment) {
    this.graceMs = env.graceMs ?? 5000;
    this.queryTimeoutMs = env.queryTimeoutMs ?? QUERY_TIMEOUT_MS;
    this.admission = new QueryAdmission(DEFAULT_MAX_CONCURRENT, env.logger);
    this.services.provide(Services.serverState, this.state);
  }

  /** Bound addresses by configured address (`udp://127.0.0.1:0` → `udp://127.0.0.1:40123`). */
  get bound(): Map<string, string> {
    return new Map([...this.listeners].map(([key, listener]) => [key, listener.boundAddress]));
  }

  get config(): BuiltConfig | null {
    return this.active;
  }

  /** Builds, starts plugins, binds. Throws ConfigError or ListenError, leaving nothing running. */
  async start(config: ConfigFile): Promise<void> {
    if (this.active) throw new Error('server already started');
    const built = await this.build(config);
    this.admission.setLimit(built.global.maxConcurrent);
    this.state.activate(built.blocks, built.listeners.keys(), false);
    await startBlocks(built);
    const bound: Listener[] = [];
    try {
      for (const planned of built.listeners.values()) {
        const listener = planned.transport.create(planned.endpoint, planned.options, this.listenerEnvironment());
        const label = { address: planned.endpoint.text };
        await listener.start(this.dispatcherFor(planned, label));
        label.address = listener.boundAddress;
        bound.push(listener);
        this.listeners.set(planned.endpoint.text, listener);
        this.state.listenerBound(planned.endpoint.text);
        this.announce(planned, listener);
      }
    } catch (err) {
      await Promise.allSettled(bound.map((l) => l.stop(0)));
      this.listeners.clear();
      await stopBlocks(built);
      throw err;
    }
    this.active = built;
  }

  /**
   * Replaces the configuration. Returns false, and leaves the old one serving, when the new one
   * does not build, start or bind; the reason is logged.
   */
  async reload(config: ConfigFile): Promise<boolean> {
    const old = this.active;
    if (!old) throw new Error('server not started');
    let built: BuiltConfig;
    try {
      built = await this.build(config);
      await startBlocks(built);
    } catch (err) {
      this.env.logger.error(`reload failed, keeping the running configuration: ${(err as Error).message}`);
      return false;
    }
    const added: Array<[string, Listener]> = [];
    try {
      for (const [key, planned] of built.listeners) {
        if (this.listeners.has(key)) continue;
        const listener = planned.transport.create(planned.endpoint, planned.options, this.listenerEnvironment());
        const label = { address: planned.endpoint.text };
        await listener.start(this.dispatcherFor(planned, label));
        label.address = listener.boundAddress;
        added.push([key, listener]);
      }
    } catch (err) {
      await Promise.allSettled(added.map(([, l]) => l.stop(0)));
      await stopBlocks(built);
      this.env.logger.error(`reload failed, keeping the running configuration: ${(err as Error).message}`);
      return false;
    }
    // Everything new is up: switch.
    this.admission.setLimit(built.global.maxConcurrent);
    for (const [key, planned] of built.listeners) {
      const existing = this.listeners.get(key);
      if (existing) {
        existing.update(planned.options);
        existing.setHandler(this.dispatcherFor(planned, { address: existing.boundAddress }));
      }
    }
    for (const [key, listener] of added) {
      this.listeners.set(key, listener);
      this.announce(built.listeners.get(key)!, listener);
    }
    const removed = [...this.listeners.keys()].filter((key) => !built.listeners.has(key));
    const closing = removed.map((key) => {
      const listener = this.listeners.get(key)!;
      this.listeners.delete(key);
      this.env.logger.info(`stopped listening on ${listener.boundAddress}`);
      return listener.stop(this.graceMs);
    });
    this.active = built;
    this.state.activate(built.blocks, built.listeners.keys(), true);
    // Queries already inside the old chains may still need their upstreams: retire the old
    // blocks once the longest of those queries must have finished, their upstreams drained
    // (an exchange still under way then is let finish, not failed).
    void Promise.allSettled(closing).then(() => {
      const timer = setTimeout(() => {
        this.retiring.delete(old);
        void stopBlocks(old, 'drain');
      }, this.queryTimeoutMs);
      timer.unref();
      this.retiring.set(old, timer);
    });
    this.env.logger.info('reloaded configuration');
    return true;
  }

  /** Stops accepting, lets queries in flight finish (bounded by the grace time), stops plugins. */
  async stop(): Promise<void> {
    this.state.stopping();
    const listeners = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.allSettled(listeners.map((l) => l.stop(this.graceMs)));
    for (const [config, timer] of this.retiring) {
      clearTimeout(timer);
      await stopBlocks(config);
    }
    this.retiring.clear();
    if (this.active) await stopBlocks(this.active);
    this.active = null;
  }

  /** Loads the plugins the configuration names, then builds it below this server's root container. */
  private async build(config: ConfigFile): Promise<BuiltConfig> {
    await loadPlugins(config, this.env.registry);
    return buildConfig(config, this.env, this.kept, this.services);
  }

  private listenerEnvironment(): ListenerEnvironment {
    return {
      logger: this.env.logger,
      clock: this.env.clock,
      reusePort: this.env.reusePort ?? false,
      service: <T>(token: ServerServiceToken<T>) => this.services.get(token),
    };
  }

  private dispatcherFor(planned: PlannedListener, label: ListenerLabel) {
    return createDispatcher(planned.routes, this.env.clock, this.queryTimeoutMs, this.admission, label);
  }

  private announce(planned: PlannedListener, listener: Listener): void {
    const zones = planned.routes.map((r) => r.zone).join(' ');
    this.env.logger.info(`listening on ${listener.boundAddress} for ${zones}`);
  }

}

/** Starts each block's upstreams, policy and plugins (in set-up order); on a failure stops them all and throws. */
export async function startBlocks(built: BuiltConfig): Promise<void> {
  try {
    for (const block of built.blocks) {
      await block.upstreams.start();
      await block.policy.start?.();
      for (const plugin of block.plugins) await plugin.start?.();
    }
  } catch (err) {
    await stopBlocks(built);
    throw err;
  }
}

/**
 * Stops what `startBlocks` started, in reverse; best effort. The upstreams are closed (`drain`:
 * exchanges under way finish, as a reload's old configuration wants) or destroyed (what is
 * pending fails at once: a server that stops, a configuration that did not start).
 */
export async function stopBlocks(built: BuiltConfig, upstreams: 'drain' | 'destroy' = 'destroy'): Promise<void> {
  for (const block of [...built.blocks].reverse()) {
    for (const plugin of [...block.plugins].reverse()) {
      try {
        await plugin.stop?.();
      } catch {
        // stopping is best effort: one plugin's failure must not keep the others running
      }
    }
    await block.policy.stop?.();
    if (upstreams === 'drain') await block.upstreams.close();
    else block.upstreams.destroy();
  }
}
