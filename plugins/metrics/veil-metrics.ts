/**
 * Veil's metrics: one process-wide registry fed by the diagnostics channels of core/events.ts.
 * Every metrics plugin (one per server block that says `metrics`) shares it; per-query series
 * count only the blocks that asked (`server` label), process-wide ones (upstream health and
 * connections, DNSCrypt certificates, relays, the door's rejections, the process) count once.
 *
 * Per-query cost: a few Map lookups to reach series objects kept for each block, zone and
 * transport, then additions to numbers. Label values come from the configuration or from small
 * fixed sets (query types outside a list of common ones are `other`); never from a query name
 * or a client address.
 */
import type { RequestContext } from '../../core/context.js';
import { rcodeName } from '../../core/dns/constants.js';
import { rcodeOf } from '../../core/dns/wire.js';
import {
  cacheEvent,
  sharedCacheEvent,
  sharedCacheState,
  dnscryptCertificate,
  dnscryptKeyExchange,
  filterBlocked,
  queryDone,
  queryRejected,
  pluginMetric,
  relayEvent,
  odohRelayEvent,
  odohTargetEvent,
  upstreamAttempt,
  upstreamConnection,
  upstreamFailover,
  upstreamHealth,
  upstreamRetry,
  type TypedChannel,
} from '../../core/events.js';
import type { Upstream } from '../../core/upstream/upstream.js';
import { addProcessMetrics } from './process.js';
import { Counter, exponentialBuckets, Gauge, Histogram, Registry, type CounterSeries, type GaugeSeries, type HistogramSeries } from './registry.js';
import type { StatsdSink } from './statsd.js';

/** 0.25 ms to 8.192 s, doubling: the whole range from a cache hit to a query's deadline. */
export const DURATION_BUCKETS = exponentialBuckets(0.00025, 2, 16);
/** Message sizes: classic UDP limits, EDNS sizes, up to the TCP maximum. */
export const SIZE_BUCKETS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16000, 32000, 48000, 64000];

/** Query types with their own label value; all others are `other`. */
const LABELLED_TYPES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV',
  35: 'NAPTR', 43: 'DS', 48: 'DNSKEY', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY', 257: 'CAA',
};
const TYPE_LABELS = ['other', ...Object.values(LABELLED_TYPES)];
const TYPE_SLOTS = new Uint8Array(258);
for (const [type, name] of Object.entries(LABELLED_TYPES)) TYPE_SLOTS[Number(type)] = TYPE_LABELS.indexOf(name);

function typeSlot(type: number): number {
  return type < TYPE_SLOTS.length ? TYPE_SLOTS[type]! : 0;
}

/** The header's 4-bit rcode: 16 values, so 16 slots. */
const RCODE_LABELS = Array.from({ length: 16 }, (_, rcode) => rcodeName(rcode));

/** Why an attempt gave no answer, from the error's code: a small fixed set. */
function failureLabel(error: unknown): string {
  switch ((error as { code?: string } | null)?.code) {
    case 'VEIL_ERR_UPSTREAM_TIMEOUT':
      return 'timeout';
    case 'VEIL_ERR_UPSTREAM_UNAVAILABLE':
      return 'unavailable';
    case 'VEIL_ERR_UPSTREAM_RESPONSE':
      return 'bad_response';
    case 'VEIL_ERR_DEADLINE':
      return 'deadline';
    default:
      return 'error';
  }
}

/** Series of one block, zone and transport, reached without building a key per query. */
class QuerySeries {
  readonly requests: Array<CounterSeries | undefined> = [];
  readonly durations: Array<HistogramSeries | undefined> = [];
  readonly responses = new Map<string, Array<CounterSeries | undefined>>();
  readonly requestSize: HistogramSeries;
  readonly responseSize: HistogramSeries;
  constructor(
    readonly server: string,
    readonly zone: string,
    readonly proto: string,
    metrics: VeilMetrics,
  ) {
    this.requestSize = metrics.requestSize.labels(server, zone, proto);
    this.responseSize = metrics.responseSize.labels(server, zone, proto);
  }
}

class UpstreamSeries {
  readonly outcomes = new Map<string, CounterSeries>();
  readonly duration: HistogramSeries;
  readonly failovers: CounterSeries;
  constructor(
    readonly server: string,
    upstream: Upstream,
    metrics: VeilMetrics,
  ) {
    this.duration = metrics.upstreamDuration.labels(server, upstream.name, upstream.protocol);
    this.failovers = metrics.upstreamFailovers.labels(server, upstream.name);
  }
}

