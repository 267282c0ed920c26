/**
 * A DNS-over-TLS upstream (RFC 7858): a pool of verified TLS connections, pipelined (RFC 7766),
 * opened at start, kept warm while traffic flows, every query padded (RFC 7830/8467; the base,
 * core/upstream/base.ts, pads and fits the answer back). An attempt has the query's time; the
 * pool's read timeout finds a dead connection sooner.
 */
import type { Logger } from '../../core/logger.js';
import { BaseUpstream } from '../../core/upstream/base.js';
import { formatHostPort } from '../../core/upstream/connect.js';
import { StreamPool } from '../../core/upstream/stream-pool.js';
import { TlsConnector } from '../../lib/tls/connector.js';
import type { TlsContexts } from '../../lib/tls/contexts.js';

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

export class DotUpstream extends BaseUpstream {
  private readonly pool: StreamPool;
  private readonly connector: TlsConnector;
  /** Whether the last attempt to connect succeeded: changes are logged, repeats are not. */
  private reachable = true;

  constructor(
    options: DotServerOptions,
    private readonly logger: Logger,
    tls: TlsContexts,
  ) {
    super({ name: options.name, protocol: 'dot', address: formatHostPort(options.host, options.port) }, { pad: true, fitAnswer: true });
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
    }, tls);
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

  protected send(wire: Buffer, timeoutMs: number): Promise<Buffer> {
    return this.pool.exchange(wire, timeoutMs);
  }

  /** Opens the pool ahead of traffic. Never fails: an unreachable server is logged and skipped. */
  start(): void {
    this.pool.warm().catch(() => {});
  }

  protected release(): void {
    this.pool.close();
  }

  private async connect(timeoutMs: number, signal: AbortSignal) {
    try {
      const socket = await this.connector.connect(timeoutMs, signal, { direct: true });
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
