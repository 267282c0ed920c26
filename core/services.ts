/**
 * Service tokens for the dependency container (tsyringe). The root container holds the
 * process-wide services (logger, clock, listener schemes, the server's state); each server
 * block gets a child container with its own upstream set, upstream policy, listen requests and
 * error reporter.
 * Tests register fakes under the same tokens instead of changing the code under test.
 */
import type { DependencyContainer } from 'tsyringe';
import type { AccessPolicy, RateLimit } from './access.js';
import type { Clock } from './clock.js';
import type { ListenRequests, TransportRegistry } from './listeners/listener.js';
import type { Logger } from './logger.js';
import type { ErrorReporter } from './report.js';
import type { ServerState } from './state.js';
import type { UpstreamPolicy, UpstreamSet } from './upstream/upstream.js';

/** A symbol that remembers the type of the service it names. */
export type ServiceToken<T> = symbol & { readonly __service?: T };

/** A new service token; plugins define their own for services they offer to other plugins. */
export function serviceToken<T>(description: string): ServiceToken<T> {
  return Symbol(description) as ServiceToken<T>;
}
const token = serviceToken;

export const Services = {
  logger: token<Logger>('veil.Logger'),
  clock: token<Clock>('veil.Clock'),
  transports: token<TransportRegistry>('veil.TransportRegistry'),
  /**
   * The block's upstreams. Core makes the set; the protocol plugins (forward, dot, doh, odoh,
   * dnscrypt) fill it and so declare `provides: [Services.upstreams]`; a plugin that reads the
   * set in `create` (anonymize) `uses` it, and is set up after them.
   */
  upstreams: token<UpstreamSet>('veil.UpstreamSet'),
  /** Which upstream each query tries, in what order (core/upstream/upstream.ts); `loadbalance` replaces the default (in order). */
  upstreamPolicy: token<UpstreamPolicy>('veil.UpstreamPolicy'),
  /** Where the block takes queries; `listen` fills it (and so provides it). */
  listenRequests: token<ListenRequests>('veil.ListenRequests'),
  /** Where query failures are reported (core/report.ts); `errors` replaces the default (the log). */
  errorReporter: token<ErrorReporter>('veil.ErrorReporter'),
  /** Who may query the block (core/access.ts); `acl` replaces the default. */
  accessPolicy: token<AccessPolicy>('veil.AccessPolicy'),
  /** Queries per client at the door (core/access.ts); `ratelimit` replaces the default (none). */
  rateLimit: token<RateLimit>('veil.RateLimit'),
  /** The running server's state (root container; absent when nothing serves, as in `veil check`). */
  serverState: token<ServerState>('veil.ServerState'),
} as const;

export function resolveService<T>(container: DependencyContainer, service: ServiceToken<T>): T {
  return container.resolve<T>(service);
}

export function provideService<T>(container: DependencyContainer, service: ServiceToken<T>, value: T): void {
  container.register<T>(service, { useValue: value });
}
