/**
 * `veil/plugin`: what a plugin from outside Veil's tree may import, and all it needs: the plugin
 * contract, the request context, the configuration helpers, DNS on the wire, service tokens,
 * the diagnostics channels, the upstream contracts. Nothing else of Veil is public; its other
 * modules change without notice. Tests import `veil/plugin/testing`.
 *
 *     import { configError, expectArgs, QType, buildReply, type PluginDefinition } from 'veil/plugin';
 */
export type { BlockInfo, BlockScope, Next, ParseScope, Plugin, PluginDefinition, PluginRole, Requirement } from '../core/plugin.js';
export { RequestContext, type ClientAddress, type OwnQueryInit, type QueryMeta, type TransportName } from '../core/context.js';
export type { Directive, Token } from '../core/config/ast.js';
export {
  configError,
  didYouMean,
  expectArgs,
  expectNoBlock,
  expectUniqueNames,
  flag,
  formatDuration,
  parseDuration,
  parseInteger,
  readOptions,
  type OptionSpec,
} from '../core/config/options.js';
export { ConfigError, DeadlineError, PluginError, UpstreamResponseError, UpstreamTimeoutError, UpstreamUnavailableError, VeilError, type Location } from '../core/errors.js';
export * from '../core/dns/constants.js';
export * from '../core/dns/message.js';
export * from '../core/dns/wire.js';
export * from '../core/dns/edns.js';
export { serverService, Services, serviceToken, type ServerServiceToken, type ServiceContainer, type ServiceToken } from '../core/services.js';
export * from '../core/events.js';
export type { Upstream, UpstreamPolicy, UpstreamSet } from '../core/upstream/upstream.js';
export { BaseUpstream, checkAnswer, type ExchangeRules, type UpstreamIdentity } from '../core/upstream/base.js';
export type { Outcome } from '../core/upstream/outcome.js';
export type { AccessPolicy, RateLimit } from '../core/access.js';
export type { Clock } from '../core/clock.js';
export type { Logger } from '../core/logger.js';
export type { PluginCounter, PluginGauge, PluginMetrics } from '../core/plugin-metrics.js';
export type { TransportDefinition } from '../core/listeners/listener.js';
