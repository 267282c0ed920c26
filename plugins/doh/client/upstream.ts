/**
 * A DNS-over-HTTPS upstream (RFC 8484). Each query leaves with ID 0 (RFC 8484 §4.1: the stream
 * already pairs question and answer, and a constant ID keeps GET URLs cacheable), padded to a
 * multiple of 128 bytes (RFC 8467), as a POST body or a base64url `dns` parameter; the upstream
 * stage has removed the client's EDNS options already. The base (core/upstream/base.ts) pads,
 * sends ID 0, checks that the answer is for the same question, gives it the client's ID back
 * and takes the OPT record out when the client's query had none.
 */
import type { RequestContext } from '../../../core/context.js';
import type { Logger } from '../../../core/logger.js';
import { traceHeadersFor } from '../../../core/trace-context.js';
import { BaseUpstream } from '../../../core/upstream/base.js';
import { HttpsConnections, type Http2Client } from '../../../lib/https-client/connections.js';
import type { TlsContexts } from '../../../lib/tls/contexts.js';
import type { HttpsRequest } from '../../../lib/https-client/exchange.js';

export interface DohServerOptions {
  name: string;
  /** `https://dns.example/dns-query` (for logs). */
  url: string;
  /** What the certificate must be valid for; also the `:authority` host. */
  hostname: string;
  port: number;
  /** Path, possibly with a query string of its own. */
  path: string;
  /** The server's IP addresses (from the URL, `bootstrap`, or the stamp). */
  addresses: string[];
  method: 'post' | 'get';
  pool: number;
  timeoutMs: number;
  /** PEM certificates of `ca FILE`, trusted beside the system's. */
  extraCa: string[];
  /** SHA-256 SPKI pins (`pin_sha256`). */
  pins: Buffer[];
  /** SHA-256 of TBS certificates (a stamp's hashes). */
  certHashes: Buffer[];
  /** Send a W3C `traceparent` with sampled queries (`traceparent`; off: a trace id is an identifier). */
  traceparent: boolean;
  /** Whose HTTP/2 client (`http2 veil|node`): Veil's own by default. */
  http2: Http2Client;
}

export class DohUpstream extends BaseUpstream {
  readonly connections: HttpsConnections;
  private readonly getPrefix: string;

  constructor(
    private readonly options: DohServerOptions,
    logger: Logger,
    tls: TlsContexts,
  ) {
    super({ name: options.name, protocol: 'doh', address: options.url }, { timeoutMs: options.timeoutMs, pad: true, zeroId: true, fitAnswer: true });
    const host = options.hostname.includes(':') ? `[${options.hostname}]` : options.hostname;
    this.connections = new HttpsConnections({
      name: options.name,
      label: options.url,
      authority: options.port === 443 ? host : `${host}:${options.port}`,
      identity: { serverName: options.hostname, extraCa: options.extraCa, pins: options.pins, certHashes: options.certHashes },
      addresses: options.addresses,
      port: options.port,
      pool: options.pool,
      http2: options.http2,
      logger,
      tls,
    });
    this.getPrefix = `${options.path}${options.path.includes('?') ? '&' : '?'}dns=`;
  }

  protected send(wire: Buffer, timeoutMs: number, ctx: RequestContext): Promise<Buffer> {
    const request: HttpsRequest =
      this.options.method === 'get' ? { method: 'GET', path: this.getPrefix + wire.toString('base64url'), body: null } : { method: 'POST', path: this.options.path, body: wire };
    if (this.options.traceparent && ctx.span !== undefined) request.headers = traceHeadersFor(ctx.span);
    return this.connections.request(request, timeoutMs);
  }

  /** Connects in the background: an unreachable server must not keep Veil from starting. */
  start(): void {
    void this.connections.warm();
  }

  protected release(): void {
    this.connections.close();
  }
}