/** What the metrics keep for one block that said `metrics`. */
class ServerSeries {
  /** How many metrics plugins hold this server (a reload's new one, before the old one stops). */
  holders = 0;
  readonly queries = new Map<string, Map<string, QuerySeries>>();
  readonly sinks: StatsdSink[] = [];
  cache: Record<'hit' | 'miss' | 'evict' | 'prefetch' | 'stale', CounterSeries> | null = null;
  entries: GaugeSeries | null = null;
  shared: Record<'hit' | 'miss' | 'error' | 'timeout' | 'invalid' | 'write' | 'drop', CounterSeries> | null = null;
  sharedQueue: GaugeSeries | null = null;
  readonly blocked = new Map<string, CounterSeries>();
}

export class VeilMetrics {
  readonly registry = new Registry();
  /** When counting began (Unix ms): the start of every cumulative value. */
  readonly startedAt = Date.now();
  private readonly servers = new Map<string, ServerSeries>();
  private readonly upstreams = new WeakMap<Upstream, UpstreamSeries>();
  private readonly subscriptions: Array<[TypedChannel<any>, (message: any) => void]> = [];
  private readonly stopProcessMetrics: () => void;
  /** Families plugins defined through `scope.metrics`, by name (made on their first value). */
  private readonly pluginFamilies = new Map<string, Counter | Gauge>();

  readonly requests = this.registry.add(new Counter('veil_dns_requests_total', 'Queries a server block handled, by transport and query type.', ['server', 'zone', 'proto', 'type']));
  readonly responses = this.registry.add(
    new Counter('veil_dns_responses_total', 'Answers sent, by rcode and the plugin that produced them (upstream: an upstream did).', ['server', 'zone', 'rcode', 'plugin']),
  );
  readonly duration = this.registry.add(
    new Histogram('veil_dns_request_duration_seconds', 'Time from a query reaching its server block to its answer.', ['server', 'zone', 'type'], DURATION_BUCKETS),
  );
  readonly requestSize = this.registry.add(new Histogram('veil_dns_request_size_bytes', 'Size of the queries, in bytes.', ['server', 'zone', 'proto'], SIZE_BUCKETS));
  readonly responseSize = this.registry.add(
    new Histogram('veil_dns_response_size_bytes', 'Size of the answers as sent (after truncation), in bytes.', ['server', 'zone', 'proto'], SIZE_BUCKETS),
  );
  readonly rejected = this.registry.add(
    new Counter('veil_dns_rejected_total', 'Queries turned away before any server block (malformed, unsupported, no zone), by reason.', ['proto', 'reason']),
  );

  readonly cacheHits = this.registry.add(new Counter('veil_cache_hits_total', 'Queries answered from the cache.', ['server']));
  readonly cacheMisses = this.registry.add(new Counter('veil_cache_misses_total', 'Queries the cache could not answer.', ['server']));
  readonly cacheEntries = this.registry.add(new Gauge('veil_cache_entries', 'Entries in the cache.', ['server']));
  readonly cacheEvictions = this.registry.add(new Counter('veil_cache_evictions_total', 'Entries removed to make room.', ['server']));
  readonly cachePrefetches = this.registry.add(new Counter('veil_cache_prefetch_total', 'Entries refreshed before they expired.', ['server']));
  readonly cacheStale = this.registry.add(new Counter('veil_cache_served_stale_total', 'Answers served from expired entries (serve stale).', ['server']));

  readonly sharedHits = this.registry.add(new Counter('veil_cache_shared_hits_total', "Local misses answered from the fleet's shared cache.", ['server']));
  readonly sharedMisses = this.registry.add(new Counter('veil_cache_shared_misses_total', 'Shared-cache lookups that found nothing.', ['server']));
  readonly sharedErrors = this.registry.add(new Counter('veil_cache_shared_errors_total', 'Shared-cache lookups and writes that failed.', ['server']));
  readonly sharedTimeouts = this.registry.add(new Counter('veil_cache_shared_timeouts_total', 'Shared-cache lookups not answered within the timeout.', ['server']));
  readonly sharedInvalid = this.registry.add(
    new Counter('veil_cache_shared_invalid_total', 'Shared-cache values that did not open, or did not fit their key (served as misses).', ['server']),
  );
  readonly sharedWrites = this.registry.add(new Counter('veil_cache_shared_writes_total', 'Answers written to the shared cache.', ['server']));
  readonly sharedDropped = this.registry.add(
    new Counter('veil_cache_shared_writes_dropped_total', 'Answers not written: the write queue was full, or the shared cache unreachable.', ['server']),
  );
  readonly sharedQueue = this.registry.add(new Gauge('veil_cache_shared_write_queue', 'Answers waiting to be written to the shared cache.', ['server']));
  readonly sharedState = this.registry.add(
    new Gauge('veil_cache_shared_state', "1 for the shared cache's connection state (connecting, up, slow, down), 0 for the others.", ['server', 'state']),
  );

