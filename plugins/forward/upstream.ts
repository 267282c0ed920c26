/**
 * A plain DNS upstream: UDP first and the same query again over TCP when the answer comes back
 * truncated, or TCP only. TCP connections are kept and pipelined (RFC 7766). Over UDP, source
 * ports change every few queries and names go out in random case (core/upstream/udp-client.ts),
 * so that forging an answer means guessing port, ID and case.
 */
import type { RequestContext } from '../../core/context.js';
import { isTruncated } from '../../core/dns/wire.js';
import { DeadlineError } from '../../core/errors.js';
import { upstreamRetry } from '../../core/events.js';
import { connectTcp, formatHostPort } from '../../core/upstream/connect.js';
import { StreamPool } from '../../core/upstream/stream-pool.js';
import { UdpClient } from '../../core/upstream/udp-client.js';
import type { Logger } from '../../core/logger.js';
import type { Upstream } from '../../core/upstream/upstream.js';

export interface PlainDnsOptions {
  name: string;
  host: string;
  port: number;
  tcpOnly: boolean;
  /** Longest wait for one attempt (the query's deadline may cut it shorter). */
  timeoutMs: number;
  /** DNS 0x20 over UDP (`no_0x20` turns it off). */
  randomizeCase: boolean;
}

export class PlainDnsUpstream implements Upstream {
  readonly name: string;
  readonly protocol: 'udp' | 'tcp';
  readonly address: string;
  private readonly udp: UdpClient | null;
  private readonly tcp: StreamPool;

  constructor(
    private readonly options: PlainDnsOptions,
    logger?: Logger,
  ) {
    this.name = options.name;
    this.protocol = options.tcpOnly ? 'tcp' : 'udp';
    this.address = formatHostPort(options.host, options.port);
    this.udp = options.tcpOnly
      ? null
      : new UdpClient(options.host, options.port, {
          randomizeCase: options.randomizeCase,
          onCaseFolding: () => logger?.warn(`${this.name} (${this.address}) answers with names in another case than asked: asking it without random case from now on (say no_0x20 to skip the first tries)`),
        });
    this.tcp = new StreamPool({
      label: `tcp ${this.address}`,
      connect: (timeoutMs) => connectTcp(options.host, options.port, timeoutMs),
      size: 2,
      onSerial: (detail) => logger?.info(`${this.name} (${this.address}) over TCP: ${detail}`),
    });
  }

  async exchange(query: Buffer, ctx: RequestContext): Promise<Buffer> {
    if (this.udp) {
      const answer = await this.udp.exchange(query, this.attemptTime(ctx));
      if (!isTruncated(answer)) return answer;
      if (upstreamRetry.hasSubscribers) upstreamRetry.publish({ upstream: this.name, protocol: this.protocol, reason: 'truncated' });
    }
    return this.tcp.exchange(query, this.attemptTime(ctx));
  }

  /** Queries sent and not yet answered or timed out. */
  get inflight(): number {
    return (this.udp?.inflight ?? 0) + this.tcp.inflight;
  }

  private attemptTime(ctx: RequestContext): number {
    const left = Math.min(this.options.timeoutMs, ctx.remaining());
    if (left <= 0) throw new DeadlineError(`${this.name}: the query's deadline passed`);
    return left;
  }

  stop(): void {
    this.udp?.close();
    this.tcp.close();
  }
}
