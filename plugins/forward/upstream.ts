/**
 * A plain DNS upstream: UDP first and the same query again over TCP when the answer comes back
 * truncated (core/upstream/base.ts does the retry), or TCP only. TCP connections are kept and
 * pipelined (RFC 7766). Over UDP, source ports change every few queries and names go out in
 * random case (core/upstream/udp-client.ts), so that forging an answer means guessing port, ID
 * and case.
 */
import type { RequestContext } from '../../core/context.js';
import { upstreamRetry } from '../../core/events.js';
import type { Logger } from '../../core/logger.js';
import { BaseUpstream } from '../../core/upstream/base.js';
import { connectTcp, formatHostPort } from '../../core/upstream/connect.js';
import type { Outcome } from '../../core/upstream/outcome.js';
import { StreamPool } from '../../core/upstream/stream-pool.js';
import { UdpClient } from '../../core/upstream/udp-client.js';

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

export class PlainDnsUpstream extends BaseUpstream {
  private readonly udp: UdpClient | null;
  private readonly tcp: StreamPool;

  constructor(options: PlainDnsOptions, logger?: Logger) {
    const address = formatHostPort(options.host, options.port);
    super({ name: options.name, protocol: options.tcpOnly ? 'tcp' : 'udp', address }, { timeoutMs: options.timeoutMs });
    this.udp = options.tcpOnly
      ? null
      : new UdpClient(options.host, options.port, {
          randomizeCase: options.randomizeCase,
          onResend: () => {
            if (upstreamRetry.hasSubscribers) upstreamRetry.publish({ upstream: this.name, protocol: 'udp', reason: 'resent' });
          },
          onCaseFolding: () => logger?.warn(`${this.name} (${address}) answers with names in another case than asked: asking it without random case from now on (say no_0x20 to skip the first tries)`),
        });
    this.tcp = new StreamPool({
      label: `tcp ${address}`,
      connect: (timeoutMs) => connectTcp(options.host, options.port, timeoutMs),
      size: 2,
      onSerial: (detail) => logger?.info(`${this.name} (${this.address}) over TCP: ${detail}`),
    });
  }

  protected override sendDatagram(wire: Buffer, timeoutMs: number, _ctx: RequestContext, outcome: Outcome): boolean {
    if (!this.udp) return false;
    this.udp.exchangeTo(wire, timeoutMs, outcome);
    return true;
  }

  protected send(wire: Buffer, timeoutMs: number): Promise<Buffer> {
    return this.tcp.exchange(wire, timeoutMs);
  }

  /** Queries sent and not yet answered or timed out. */
  get inflight(): number {
    return (this.udp?.inflight ?? 0) + this.tcp.inflight;
  }

  protected release(): void {
    this.udp?.close();
    this.tcp.close();
  }
}
