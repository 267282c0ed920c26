/**
 * `ratelimit`: queries per second per client, a token bucket each.
 *
 *     ratelimit PER_SECOND [BURST] {
 *         ipv4_prefix BITS     # default 32: each address; 24 counts a /24 as one client
 *         ipv6_prefix BITS     # default 56
 *         max_clients N        # buckets kept at most (default 100000)
 *     }
 *
 * A client over its rate gets nothing over UDP (an answer would feed a reflection attack) and
 * REFUSED over streams. Buckets are bounded: when full, the oldest go first.
 */
import net from 'node:net';
import type { Token } from '../../core/config/ast.js';
import { configError, expectArgs, expectNoBlock, parseInteger, readOptions } from '../../core/config/options.js';
import type { RequestContext } from '../../core/context.js';
import { Rcode } from '../../core/dns/constants.js';
import { errorReply } from '../../core/dns/message.js';
import { queryRejected } from '../../core/events.js';
import { unmapIpv4 } from '../../core/net/address.js';
import type { BlockScope, Next, Plugin, PluginDefinition } from '../../core/plugin.js';

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

  parse(directives) {
    if (directives.length > 1) throw configError(NAME, directives[1]!.name, 'ratelimit is given twice in this block');
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
    return new RatelimitPlugin(options, scope);
  },
};

interface Bucket {
  tokens: number;
  /** Monotonic ms of the last refill. */
  at: number;
}

class RatelimitPlugin implements Plugin {
  readonly name = NAME;
  private readonly buckets = new Map<string, Bucket>();
  private warned = false;

  constructor(
    private readonly options: RatelimitOptions,
    private readonly scope: BlockScope,
  ) {}

  async serve(ctx: RequestContext, next: Next): Promise<Buffer | null> {
    if (this.take(clientKey(ctx.client.address, this.options), ctx.clock.monotonic())) return next(ctx);
    if (queryRejected.hasSubscribers) queryRejected.publish({ reason: 'ratelimit', info: { client: ctx.client, transport: ctx.transport, datagram: ctx.datagram } });
    if (!this.warned) {
      this.warned = true;
      this.scope.logger.warn(`${ctx.client.address} is over ${this.options.perSecond} queries per second; its queries are dropped (UDP) or refused while it stays over (said once)`);
    }
    return ctx.datagram ? null : errorReply(ctx.query, Rcode.REFUSED, ctx.question.end, ctx.edns);
  }

  private take(key: string, now: number): boolean {
    const { perSecond, burst, maxClients } = this.options;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= maxClients) this.buckets.delete(this.buckets.keys().next().value!);
      bucket = { tokens: burst, at: now };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

/** The address, or its network when a prefix is set: `192.0.2.0/24`. */
export function clientKey(address: string, options: Pick<RatelimitOptions, 'ipv4Prefix' | 'ipv6Prefix'>): string {
  const plain = unmapIpv4(address);
  if (net.isIPv4(plain)) {
    if (options.ipv4Prefix === 32) return plain;
    const value = plain.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
    const masked = value - (value % 2 ** (32 - options.ipv4Prefix));
    return `${[24, 16, 8, 0].map((shift) => Math.floor(masked / 2 ** shift) % 256).join('.')}/${options.ipv4Prefix}`;
  }
  const socket = new net.SocketAddress({ address: plain, family: 'ipv6' });
  const groups = expandV6(socket.address);
  const keep = Math.ceil(options.ipv6Prefix / 16);
  const kept = groups.slice(0, keep);
  const rest = options.ipv6Prefix % 16;
  if (rest) kept[keep - 1] = kept[keep - 1]! & ((0xffff << (16 - rest)) & 0xffff);
  return `${kept.map((g) => g.toString(16)).join(':')}/${options.ipv6Prefix}`;
}

function expandV6(address: string): number[] {
  const [head = '', tail] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16));
}
