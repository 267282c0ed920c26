/**
 * `ratelimit`: queries per second per client, a token bucket each.
 *
 *     ratelimit PER_SECOND [BURST] {
 *         ipv4_prefix BITS     # default 32: each address; 24 counts a /24 as one client
 *         ipv6_prefix BITS     # default 56
 *         max_clients N        # buckets kept at most (default 100000)
 *     }
 *
 * The door (core/dispatch.ts) asks the block's rate limit after its access policy, before any
 * plugin runs; listeners that must work before they know the question (DNSCrypt decrypts) ask
 * it before that work. A client over its rate gets nothing over UDP (an answer would feed a
 * reflection attack) and REFUSED over streams. Buckets are bounded: when full, the oldest go
 * first.
 */
import type { Token } from '../../core/config/ast.js';
import type { RateLimit } from '../../core/access.js';
import { expectArgs, expectNoBlock, parseInteger, readOptions } from '../../core/config/options.js';
import type { BlockScope, PluginDefinition } from '../../core/plugin.js';
import { Services } from '../../core/services.js';
import { clientKey, TokenBuckets } from '../../core/util/token-buckets.js';

export { clientKey };

const NAME = 'ratelimit';

export interface RatelimitOptions {
  perSecond: number;
  burst: number;
  ipv4Prefix: number;
  ipv6Prefix: number;
  maxClients: number;
}

export const ratelimitPlugin: PluginDefinition<RatelimitOptions> = {
  name: NAME,
  once: true,
  // The door asks it after the access policy, before any plugin runs.
  provides: [Services.rateLimit],

  parse(directives) {
    const d = directives[0]!;
    const [rate, burst] = expectArgs(NAME, d, 1, 2) as [Token, Token?];
    const perSecond = parseInteger(NAME, rate, 1, 1_000_000);
    const options: RatelimitOptions = { perSecond, burst: burst ? parseInteger(NAME, burst, 1, 10_000_000) : perSecond, ipv4Prefix: 32, ipv6Prefix: 56, maxClients: 100_000 };
    readOptions(NAME, d.block, {
      ipv4_prefix: (line) => {
        expectNoBlock(NAME, line);
        options.ipv4Prefix = parseInteger(NAME, expectArgs(NAME, line, 1)[0]!, 8, 32);
      },
      ipv6_prefix: (line) => {
        expectNoBlock(NAME, line);
        options.ipv6Prefix = parseInteger(NAME, expectArgs(NAME, line, 1)[0]!, 16, 128);
      },
      max_clients: (line) => {
        expectNoBlock(NAME, line);
        options.maxClients = parseInteger(NAME, expectArgs(NAME, line, 1)[0]!, 1, 10_000_000);
      },
    });
    return options;
  },

  create(options, scope) {
    scope.provide<RateLimit>(Services.rateLimit, new ClientRateLimit(options, scope));
  },
};

/** The block's rate limit: one bucket per client (or client network), at the door. */
class ClientRateLimit implements RateLimit {
  private readonly buckets: TokenBuckets;
  private warned = false;

  constructor(
    private readonly options: RatelimitOptions,
    private readonly scope: BlockScope,
  ) {
    this.buckets = new TokenBuckets(options.perSecond, options.burst, options.maxClients);
  }

  take(address: string): boolean {
    if (this.buckets.take(clientKey(address, this.options), this.scope.clock.monotonic())) return true;
    if (!this.warned) {
      this.warned = true;
      this.scope.logger.warn(`${address} is over ${this.options.perSecond} queries per second; its queries are dropped (UDP) or refused while it stays over (said once)`);
    }
    return false;
  }
}
