/**
 * Services: what plugins, listeners and core find by a token rather than by importing each other.
 *
 * Two levels. The server's root container holds what one server (a `VeilServer`, or one
 * `buildConfig` of `veil check` and the test kit) has once, across every block and reload: its
 * state, its operator HTTP endpoints, its TLS contexts, the metrics plugin's hub. Each server
 * block gets a child container with its own upstream policy, error reporter, access policy,
 * rate limit and the services its plugins provide. A lookup in a block's container that finds
 * nothing there asks the root.
 *
 * What every plugin has is not looked up: its logger, the clock, the block's upstream set and
 * listen requests, the listener schemes are fields of its scope (core/plugin.ts). Tokens name
 * only what a plugin may or may not find, or what someone else may replace. Tests replace a
 * service by providing their own under the same token, in the root container before the server
 * starts (`VeilServer.services`).
 *
 * The containers are tsyringe's (the design card's choice), behind this typed face: every
 * service is an instance registered under its token's symbol, found in the block's container or
 * its parent's. Nothing is constructed by the container; plugins build what they provide.
 */
import 'reflect-metadata';
import { container as globalContainer, type DependencyContainer } from 'tsyringe';
import type { AccessPolicy, RateLimit } from './access.js';
import type { ErrorReporter } from './report.js';
import type { ServerState } from './state.js';
import type { UpstreamPolicy, UpstreamSet } from './upstream/upstream.js';
import type { ListenRequests } from './listeners/listener.js';

/** Names a service and remembers its type. Compared by identity: two tokens with one description are two services. */
export class ServiceToken<T> {
  /** Never set: carries `T` for the type checker. */
  declare readonly __service?: T;
  /** The key in tsyringe's container. */
  readonly key: symbol;

  constructor(readonly description: string) {
    this.key = Symbol(description);
  }

  toString(): string {
    return this.description;
  }
}

/**
 * A service every server has exactly one of: the root container makes it with `create` the
 * first time anyone asks (a server without metrics never makes the metrics hub), and keeps it
 * for the server's life, across reloads. Nothing in a block provides it, so it needs no
 * declaration in `requires` or `uses`; tests provide their own in the root container first.
 */
export class ServerServiceToken<T> extends ServiceToken<T> {
  constructor(
    description: string,
    readonly create: () => T,
  ) {
    super(description);
  }
}

/** A new service token; plugins define their own for services they offer to other plugins. */
export function serviceToken<T>(description: string): ServiceToken<T> {
  return new ServiceToken<T>(description);
}

/** A new server-wide service, made on first use by `create` (see ServerServiceToken). */
export function serverService<T>(description: string, create: () => T): ServerServiceToken<T> {
  return new ServerServiceToken<T>(description, create);
}

const token = serviceToken;

export const Services = {
  /**
   * Declares that a plugin adds upstreams to the block's set (`scope.upstreams`): the protocol
   * plugins (forward, dot, doh, odoh, dnscrypt) `provides` it; a plugin that reads the set in
   * `create` (anonymize) `uses` it, and is set up after them. Not looked up: the set is a field
   * of the scope.
   */
  upstreams: token<UpstreamSet>('veil.UpstreamSet'),
  /** Declares that a plugin asks for listeners (`scope.listeners`); `listen` provides it. Not looked up either. */
  listenRequests: token<ListenRequests>('veil.ListenRequests'),
  /** Which upstream each query tries, in what order (core/upstream/upstream.ts); `loadbalance` replaces the default (in order). */
  upstreamPolicy: token<UpstreamPolicy>('veil.UpstreamPolicy'),
  /** Where query failures are reported (core/report.ts); `errors` replaces the default (the log). */
  errorReporter: token<ErrorReporter>('veil.ErrorReporter'),
  /** Who may query the block (core/access.ts); `acl` replaces the default. */
  accessPolicy: token<AccessPolicy>('veil.AccessPolicy'),
  /** Queries per client at the door (core/access.ts); `ratelimit` replaces the default (none). */
  rateLimit: token<RateLimit>('veil.RateLimit'),
  /** The running server's state (root container; absent when nothing serves, as in `veil check`). */
  serverState: token<ServerState>('veil.ServerState'),
} as const;

/**
 * The services of one level (the server's root, or one block), typed by their tokens. A lookup
 * that finds nothing here asks the parent; a server-wide service nobody provided is made in the
 * root on first use.
 */
export class ServiceContainer {
  private constructor(
    private readonly di: DependencyContainer,
    private readonly parent: ServiceContainer | null,
  ) {}

  /** A server's root container (each server has its own: nothing is shared through tsyringe's global one). */
  static root(): ServiceContainer {
    return new ServiceContainer(globalContainer.createChildContainer(), null);
  }

  /** A container for one block, whose lookups fall back to this one. */
  child(): ServiceContainer {
    return new ServiceContainer(this.di.createChildContainer(), this);
  }

  /** Installs (or replaces) the service at this level. */
  provide<T>(token: ServiceToken<T>, value: T): void {
    this.di.registerInstance(token.key, value);
  }

  /** Whether a lookup finds the service (a server-wide one always is found). */
  has(token: ServiceToken<unknown>): boolean {
    return token instanceof ServerServiceToken || this.di.isRegistered(token.key, true);
  }

  /** The service, or null when nothing provides it; a server-wide one is made on first use. */
  get<T>(token: ServerServiceToken<T>): T;
  get<T>(token: ServiceToken<T>): T | null;
  get<T>(token: ServiceToken<T>): T | null {
    if (this.di.isRegistered(token.key, true)) return this.di.resolve<T>(token.key);
    if (!(token instanceof ServerServiceToken)) return null;
    const value = (token as ServerServiceToken<T>).create();
    this.root().provide(token, value);
    return value;
  }

  private root(): ServiceContainer {
    let level: ServiceContainer = this;
    while (level.parent) level = level.parent;
    return level;
  }
}
