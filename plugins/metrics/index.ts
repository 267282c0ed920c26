/**
 * `metrics`: Prometheus metrics at http://ADDR/metrics, and optionally the same pushed to statsd.
 *
 *     metrics [ADDR] {
 *         statsd HOST:PORT [PREFIX]
 *     }
 *
 * The plugin serves no query: it subscribes to the diagnostics channels (core/events.ts) and
 * counts what they report for its block. Blocks that name the same address share one endpoint.
 */
import type { Token } from '../../core/config/ast.js';
import { blockServerName } from '../../core/block.js';
import { configError, expectArgs, expectNoBlock, readOptions } from '../../core/config/options.js';
import { ListenError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { AddressError, parseHostPort } from '../../core/net/address.js';
import type { BlockScope, Plugin, PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import type { UpstreamSet } from '../../core/upstream/upstream.js';
import { openHttpEndpoint, parseHttpAddress, type HttpAddress, type HttpLease } from '../../lib/http-endpoints.js';
import { attachBlock, renderMetrics, type Attachment } from './hub.js';
import { EXPOSITION_CONTENT_TYPE } from './registry.js';
import type { StatsdTarget } from './statsd.js';

const NAME = 'metrics';
export const DEFAULT_METRICS_ADDRESS: HttpAddress = { host: '127.0.0.1', port: 9153 };
const DEFAULT_STATSD_PORT = 8125;
const DEFAULT_PREFIX = 'veil';

export interface MetricsOptions {
  address: HttpAddress;
  statsd: StatsdTarget | null;
}

export const metricsPlugin: PluginDefinition<MetricsOptions> = {
  name: NAME,
  once: true,
  roles: ['http', 'observe'],

  parse(directives) {
    const d = directives[0]!;
    const [addressToken] = expectArgs(NAME, d, 0, 1);
    const options: MetricsOptions = { address: DEFAULT_METRICS_ADDRESS, statsd: null };
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
    });
    return options;
  },

  create(options, scope) {
    return new MetricsPlugin(options, scope);
  },
};

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
  private attachment: Attachment | null = null;
  private lease: HttpLease | null = null;

  constructor(
    private readonly options: MetricsOptions,
    private readonly scope: BlockScope,
  ) {
    this.server = blockServerName(scope.block);
    this.logger = scope.logger;
    this.upstreams = scope.upstreams;
  }

  async start(): Promise<void> {
    this.attachment = attachBlock(this.server, this.options.statsd, this.logger);
    try {
      this.lease = await openHttpEndpoint(this.options.address, {
        '/metrics': () => ({ status: 200, type: EXPOSITION_CONTENT_TYPE, body: renderMetrics(this.logger) }),
      });
    } catch (err) {
      this.attachment.detach();
      this.attachment = null;
      throw new ListenError(`${NAME}: ${(err as Error).message}`, { cause: err });
    }
    if (this.lease.first) this.logger.info(`serving http://${this.lease.bound}/metrics`);
    // Upstreams start in rotation; health-tracking policies report changes as they happen.
    const policy = this.scope.service(Services.upstreamPolicy)!;
    for (const upstream of this.upstreams.all) {
      this.attachment.metrics.upstreamHealthy.labels(upstream.name).set(policy.healthy(upstream) ? 1 : 0);
    }
  }

  async stop(): Promise<void> {
    await this.lease?.release();
    this.lease = null;
    this.attachment?.detach();
    this.attachment = null;
  }
}