  readonly filterBlocked = this.registry.add(new Counter('veil_filter_blocked_total', 'Queries or answers blocked, by list.', ['server', 'list']));

  readonly upstreamRequests = this.registry.add(
    new Counter('veil_upstream_requests_total', 'Attempts at upstreams, by the rcode they answered or why they did not.', ['server', 'upstream', 'protocol', 'rcode']),
  );
  readonly upstreamDuration = this.registry.add(
    new Histogram('veil_upstream_request_duration_seconds', 'Time one attempt at an upstream took.', ['server', 'upstream', 'protocol'], DURATION_BUCKETS),
  );
  readonly upstreamFailovers = this.registry.add(
    new Counter('veil_upstream_failovers_total', 'Queries that moved on from this upstream to the next after a failed attempt.', ['server', 'upstream']),
  );
  readonly upstreamRetries = this.registry.add(
    new Counter('veil_upstream_retries_total', 'Queries an upstream sent again within one attempt (over TCP after truncation, on a fresh connection, over UDP after a loss).', [
      'upstream',
      'protocol',
      'reason',
    ]),
  );
  readonly upstreamHealthy = this.registry.add(new Gauge('veil_upstream_healthy', '1 while the upstream is in rotation, 0 while a policy marks it down.', ['upstream']));
  readonly upstreamConnections = this.registry.add(new Gauge('veil_upstream_connections', 'Connections to an upstream: open, and idle among them.', ['upstream', 'state']));
  readonly upstreamConnectionEvents = this.registry.add(
    new Counter('veil_upstream_connection_events_total', 'Connection pool events: created, reused, closed, stale-closed, failed.', ['upstream', 'protocol', 'event']),
  );

  readonly dnscryptExpiry = this.registry.add(
    new Gauge('veil_dnscrypt_cert_expiry_timestamp_seconds', 'When the DNSCrypt certificate in use stops being valid, in seconds since the Unix epoch.', ['upstream']),
  );
  readonly dnscryptKeyExchanges = this.registry.add(
    new Counter('veil_dnscrypt_key_exchanges_total', 'X25519 key exchanges a DNSCrypt listener did for client keys it had not cached.', ['listener']),
  );
  readonly relayForwarded = this.registry.add(new Counter('veil_relay_forwarded_total', 'Packets the relay passed on.', ['transport']));
  readonly relayDropped = this.registry.add(new Counter('veil_relay_dropped_total', 'Packets the relay dropped, by rule.', ['transport', 'reason']));
  readonly odohTarget = this.registry.add(new Counter('veil_odoh_target_queries_total', 'Oblivious queries an ODoH target answered or refused, by rule.', ['event', 'reason']));
  readonly odohRelay = this.registry.add(
    new Counter('veil_odoh_relay_requests_total', 'Requests an ODoH relay passed on, refused or could not get answered, by target and rule (never by client).', ['event', 'target', 'reason']),
  );

