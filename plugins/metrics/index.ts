/**
 * `metrics`: Prometheus metrics at http://ADDR/metrics, and optionally the same pushed to statsd
 * or to an OpenTelemetry collector.
 *
 *     metrics [ADDR] {
 *         statsd HOST:PORT [PREFIX]
 *         otlp [URL [insecure]] {      # else OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT
 *             protocol grpc|http/protobuf|http/json
 *             header NAME VALUE
 *             timeout DURATION
 *             interval DURATION        # else OTEL_METRIC_EXPORT_INTERVAL, else 60s
 *             service NAME
 *         }
 *         dashboard [ADDR]             # the live page at http://ADDR/ (default 127.0.0.1:9153)
 *     }
 *
 * The plugin serves no query: it subscribes to the diagnostics channels (core/events.ts) and
 * counts what they report for its block. Blocks that name the same address share one endpoint;
 * the registry, statsd sinks, dashboard and OTLP exports are the server's (hub.ts).
 */
import type { Directive, Token } from '../../core/config/ast.js';
import { blockServerName } from '../../core/block.js';
import { configError, expectArgs, expectNoBlock, parseDuration, readOptions } from '../../core/config/options.js';
import { ListenError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { AddressError, parseHostPort } from '../../core/net/address.js';
import type { BlockScope, Plugin, PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import type { UpstreamSet } from '../../core/upstream/upstream.js';
import { HttpEndpointsService, parseHttpAddress, type HttpAddress, type HttpEndpoints, type HttpLease } from '../../lib/http-endpoints.js';
import { OTLP_REPEATABLE, OtlpLinesReader, parseServiceName } from '../../lib/otel/corefile.js';
import { MetricsHubService, type Attachment, type MetricsHub } from './hub.js';
import { RegistryProducer, type OtlpMetricsTarget } from './otlp.js';
import { dataAnswer, pageAnswer } from './dashboard.js';
import { EXPOSITION_CONTENT_TYPE } from './registry.js';
import type { StatsdTarget } from './statsd.js';

const NAME = 'metrics';
export const DEFAULT_METRICS_ADDRESS: HttpAddress = { host: '127.0.0.1', port: 9153 };
const DEFAULT_STATSD_PORT = 8125;
const DEFAULT_PREFIX = 'veil';

export interface MetricsOptions {
  address: HttpAddress;
  statsd: StatsdTarget | null;
  otlp: OtlpMetricsTarget | null;
  /** Where the live page is served (`dashboard`), or null. */
  dashboard: HttpAddress | null;
}

/** OpenTelemetry's default export interval (OTEL_METRIC_EXPORT_INTERVAL). */
const DEFAULT_OTLP_INTERVAL_MS = 60_000;

export const metricsPlugin: PluginDefinition<MetricsOptions> = {
  name: NAME,
  once: true,
  roles: ['http', 'observe'],

  parse(directives) {
    const d = directives[0]!;
    const [addressToken] = expectArgs(NAME, d, 0, 1);
    const options: MetricsOptions = { address: DEFAULT_METRICS_ADDRESS, statsd: null, otlp: null, dashboard: null };
    if (addressToken) options.address = address(addressToken, DEFAULT_METRICS_ADDRESS.port, parseHttpAddress);
    readOptions(NAME, d.block, {
      statsd: (line) => {
        expectNoBlock(NAME, line);
        const [target, prefix] = expectArgs(NAME, line, 1, 2) as [Token, Token | undefined];
        const { host, port } = address(target, DEFAULT_STATSD_PORT, parseHostPort);
        if (prefix && !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix.text)) {
          throw configError(NAME, prefix, `"${prefix.text}" is not a statsd prefix (letters, digits, "-" and "_", in parts joined by dots)`);
        }
        options.statsd = { host, port, prefix: prefix?.text ?? DEFAULT_PREFIX };
      },
      otlp: (line) => (options.otlp = parseOtlp(line)),
      dashboard: (line) => {
        expectNoBlock(NAME, line);
        const [where] = expectArgs(NAME, line, 0, 1);
        // Loopback unless said otherwise: the page shows what the network's devices ask.
        options.dashboard = where ? address(where, DEFAULT_METRICS_ADDRESS.port, parseHttpAddress) : DEFAULT_METRICS_ADDRESS;
      },
    });
    return options;
  },

  create(options, scope) {
    return new MetricsPlugin(options, scope);
  },
};

function parseOtlp(line: Directive): OtlpMetricsTarget {
  const otlp = new OtlpLinesReader(NAME);
  const args = expectArgs(NAME, line, 0, 2);
  if (args.length > 0) otlp.endpoint(args);
  let intervalMs: number | undefined;
  let service: string | undefined;
  const { endpoint: _endpoint, ...spec } = otlp.spec;
  readOptions(
    NAME,
    line.block,
    {
      ...spec,
      interval: (o) => (intervalMs = parseDuration(NAME, expectArgs(NAME, o, 1)[0]!, { min: 1000, max: 3_600_000 })),
      service: (o) => (service = parseServiceName(NAME, expectArgs(NAME, o, 1)[0]!)),
    },
    OTLP_REPEATABLE,
  );
  if (intervalMs === undefined) {
    const given = process.env.OTEL_METRIC_EXPORT_INTERVAL?.trim();
    if (given && !(/^\d+$/.test(given) && Number(given) >= 1000)) throw configError(NAME, line.name, `OTEL_METRIC_EXPORT_INTERVAL="${given}" is not a number of milliseconds (1000 or more)`);
    intervalMs = given ? Number(given) : DEFAULT_OTLP_INTERVAL_MS;
  }
  return { export: otlp.resolve('metrics', line), intervalMs, service };
}

function address(token: Token, defaultPort: number, parse: (text: string, port: number) => HttpAddress): HttpAddress {
  try {
    return parse(token.text, defaultPort);
  } catch (err) {
    if (err instanceof AddressError) throw configError(NAME, token, err.message);
    throw err;
  }
}

class MetricsPlugin implements Plugin {
  readonly name = NAME;
  private readonly server: string;
  private readonly logger: Logger;
  private readonly upstreams: UpstreamSet;
  private readonly hub: MetricsHub;
  private readonly endpoints: HttpEndpoints;
  private attachment: Attachment | null = null;
  private lease: HttpLease | null = null;
  private releaseOtlp: (() => Promise<void>) | null = null;
  private dashboard: { lease: HttpLease; release(): void } | null = null;

  constructor(
    private readonly options: MetricsOptions,
    private readonly scope: BlockScope,
  ) {
    this.server = blockServerName(scope.block);
    this.logger = scope.logger;
    this.upstreams = scope.upstreams;
    this.hub = scope.service(MetricsHubService);
    this.endpoints = scope.service(HttpEndpointsService);
  }

  async start(): Promise<void> {
    const hub = this.hub;
    this.attachment = hub.attachBlock(this.server, this.options.statsd, this.logger);
    try {
      this.lease = await this.endpoints.open(this.options.address, {
        '/metrics': () => ({ status: 200, type: EXPOSITION_CONTENT_TYPE, body: hub.render(this.logger) }),
      });
    } catch (err) {
      this.attachment.detach();
      this.attachment = null;
      throw new ListenError(`${NAME}: ${(err as Error).message}`, { cause: err });
    }
    if (this.lease.first) this.logger.info(`serving http://${this.lease.bound}/metrics`);
    if (this.options.otlp) this.releaseOtlp = await hub.otlp.hold(this.options.otlp, new RegistryProducer(() => hub.current()), this.logger);
    if (this.options.dashboard) await this.openDashboard(this.options.dashboard);
    // Upstreams start in rotation; health-tracking policies report changes as they happen.
    const policy = this.scope.service(Services.upstreamPolicy)!;
    for (const upstream of this.upstreams.all) {
      this.attachment.metrics.upstreamHealthy.labels(upstream.name).set(policy.healthy(upstream) ? 1 : 0);
    }
  }

  private async openDashboard(where: HttpAddress): Promise<void> {
    const held = this.hub.dashboard.hold();
    try {
      const lease = await this.endpoints.open(where, { '/': () => pageAnswer(), '/dashboard.json': () => dataAnswer(held.dashboard) });
      this.dashboard = { lease, release: held.release };
      if (lease.first) this.logger.info(`serving the dashboard at http://${lease.bound}/`);
    } catch (err) {
      held.release();
      throw new ListenError(`${NAME}: dashboard: ${(err as Error).message}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    await this.dashboard?.lease.release();
    this.dashboard?.release();
    this.dashboard = null;
    await this.releaseOtlp?.();
    this.releaseOtlp = null;
    await this.lease?.release();
    this.lease = null;
    this.attachment?.detach();
    this.attachment = null;
  }
}
