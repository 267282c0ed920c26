/**
 * A DNS-over-TLS upstream (RFC 7858): a pool of verified TLS connections, pipelined (RFC 7766),
 * opened at start, kept warm while traffic flows, every query padded (RFC 7830/8467).
 */
import type { RequestContext } from '../../core/context.js';
import { fitAnswerToQuery, padMessage } from '../../core/dns/edns.js';
import { readEdns } from '../../core/dns/wire.js';
import { DeadlineError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { formatHostPort } from '../../core/upstream/connect.js';
import { StreamPool } from '../../core/upstream/stream-pool.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import { TlsConnector } from '../../lib/tls/connector.js';

export interface DotServerOptions {
  name: string;
  host: string;
  port: number;
  serverName: string | null;
  extraCa: string[];
  pins: Buffer[];
  certHashes: Buffer[];
  poolSize: number;
  connectTimeoutMs: number;
  handshakeTimeoutMs: number;
  readTimeoutMs: number;
  writeTimeoutMs: number;
  staleTimeoutMs: number;
  maxRetries: number;
}

export class DotUpstream implements Upstream {
  readonly protocol = 'dot';
  readonly name: string;
  readonly address: string;
  private readonly pool: StreamPool;
  private readonly connector: TlsConnector;
  /** Whether the last attempt to connect succeeded: changes are logged, repeats are not. */
  private reachable = true;

  constructor(
    options: DotServerOptions,
    private readonly logger: Logger,
  ) {
    this.name = options.name;
    this.address = formatHostPort(options.host, options.port);
    const label = `dot ${options.name} (${this.address}${options.serverName ? ` ${options.serverName}` : ''})`;
    this.connector = new TlsConnector({
      label,
      host: options.host,
      port: options.port,
      serverName: options.serverName,
      extraCa: options.extraCa,
      pins: options.pins,
      certHashes: options.certHashes,
      connectTimeoutMs: options.connectTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
    });
    this.pool = new StreamPool({
      label,
      connect: (timeoutMs, signal) => this.connect(timeoutMs, signal),
      size: options.poolSize,
      idleTimeoutMs: options.staleTimeoutMs,
      connectTimeoutMs: options.connectTimeoutMs + options.handshakeTimeoutMs,
      readTimeoutMs: options.readTimeoutMs,
      writeTimeoutMs: options.writeTimeoutMs,
      retries: options.maxRetries,
      replaceIdle: true,
      events: { upstream: options.name, protocol: 'dot' },
      onSerial: (detail) => logger.info(`${this.name}: ${detail}`),
    });
  }

  async exchange(query: Buffer, ctx: RequestContext): Promise<Buffer> {
    const left = ctx.remaining();
    if (left <= 0) throw new DeadlineError(`${this.name}: the query's deadline passed`);
    const hadEdns = query === ctx.query ? ctx.edns !== null : readEdns(query) !== null;
    const answer = await this.pool.exchange(padMessage(query), left);
    return fitAnswerToQuery(answer, hadEdns);
  }

  /** Opens the pool ahead of traffic. Never fails: an unreachable server is logged and skipped. */
  start(): void {
    this.pool.warm().catch(() => {});
  }

  stop(): void {
    this.pool.close();
  }

  private async connect(timeoutMs: number, signal: AbortSignal) {
    try {
      const socket = await this.connector.connect(timeoutMs, signal);
      if (!this.reachable) {
        this.reachable = true;
        this.logger.info(`${this.name}: connected to ${this.address} again`);
      }
      return socket;
    } catch (err) {
      if (this.reachable && !signal.aborted) {
        this.reachable = false;
        this.logger.warn(`${(err as Error).message}; its queries go to other upstreams or fail, never in plaintext`);
      }
      throw err;
    }
  }
}