  constructor() {
    this.stopProcessMetrics = addProcessMetrics(this.registry);
    this.on(queryDone, (m) => this.onQueryDone(m.ctx, m.response, m.durationMs));
    this.on(queryRejected, (m) => this.rejected.labels(m.info.transport, rejectionReason(m.reason)).inc());
    this.on(upstreamAttempt, (m) => this.onAttempt(m.ctx, m.upstream, m.rttMs, m.rcode, m.error));
    this.on(upstreamFailover, (m) => this.upstreamSeries(m.ctx.server, m.from)?.failovers.inc());
    this.on(upstreamRetry, (m) => this.upstreamRetries.labels(m.upstream, m.protocol, m.reason).inc());
    this.on(upstreamHealth, (m) => this.upstreamHealthy.labels(m.upstream).set(m.healthy ? 1 : 0));
    this.on(upstreamConnection, (m) => {
      this.upstreamConnections.labels(m.upstream, 'open').set(m.open);
      if (m.idle !== undefined) this.upstreamConnections.labels(m.upstream, 'idle').set(m.idle);
      this.upstreamConnectionEvents.labels(m.upstream, m.protocol, m.event).inc();
    });
    this.on(cacheEvent, (m) => this.onCache(m.server, m.event, m.entries));
    this.on(sharedCacheEvent, (m) => this.onSharedCache(m.server, m.event, m.queue));
    this.on(sharedCacheState, (m) => {
      if (!this.servers.has(m.server)) return;
      for (const state of ['connecting', 'up', 'slow', 'down']) this.sharedState.labels(m.server, state).set(state === m.state ? 1 : 0);
    });
    this.on(filterBlocked, (m) => this.onBlocked(m.ctx.server, m.list));
    this.on(dnscryptCertificate, (m) => this.dnscryptExpiry.labels(m.upstream).set(m.expiresAt));
    this.on(dnscryptKeyExchange, (m) => this.dnscryptKeyExchanges.labels(m.listener).inc());
    this.on(pluginMetric, (m) => this.onPluginMetric(m));
    this.on(odohTargetEvent, (m) => this.odohTarget.labels(m.event, m.reason ?? '').inc());
    this.on(odohRelayEvent, (m) => this.odohRelay.labels(m.event, m.target ?? '', m.reason ?? '').inc());
    this.on(relayEvent, (m) => {
      if (m.event === 'forwarded') this.relayForwarded.labels(m.transport).inc();
      else this.relayDropped.labels(m.transport, m.reason ?? 'unspecified').inc();
    });
  }

  private onPluginMetric(m: { type: 'counter' | 'gauge'; name: string; help: string; labelNames: readonly string[]; labelValues: readonly string[]; value: number }): void {
    let family = this.pluginFamilies.get(m.name);
    if (!family) {
      // A name Veil uses itself is not a plugin's to take.
      if (this.registry.all.some((f) => f.name === m.name)) return;
      family = this.registry.add(m.type === 'counter' ? new Counter(m.name, m.help, m.labelNames) : new Gauge(m.name, m.help, m.labelNames));
      this.pluginFamilies.set(m.name, family);
    }
    // Two plugins (or two versions of one) that disagree on a metric's shape: the first one wins.
    if (family.type !== m.type || family.labelNames.length !== m.labelValues.length) return;
    if (family instanceof Counter) family.labels(...m.labelValues).inc(m.value);
    else family.labels(...m.labelValues).set(m.value);
  }

  private on<T>(channel: TypedChannel<T>, handler: (message: T) => void): void {
    channel.subscribe(handler);
    this.subscriptions.push([channel, handler]);
  }

  /** Starts counting this block's queries (again, when a reload keeps it). */
  addServer(server: string, sink: StatsdSink | null): void {
    let series = this.servers.get(server);
    if (!series) {
      series = new ServerSeries();
      this.servers.set(server, series);
    }
    series.holders++;
    if (sink && !series.sinks.includes(sink)) series.sinks.push(sink);
  }

  /** Call after `sink.removeServer(server)`: the sink stays while another holder uses it. */
  removeServer(server: string, sink: StatsdSink | null): void {
    const series = this.servers.get(server);
    if (!series) return;
    if (sink && !sink.serves(server)) series.sinks.splice(series.sinks.indexOf(sink), 1);
    if (--series.holders === 0) this.servers.delete(server);
  }

  get serverCount(): number {
    return this.servers.size;
  }

  /** Unsubscribes from every channel and stops the process monitors. */
  close(): void {
    for (const [channel, handler] of this.subscriptions) channel.unsubscribe(handler);
    this.subscriptions.length = 0;
    this.stopProcessMetrics();
  }

  private querySeries(ctx: RequestContext): { series: QuerySeries; server: ServerSeries } | undefined {
    const server = this.servers.get(ctx.server);
    if (!server) return undefined;
    let byProto = server.queries.get(ctx.zone);
    if (!byProto) {
      byProto = new Map();
      server.queries.set(ctx.zone, byProto);
    }
    let series = byProto.get(ctx.transport);
    if (!series) {
      series = new QuerySeries(ctx.server, ctx.zone, ctx.transport, this);
      byProto.set(ctx.transport, series);
    }
    return { series, server };
  }

