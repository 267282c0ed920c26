/**
 * An ODoH target as an upstream (RFC 9230). Each query leaves with ID 0, sealed with HPKE to the
 * target's current config (the sealed message has padding of its own), and goes as a POST to a
 * relay (`?targethost=…&targetpath=…`) over the DoH client's HTTP/2 pool; the relay sees who
 * asks and which target, the target sees the question and only the relay. The answer must open
 * with the key of this very query and be for the same question; anything else is a failed
 * attempt (the next relay of the route is tried), never passed on. The base
 * (core/upstream/base.ts) gives the attempt its time, sends ID 0, restores the client's ID and
 * fits the answer to the client's query.
 *
 * Configs are fetched from /.well-known/odohconfigs through a relay (or directly with `configs
 * direct`), kept for their Cache-Control lifetime (1 h when none, within 1 min–24 h), and
 * fetched again, once per query, when the target answers 401 (its key changed).
 */
import { performance } from 'node:perf_hooks';
import type { RequestContext } from '../../core/context.js';
import { DeadlineError, UpstreamResponseError, UpstreamUnavailableError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { PluginCounter } from '../../core/plugin-metrics.js';
import { BaseUpstream, checkAnswer } from '../../core/upstream/base.js';
import { HttpsConnections } from '../../lib/https-client/connections.js';
import type { TlsContexts } from '../../lib/tls/contexts.js';
import { HttpStatusError, type HttpsRequest } from '../../lib/https-client/exchange.js';
import { parseConfigs, type OdohConfig } from '../../lib/odoh/configs.js';
import { OdohCryptoError, sealQuery } from '../../lib/odoh/crypto.js';
import { CONFIGS_PATH, MAX_MESSAGE_BYTES, OBLIVIOUS_MEDIA_TYPE, OdohFormatError, QUERY_PADDING_BLOCK } from '../../lib/odoh/message.js';
import { ReadySenders } from '../../lib/odoh/ready-senders.js';
import { describeSuite } from '../../lib/odoh/suite.js';
import { traceHeadersFor } from '../../core/trace-context.js';
import { DIRECT, NAME, type TargetSpec } from './config.js';
import type { Hop, RelayDirectory } from './relays.js';

const DEFAULT_CONFIG_LIFETIME_MS = 3_600_000;
const MIN_CONFIG_LIFETIME_MS = 60_000;
const MAX_CONFIG_LIFETIME_MS = 86_400_000;

export interface OdohMetrics {
  queries: PluginCounter;
  configFetches: PluginCounter;
}

/** The target's key changed: its configs must be fetched again. */
class StaleKey extends UpstreamResponseError {}

export class OdohUpstream extends BaseUpstream {
  private config: { config: OdohConfig; expiresAt: number } | null = null;
  private fetching: Promise<OdohConfig> | null = null;
  /** The target's own pool: only for `configs direct` and routes that say `direct`. */
  private direct: HttpsConnections | null = null;
  /** HPKE set-ups made between queries for the config in use (ready-senders.ts). */
  private readonly senders = new ReadySenders();

  constructor(
    private readonly target: TargetSpec,
    private readonly relays: RelayDirectory,
    private readonly logger: Logger,
    private readonly metrics: OdohMetrics,
    private readonly tls: TlsContexts,
  ) {
    super({ name: target.name, protocol: 'odoh', address: `https://${target.authority}${target.path}` }, { timeoutMs: target.timeoutMs, zeroId: true, fitAnswer: true });
  }

  /** Through the relays of the target's route in turn, all within `timeoutMs`. */
  protected async send(wire: Buffer, timeoutMs: number, ctx: RequestContext): Promise<Buffer> {
    const deadline = performance.now() + timeoutMs;
    const hops = this.relays.hops(this.name);
    if (hops.length === 0) throw new UpstreamUnavailableError(`${this.name}: no ODoH relay available for this target (and its route does not say "direct")`);
    let lastError: unknown = null;
    for (const hop of hops) {
      if (performance.now() >= deadline) break;
      const hopName = hop === DIRECT ? DIRECT : hop.name;
      try {
        const answer = await this.viaHop(hop, wire, deadline, this.target.traceparent && ctx.span !== undefined ? traceHeadersFor(ctx.span) : undefined);
        ctx.meta.relay = hopName;
        this.metrics.queries.inc({ target: this.name, relay: hopName, result: 'answered' });
        return answer;
      } catch (err) {
        lastError = err;
        this.metrics.queries.inc({ target: this.name, relay: hopName, result: resultOf(err) });
        this.relays.failed(this.name, hop);
      }
    }
    if (lastError) throw lastError;
    throw new DeadlineError(`${this.name}: the query's deadline passed`);
  }

  /** One hop: with the current configs, and once more with fresh ones when the key changed. */
  private async viaHop(hop: Hop, wire: Buffer, deadline: number, headers: Record<string, string> | undefined): Promise<Buffer> {
    try {
      return await this.once(hop, await this.currentConfig(hop, deadline), wire, deadline, headers);
    } catch (err) {
      if (!(err instanceof StaleKey)) throw err;
      this.config = null;
      return this.once(hop, await this.currentConfig(hop, deadline), wire, deadline, headers);
    }
  }

  private async once(hop: Hop, config: OdohConfig, wire: Buffer, deadline: number, headers: Record<string, string> | undefined): Promise<Buffer> {
    const { message, pending } = sealQuery(config, wire, QUERY_PADDING_BLOCK, this.senders.take(config));
    const request: HttpsRequest = { method: 'POST', path: this.pathVia(hop, this.target.path), body: message, mediaType: OBLIVIOUS_MEDIA_TYPE, maxBytes: MAX_MESSAGE_BYTES, ...(headers ? { headers } : {}) };
    let sealed: Buffer;
    try {
      sealed = await this.poolOf(hop).request(request, left(deadline, this.name));
    } catch (err) {
      // 401 is the target's (a relay passes it on unchanged): our configs are stale.
      if (err instanceof HttpStatusError && err.status === 401) throw new StaleKey(`${this.name}: the target no longer has key ${config.keyId.toString('hex').slice(0, 16)}…`);
      throw err;
    }
    let answer: Buffer;
    try {
      answer = pending.openResponse(sealed);
    } catch (err) {
      if (err instanceof OdohCryptoError || err instanceof OdohFormatError) throw new UpstreamResponseError(`${this.name}: the answer does not open: ${err.message}`);
      throw err;
    }
    // Checked here too (the base checks again): a wrong answer through one relay means the next.
    checkAnswer(this.name, wire, answer);
    return answer;
  }

  /** The configs in use, fetched (through `hop`, or directly) when there are none or they expired. */
  private async currentConfig(hop: Hop, deadline: number): Promise<OdohConfig> {
    if (this.config && this.config.expiresAt > performance.now()) return this.config.config;
    // One fetch at a time: queries that arrive meanwhile wait for it.
    this.fetching ??= this.fetchConfig(hop, deadline).finally(() => {
      this.fetching = null;
    });
    return this.fetching;
  }

  private async fetchConfig(hop: Hop, deadline: number): Promise<OdohConfig> {
    const direct = this.target.configsVia === 'direct';
    const via = direct ? DIRECT : hop;
    let cacheControl: string | undefined;
    const request: HttpsRequest = {
      method: 'GET',
      path: this.pathVia(via, CONFIGS_PATH),
      body: null,
      anyType: true,
      maxBytes: 0xffff + 2,
      onHeaders: (header) => (cacheControl = header('cache-control')),
    };
    const viaName = via === DIRECT ? 'direct' : via.name;
    let body: Buffer;
    try {
      body = await this.poolOf(via).request(request, left(deadline, this.name));
    } catch (err) {
      this.metrics.configFetches.inc({ target: this.name, via: viaName, result: 'failed' });
      throw new UpstreamUnavailableError(`${this.name}: cannot fetch the ODoH configs ${via === DIRECT ? 'from the target' : `through relay ${viaName}`}: ${(err as Error).message}`, { cause: err });
    }
    let parsed;
    try {
      parsed = parseConfigs(body);
    } catch (err) {
      this.metrics.configFetches.inc({ target: this.name, via: viaName, result: 'malformed' });
      throw new UpstreamResponseError(`${this.name}: the ODoH configs are malformed: ${(err as Error).message}`);
    }
    const config = parsed.usable[0];
    if (!config) {
      this.metrics.configFetches.inc({ target: this.name, via: viaName, result: 'unsupported' });
      throw new UpstreamResponseError(`${this.name}: no ODoH config this client supports (${parsed.skipped.join('; ')})`);
    }
    this.metrics.configFetches.inc({ target: this.name, via: viaName, result: 'fetched' });
    const lifetime = lifetimeOf(cacheControl);
    if (!this.config || !this.config.config.keyId.equals(config.keyId)) {
      this.logger.info(`${this.name}: ODoH key ${config.keyId.toString('hex').slice(0, 16)}… (${describeSuite(config)}), for ${Math.round(lifetime / 1000)}s`);
    }
    this.config = { config, expiresAt: performance.now() + lifetime };
    return config;
  }

  private pathVia(hop: Hop, targetPath: string): string {
    return hop === DIRECT ? targetPath : hop.pathFor(this.target.authority, targetPath);
  }

  private poolOf(hop: Hop): HttpsConnections {
    if (hop !== DIRECT) return hop.connections;
    if (this.released) throw new UpstreamUnavailableError(`${this.name}: closed`);
    if (this.target.addresses.length === 0) throw new UpstreamUnavailableError(`${this.name}: "direct" needs the target's addresses ("bootstrap IP…")`);
    this.direct ??= new HttpsConnections({
      name: this.name,
      label: this.address,
      authority: this.target.authority,
      identity: { serverName: this.target.host, extraCa: this.target.extraCa, pins: this.target.pins, certHashes: this.target.certHashes },
      addresses: this.target.addresses,
      port: this.target.port,
      pool: 1,
      ...(this.target.http2 ? { http2: this.target.http2 } : {}),
      logger: this.logger,
      tls: this.tls,
    });
    return this.direct;
  }

  /** The target's own pool; the relays' pools are the plugin's, closed when it stops. */
  protected release(): void {
    this.senders.close();
    this.direct?.close();
    this.direct = null;
  }
}

function left(deadline: number, name: string): number {
  const ms = deadline - performance.now();
  if (ms <= 0) throw new DeadlineError(`${name}: the query's deadline passed`);
  return ms;
}

/** `max-age` of a Cache-Control header, within bounds; the default when there is none. */
export function lifetimeOf(cacheControl: string | undefined): number {
  const m = /(?:^|[,\s])max-age\s*=\s*"?(\d+)"?/i.exec(cacheControl ?? '');
  if (!m) return DEFAULT_CONFIG_LIFETIME_MS;
  return Math.min(MAX_CONFIG_LIFETIME_MS, Math.max(MIN_CONFIG_LIFETIME_MS, Number(m[1]) * 1000));
}

function resultOf(err: unknown): string {
  if (err instanceof StaleKey) return 'stale key';
  if (err instanceof DeadlineError) return 'deadline';
  if ((err as Error).name === 'UpstreamTimeoutError') return 'timeout';
  if (err instanceof HttpStatusError) return `http ${err.status}`;
  if (err instanceof UpstreamResponseError) return 'bad answer';
  return 'unreachable';
}

export { NAME };
