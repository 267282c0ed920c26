/**
 * A DNS-over-HTTPS upstream (RFC 8484). Each query leaves with ID 0 (RFC 8484 §4.1: the stream
 * already pairs question and answer, and a constant ID keeps GET URLs cacheable), padded to a
 * multiple of 128 bytes (RFC 8467), as a POST body or a base64url `dns` parameter; the upstream
 * stage has removed EDNS Client Subnet already. The answer must be for the same question; it
 * gets the client's ID back, and loses the OPT record when the client's query had none.
 */
import type { RequestContext } from '../../../core/context.js';
import { HEADER_SIZE } from '../../../core/dns/constants.js';
import { fitAnswerToQuery, padMessage } from '../../../core/dns/edns.js';
import { arCount, isResponse, readEdns, readId, sameQuestion, writeId } from '../../../core/dns/wire.js';
import { DeadlineError, UpstreamResponseError } from '../../../core/errors.js';
import type { Logger } from '../../../core/logger.js';
import { traceHeadersFor } from '../../../core/trace-context.js';
import type { Upstream } from '../../../core/upstream/upstream.js';
import { HttpsConnections } from '../../../lib/https-client/connections.js';
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
}

export class DohUpstream implements Upstream {
  readonly name: string;
  readonly protocol = 'doh';
  readonly address: string;
  readonly connections: HttpsConnections;
  private readonly getPrefix: string;

  constructor(
    private readonly options: DohServerOptions,
    logger: Logger,
    tls: TlsContexts,
  ) {
    this.name = options.name;
    this.address = options.url;
    const host = options.hostname.includes(':') ? `[${options.hostname}]` : options.hostname;
    this.connections = new HttpsConnections({
      name: options.name,
      label: options.url,
      authority: options.port === 443 ? host : `${host}:${options.port}`,
      identity: { serverName: options.hostname, extraCa: options.extraCa, pins: options.pins, certHashes: options.certHashes },
      addresses: options.addresses,
      port: options.port,
      pool: options.pool,
      logger,
      tls,
    });
    this.getPrefix = `${options.path}${options.path.includes('?') ? '&' : '?'}dns=`;
  }

  async exchange(query: Buffer, ctx: RequestContext): Promise<Buffer> {
    const timeoutMs = Math.min(this.options.timeoutMs, ctx.remaining());
    if (timeoutMs <= 0) throw new DeadlineError(`${this.name}: the query's deadline passed`);
    const wire = padMessage(query);
    writeId(wire, 0);
    const request: HttpsRequest =
      this.options.method === 'get' ? { method: 'GET', path: this.getPrefix + wire.toString('base64url'), body: null } : { method: 'POST', path: this.options.path, body: wire };
    if (this.options.traceparent && ctx.span !== undefined) request.headers = traceHeadersFor(ctx.span);
    const answer = await this.connections.request(request, timeoutMs);
    if (answer.length < HEADER_SIZE || !isResponse(answer)) throw new UpstreamResponseError(`${this.name}: the answer is not a DNS response`);
    if (!sameQuestion(wire, answer)) throw new UpstreamResponseError(`${this.name}: the answer is for another question`);
    writeId(answer, readId(query));
    return fitAnswerToQuery(answer, arCount(query) !== 0 && readEdns(query) !== null);
  }

  /** Connects in the background: an unreachable server must not keep Veil from starting. */
  start(): void {
    void this.connections.warm();
  }

  stop(): void {
    this.connections.close();
  }
}