  private onQueryDone(ctx: RequestContext, response: Buffer | null, durationMs: number): void {
    const found = this.querySeries(ctx);
    if (!found) return;
    const { series, server } = found;
    const slot = typeSlot(ctx.type);
    (series.requests[slot] ??= this.requests.labels(series.server, series.zone, series.proto, TYPE_LABELS[slot]!)).inc();
    const duration = (series.durations[slot] ??= this.duration.labels(series.server, series.zone, TYPE_LABELS[slot]!));
    duration.observe(durationMs / 1000);
    series.requestSize.observe(ctx.query.length);
    const sinks = server.sinks;
    for (let i = 0; i < sinks.length; i++) {
      sinks[i]!.sample(this.duration, duration, durationMs / 1000);
      sinks[i]!.sample(this.requestSize, series.requestSize, ctx.query.length);
    }
    // A query a plugin chose not to answer was a request, but no response went out.
    if (response === null) return;
    const plugin = ctx.meta.answeredBy ?? '';
    let byRcode = series.responses.get(plugin);
    if (!byRcode) {
      byRcode = [];
      series.responses.set(plugin, byRcode);
    }
    const rcode = rcodeOf(response);
    (byRcode[rcode] ??= this.responses.labels(series.server, series.zone, RCODE_LABELS[rcode]!, plugin)).inc();
    series.responseSize.observe(response.length);
    for (let i = 0; i < sinks.length; i++) sinks[i]!.sample(this.responseSize, series.responseSize, response.length);
  }

  private upstreamSeries(server: string, upstream: Upstream): UpstreamSeries | undefined {
    if (!this.servers.has(server)) return undefined;
    let series = this.upstreams.get(upstream);
    if (!series) {
      series = new UpstreamSeries(server, upstream, this);
      this.upstreams.set(upstream, series);
    }
    return series;
  }

  private onAttempt(ctx: RequestContext, upstream: Upstream, rttMs: number, rcode: number | undefined, error: unknown): void {
    const series = this.upstreamSeries(ctx.server, upstream);
    if (!series) return;
    const outcome = rcode !== undefined ? RCODE_LABELS[rcode & 0xf]! : failureLabel(error);
    let counter = series.outcomes.get(outcome);
    if (!counter) {
      counter = this.upstreamRequests.labels(series.server, upstream.name, upstream.protocol, outcome);
      series.outcomes.set(outcome, counter);
    }
    counter.inc();
    series.duration.observe(rttMs / 1000);
    for (const sink of this.servers.get(ctx.server)!.sinks) sink.sample(this.upstreamDuration, series.duration, rttMs / 1000);
  }

  private onCache(serverName: string, event: 'hit' | 'miss' | 'insert' | 'evict' | 'prefetch' | 'stale', entries: number): void {
    const server = this.servers.get(serverName);
    if (!server) return;
    server.cache ??= {
      hit: this.cacheHits.labels(serverName),
      miss: this.cacheMisses.labels(serverName),
      evict: this.cacheEvictions.labels(serverName),
      prefetch: this.cachePrefetches.labels(serverName),
      stale: this.cacheStale.labels(serverName),
    };
    server.entries ??= this.cacheEntries.labels(serverName);
    server.entries.set(entries);
    if (event !== 'insert') server.cache[event].inc();
  }

  private onSharedCache(serverName: string, event: 'hit' | 'miss' | 'error' | 'timeout' | 'invalid' | 'write' | 'drop', queue: number): void {
    const server = this.servers.get(serverName);
    if (!server) return;
    server.shared ??= {
      hit: this.sharedHits.labels(serverName),
      miss: this.sharedMisses.labels(serverName),
      error: this.sharedErrors.labels(serverName),
      timeout: this.sharedTimeouts.labels(serverName),
      invalid: this.sharedInvalid.labels(serverName),
      write: this.sharedWrites.labels(serverName),
      drop: this.sharedDropped.labels(serverName),
    };
    server.sharedQueue ??= this.sharedQueue.labels(serverName);
    server.shared[event].inc();
    server.sharedQueue.set(queue);
  }

  private onBlocked(serverName: string, list: string): void {
    const server = this.servers.get(serverName);
    if (!server) return;
    let counter = server.blocked.get(list);
    if (!counter) {
      counter = this.filterBlocked.labels(serverName, list);
      server.blocked.set(list, counter);
    }
    counter.inc();
  }
}

/** The door says `malformed` or `rcode N`; the label says `malformed`, `formerr`, `notimp`, … */
function rejectionReason(reason: string): string {
  const m = /^rcode (\d+)$/.exec(reason);
  return m ? rcodeName(Number(m[1])).toLowerCase() : reason;
}
