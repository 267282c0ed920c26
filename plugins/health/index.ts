/**
 * `health [ADDR]`: liveness and readiness over HTTP, default on 127.0.0.1:8080.
 *
 *     GET /health   200 while the process runs
 *     GET /ready    200 once every listener is bound and each block has a usable upstream
 *                   (or needs none); 503 with the reasons, one a line, otherwise
 *
 * Blocks that name the same address share one endpoint; so may metrics, on other paths.
 */
import { configError, expectArgs, expectNoBlock } from '../../core/config/options.js';
import { ListenError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { AddressError } from '../../core/net/address.js';
import type { Plugin, PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import type { ServerState } from '../../core/state.js';
import { HttpEndpointsService, parseHttpAddress, type HttpAddress, type HttpAnswer, type HttpEndpoints, type HttpLease } from '../../lib/http-endpoints.js';

const NAME = 'health';
export const DEFAULT_HEALTH_ADDRESS: HttpAddress = { host: '127.0.0.1', port: 8080 };
const TEXT = 'text/plain; charset=utf-8';

export interface HealthOptions {
  address: HttpAddress;
}

export const healthPlugin: PluginDefinition<HealthOptions> = {
  name: NAME,
  once: true,
  roles: ['http'],
  uses: [Services.serverState],

  parse(directives) {
    const d = directives[0]!;
    expectNoBlock(NAME, d);
    const [token] = expectArgs(NAME, d, 0, 1);
    if (!token) return { address: DEFAULT_HEALTH_ADDRESS };
    try {
      return { address: parseHttpAddress(token.text, DEFAULT_HEALTH_ADDRESS.port) };
    } catch (err) {
      if (err instanceof AddressError) throw configError(NAME, token, err.message);
      throw err;
    }
  },

  create(options, scope) {
    // Absent when nothing serves (veil check builds blocks without a server).
    return new HealthPlugin(options, scope.service(Services.serverState), scope.service(HttpEndpointsService), scope.logger);
  },
};

class HealthPlugin implements Plugin {
  readonly name = NAME;
  private lease: HttpLease | null = null;

  constructor(
    private readonly options: HealthOptions,
    private readonly state: ServerState | null,
    private readonly endpoints: HttpEndpoints,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    try {
      this.lease = await this.endpoints.open(this.options.address, {
        '/health': () => ({ status: 200, type: TEXT, body: 'OK\n' }),
        '/ready': () => this.ready(),
      });
    } catch (err) {
      throw new ListenError(`${NAME}: ${(err as Error).message}`, { cause: err });
    }
    if (this.lease.first) this.logger.info(`serving http://${this.lease.bound}/health and /ready`);
  }

  private ready(): HttpAnswer {
    if (!this.state) return { status: 503, type: TEXT, body: 'no server state: nothing is serving\n' };
    const { ready, reasons } = this.state.readiness();
    return ready ? { status: 200, type: TEXT, body: 'OK\n' } : { status: 503, type: TEXT, body: `${reasons.join('\n')}\n` };
  }

  async stop(): Promise<void> {
    await this.lease?.release();
    this.lease = null;
  }
}
